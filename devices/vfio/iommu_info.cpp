#include "devices/vfio/iommu_info.hpp"

#include <linux/vfio.h>

#include <cstddef>

#include "base/hex.hpp"
#include "devices/vfio/cap_chain.hpp"
#include "devices/vfio/info_query.hpp"

namespace keel::vfio {
namespace {

constexpr const char* kWhat = "VFIO_IOMMU_GET_INFO";

// The fixed part of vfio_iommu_type1_info_cap_iova_range; its ranges follow it.
struct IovaRangeCapHead {
  vfio_info_cap_header header;
  std::uint32_t nr_iovas;
  std::uint32_t reserved;
};
static_assert(sizeof(IovaRangeCapHead) ==
              offsetof(vfio_iommu_type1_info_cap_iova_range, iova_ranges));

Status parse_iova_ranges(std::span<const std::uint8_t> reply, std::size_t offset,
                         std::vector<IovaRange>& out) {
  auto head = read_at<IovaRangeCapHead>(reply, offset);
  if (!head) {
    return Error::invalid(std::string(kWhat) + ": IOVA_RANGE capability at offset " + hex(offset) +
                          " is truncated");
  }
  const std::size_t first = offset + sizeof(IovaRangeCapHead);
  const std::uint64_t bytes = std::uint64_t{head->nr_iovas} * sizeof(vfio_iova_range);
  if (first > reply.size() || bytes > reply.size() - first) {
    return Error::invalid(std::string(kWhat) + ": IOVA_RANGE capability claims " +
                          std::to_string(head->nr_iovas) +
                          " ranges, which run past the end of "
                          "the " +
                          std::to_string(reply.size()) + "-byte reply");
  }
  out.clear();
  for (std::uint32_t i = 0; i < head->nr_iovas; ++i) {
    // Cannot fail: the whole array was bounds-checked above.
    const auto range = *read_at<vfio_iova_range>(reply, first + i * sizeof(vfio_iova_range));
    if (range.start > range.end || (!out.empty() && range.start <= out.back().last)) {
      return Error::invalid(std::string(kWhat) + ": IOVA range " + std::to_string(i) + " (" +
                            hex(range.start) + "-" + hex(range.end) +
                            ") is empty or not above the previous one");
    }
    out.push_back({range.start, range.end});
  }
  return ok_status();
}

}  // namespace

std::string_view to_string(AvailSource source) {
  switch (source) {
    case AvailSource::kCapability:
      return "capability";
    case AvailSource::kAbsent:
      return "absent";
    case AvailSource::kUnlimited:
      return "unlimited";
    case AvailSource::kIommufd:
      return "iommufd";
  }
  return "unknown";
}

DmaBudget DmaBudget::from_cap(std::optional<std::uint32_t> avail) {
  if (!avail) {
    return {AvailSource::kAbsent, 0};
  }
  if (*avail == kAvailUnlimited) {
    return {AvailSource::kUnlimited, kAvailUnlimited};
  }
  return {AvailSource::kCapability, *avail};
}

std::string DmaBudget::describe() const {
  if (source == AvailSource::kCapability) {
    return std::to_string(avail);
  }
  return std::string(to_string(source));
}

Result<IommuInfo> parse_iommu_info(std::span<const std::uint8_t> reply) {
  // The kernel fills at least up to iova_pgsizes; cap_offset exists since Linux 4.14.
  auto head = read_at<vfio_iommu_type1_info>(reply, 0);
  if (!head) {
    return Error::invalid(std::string(kWhat) + ": reply of " + std::to_string(reply.size()) +
                          " bytes is shorter than struct vfio_iommu_type1_info");
  }
  IommuInfo info;
  info.flags = head->flags;
  info.iova_pgsizes = head->iova_pgsizes;
  if ((head->flags & VFIO_IOMMU_INFO_CAPS) == 0) {
    return info;
  }
  if (head->cap_offset == 0) {
    return Error::invalid(std::string(kWhat) + ": capabilities did not fit in argsz " +
                          std::to_string(head->argsz) + " (call again with a bigger buffer)");
  }
  KEEL_TRY(auto caps,
           walk_cap_chain(reply, head->cap_offset, sizeof(vfio_iommu_type1_info), kWhat));
  std::optional<std::uint32_t> avail;
  for (const CapRef& cap : caps) {
    info.cap_ids.push_back(cap.id);
    switch (cap.id) {
      case VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE:
        KEEL_TRY_STATUS(parse_iova_ranges(reply, cap.offset, info.iova_ranges));
        break;
      case VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION: {
        auto migration = read_at<vfio_iommu_type1_info_cap_migration>(reply, cap.offset);
        if (!migration) {
          return Error::invalid(std::string(kWhat) + ": MIGRATION capability at offset " +
                                hex(cap.offset) + " is truncated");
        }
        info.migration = MigrationInfo{migration->flags, migration->pgsize_bitmap,
                                       migration->max_dirty_bitmap_size};
        break;
      }
      case VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL: {
        auto dma = read_at<vfio_iommu_type1_info_dma_avail>(reply, cap.offset);
        if (!dma) {
          return Error::invalid(std::string(kWhat) + ": DMA_AVAIL capability at offset " +
                                hex(cap.offset) + " is truncated");
        }
        avail = dma->avail;
        break;
      }
      default:
        break;  // a capability this Keel does not know: skipped on purpose
    }
  }
  info.budget = DmaBudget::from_cap(avail);
  return info;
}

// VFIO_IOMMU_GET_INFO: assumes VFIO_SET_IOMMU was done on the container (else EINVAL) and the
// kernel's argsz-growth protocol (see query_info).
Result<IommuInfo> read_iommu_info(VfioSys& sys, int container_fd) {
  vfio_iommu_type1_info head{};
  head.argsz = sizeof(head);
  auto reply =
      query_info(sys, container_fd, VFIO_IOMMU_GET_INFO,
                 std::span(reinterpret_cast<const std::uint8_t*>(&head), sizeof(head)), kWhat);
  if (!reply) {
    return reply.error();
  }
  return parse_iommu_info(*reply);
}

Result<DmaBudget> reread_avail(VfioSys& sys, int container_fd) {
  KEEL_TRY(auto info, read_iommu_info(sys, container_fd));
  return info.budget;
}

}  // namespace keel::vfio
