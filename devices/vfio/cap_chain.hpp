#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.hpp"

namespace keel::vfio {

// A chain longer than this is corrupt: type1 reports three capabilities, a PCI region two.
inline constexpr int kMaxCapHops = 64;

// One capability found in a VFIO info reply: its header, and where it starts in the reply.
struct CapRef {
  std::uint16_t id = 0;
  std::uint16_t version = 0;
  std::size_t offset = 0;
};

// Reads a T at `offset` of a reply, or nothing when it does not fit. memcpy, never a cast:
// capabilities are not aligned (DMA_AVAIL is 12 bytes, so the cap after it sits at 4 mod 8).
template <typename T>
std::optional<T> read_at(std::span<const std::uint8_t> reply, std::size_t offset) {
  if (offset > reply.size() || reply.size() - offset < sizeof(T)) {
    return std::nullopt;
  }
  T value{};
  std::memcpy(&value, reply.data() + offset, sizeof(T));
  return value;
}

// Walks the capability chain of a VFIO info reply (VFIO_IOMMU_GET_INFO,
// VFIO_DEVICE_GET_REGION_INFO,
// ...) from `first` (0: no chain), following `next` offsets that count from the reply's start.
// Every capability must start at or after `header_size` (past the fixed struct) and its header
// must lie inside the reply; a `next` that revisits a capability, or more than kMaxCapHops
// capabilities, is an error. Ids are not interpreted: callers skip the ones they do not know.
// `what` names the reply in errors, e.g. "VFIO_IOMMU_GET_INFO".
Result<std::vector<CapRef>> walk_cap_chain(std::span<const std::uint8_t> reply, std::uint32_t first,
                                           std::size_t header_size, const std::string& what);

}  // namespace keel::vfio
