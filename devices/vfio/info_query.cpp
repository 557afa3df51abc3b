#include "devices/vfio/info_query.hpp"

#include <algorithm>
#include <cstring>

namespace keel::vfio {

Result<std::vector<std::uint8_t>> query_info(VfioSys& sys, int fd, unsigned long request,
                                             std::span<const std::uint8_t> head,
                                             const std::string& what) {
  if (head.size() < sizeof(std::uint32_t)) {
    return Error::invalid(what + ": the info struct is shorter than its argsz field");
  }
  std::vector<std::uint8_t> buf(head.size());
  std::uint32_t asked = 0;
  for (int call = 0; call < kMaxInfoCalls; ++call) {
    std::fill(buf.begin(), buf.end(), 0);
    std::copy(head.begin(), head.end(), buf.begin());
    const auto argsz = static_cast<std::uint32_t>(buf.size());
    std::memcpy(buf.data(), &argsz, sizeof(argsz));
    KEEL_TRY_STATUS(sys.ioctl(fd, request, buf.data(), what));
    std::memcpy(&asked, buf.data(), sizeof(asked));
    if (asked <= buf.size()) {
      return buf;
    }
    if (asked > kMaxInfoBytes) {
      return Error::invalid(what + ": the kernel asked for a " + std::to_string(asked) +
                            "-byte reply, more than the " + std::to_string(kMaxInfoBytes) +
                            " bytes any VFIO info needs (corrupt reply)");
    }
    buf.resize(asked);
  }
  return Error::invalid(what + ": argsz still growing after " + std::to_string(kMaxInfoCalls) +
                        " calls (last asked for " + std::to_string(asked) + " bytes)");
}

}  // namespace keel::vfio
