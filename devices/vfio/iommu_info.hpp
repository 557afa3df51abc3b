#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"
#include "devices/vfio/vfio_sys.hpp"

namespace keel::vfio {

// What iommufd's type1 compatibility layer reports for DMA_AVAIL: no limit.
inline constexpr std::uint32_t kAvailUnlimited = 0xffffffffU;

// Where a container's DMA entry budget came from.
enum class AvailSource {
  kCapability,  // the kernel reported VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL
  kAbsent,      // no DMA_AVAIL capability (Linux < 5.10): the budget is unknown, not unlimited
  kUnlimited,   // avail == UINT32_MAX (iommufd's type1 compatibility): a placeholder, no limit
  kIommufd,     // a native iommufd IO address space: the kernel counts no entries at all, only
                // pinned memory binds
};
std::string_view to_string(AvailSource source);

// How many VFIO_IOMMU_MAP_DMA entries a container can still take.
struct DmaBudget {
  AvailSource source = AvailSource::kAbsent;
  std::uint32_t avail = 0;  // meaningful for kCapability only

  static DmaBudget from_cap(std::optional<std::uint32_t> avail);
  // True when `entries` more MAP calls cannot exceed the budget (unknown and unlimited: true).
  bool fits(std::uint64_t entries) const {
    return source != AvailSource::kCapability || entries <= avail;
  }
  // "24", "absent", "unlimited" or "iommufd".
  std::string describe() const;
};

// A valid IOVA range, both ends inclusive (as the kernel reports it).
struct IovaRange {
  std::uint64_t start = 0;
  std::uint64_t last = 0;
};

// VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION (dirty page tracking).
struct MigrationInfo {
  std::uint32_t flags = 0;
  std::uint64_t pgsize_bitmap = 0;
  std::uint64_t max_dirty_bitmap_size = 0;
};

// What VFIO_IOMMU_GET_INFO says about a type1 container: one value, read once at open.
struct IommuInfo {
  std::uint32_t flags = 0;
  std::uint64_t iova_pgsizes = 0;
  std::vector<std::uint16_t> cap_ids;  // in chain order, unknown ones included
  // Empty when the kernel reports no IOVA_RANGE capability (Linux < 5.4): no known holes.
  std::vector<IovaRange> iova_ranges;
  std::optional<MigrationInfo> migration;
  DmaBudget budget;  // at the time of the call
};

// Parses one VFIO_IOMMU_GET_INFO reply (the whole buffer, as query_info returns it): walks the
// capability chain with bounds checks and a hop limit, skips unknown ids, reads IOVA ranges (cap
// 1), migration (cap 2) and DMA_AVAIL (cap 3). A reply whose caps did not fit is an error.
Result<IommuInfo> parse_iommu_info(std::span<const std::uint8_t> reply);

// VFIO_IOMMU_GET_INFO on a container whose IOMMU is set (VFIO_SET_IOMMU done), growing argsz
// until the capabilities fit, then parsed.
Result<IommuInfo> read_iommu_info(VfioSys& sys, int container_fd);

// Re-reads the live DMA_AVAIL of a container (the same GET_INFO call; only the budget is kept).
Result<DmaBudget> reread_avail(VfioSys& sys, int container_fd);

}  // namespace keel::vfio
