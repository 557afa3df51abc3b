#include "vmm/boot/cmdline.hpp"

#include <algorithm>
#include <vector>

#include "memory/layout.hpp"

namespace keel::vmm::boot {

namespace layout = memory::layout;

Status write_cmdline(const memory::GuestMemory& mem, std::string_view cmdline,
                     std::uint64_t max_len) {
  const std::uint64_t limit = std::min(max_len, layout::kCmdlineMaxSize - 1);
  if (cmdline.size() > limit) {
    return Error::invalid("kernel command line is " + std::to_string(cmdline.size()) +
                          " bytes but this kernel accepts at most " + std::to_string(limit) +
                          "; shorten it");
  }
  if (cmdline.find('\0') != std::string_view::npos) {
    return Error::invalid("kernel command line contains a NUL byte at offset " +
                          std::to_string(cmdline.find('\0')) + "; remove it");
  }
  std::vector<std::uint8_t> bytes(cmdline.begin(), cmdline.end());
  bytes.push_back(0);
  return mem.write(layout::kCmdlineStart, bytes);
}

}  // namespace keel::vmm::boot
