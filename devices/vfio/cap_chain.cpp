#include "devices/vfio/cap_chain.hpp"

#include <linux/vfio.h>

#include <algorithm>

#include "base/hex.hpp"

namespace keel::vfio {

Result<std::vector<CapRef>> walk_cap_chain(std::span<const std::uint8_t> reply, std::uint32_t first,
                                           std::size_t header_size, const std::string& what) {
  std::vector<CapRef> caps;
  std::size_t offset = first;
  while (offset != 0) {
    if (caps.size() == static_cast<std::size_t>(kMaxCapHops)) {
      return Error::invalid(what + ": capability chain longer than " + std::to_string(kMaxCapHops) +
                            " entries (corrupt reply)");
    }
    const bool revisit = std::any_of(caps.begin(), caps.end(),
                                     [offset](const CapRef& cap) { return cap.offset == offset; });
    if (revisit) {
      return Error::invalid(what + ": capability chain loops back to offset " + hex(offset) +
                            " after " + std::to_string(caps.size()) + " capabilities");
    }
    if (offset < header_size) {
      return Error::invalid(what + ": capability at offset " + hex(offset) + " overlaps the " +
                            std::to_string(header_size) + "-byte info header");
    }
    auto header = read_at<vfio_info_cap_header>(reply, offset);
    if (!header) {
      return Error::invalid(what + ": capability header at offset " + hex(offset) +
                            " runs past the end of the " + std::to_string(reply.size()) +
                            "-byte reply");
    }
    caps.push_back({header->id, header->version, offset});
    offset = header->next;
  }
  return caps;
}

}  // namespace keel::vfio
