#include "devices/vfio/device_fd.hpp"

#include <linux/vfio.h>

#include <cstddef>

#include "base/hex.hpp"
#include "devices/vfio/cap_chain.hpp"
#include "devices/vfio/info_query.hpp"

namespace keel::vfio {
namespace {

// The fixed part of vfio_region_info_cap_sparse_mmap; its areas follow it.
struct SparseMmapCapHead {
  vfio_info_cap_header header;
  std::uint32_t nr_areas;
  std::uint32_t reserved;
};
static_assert(sizeof(SparseMmapCapHead) == offsetof(vfio_region_info_cap_sparse_mmap, areas));

Status parse_sparse(std::span<const std::uint8_t> reply, std::size_t offset,
                    const std::string& what, RegionInfo& region) {
  auto head = read_at<SparseMmapCapHead>(reply, offset);
  if (!head) {
    return Error::invalid(what + ": SPARSE_MMAP capability at offset " + hex(offset) +
                          " is truncated");
  }
  const std::size_t first = offset + sizeof(SparseMmapCapHead);
  const std::uint64_t bytes = std::uint64_t{head->nr_areas} * sizeof(vfio_region_sparse_mmap_area);
  if (first > reply.size() || bytes > reply.size() - first) {
    return Error::invalid(what + ": SPARSE_MMAP capability claims " +
                          std::to_string(head->nr_areas) +
                          " areas, which run past the end of "
                          "the " +
                          std::to_string(reply.size()) + "-byte reply");
  }
  std::vector<SparseMmapArea> areas;
  for (std::uint32_t i = 0; i < head->nr_areas; ++i) {
    // Cannot fail: the whole array was bounds-checked above.
    const auto area = *read_at<vfio_region_sparse_mmap_area>(
        reply, first + i * sizeof(vfio_region_sparse_mmap_area));
    if (area.offset > region.size || area.size > region.size - area.offset) {
      return Error::invalid(what + ": sparse mmap area " + std::to_string(i) + " (" +
                            hex(area.offset) + "+" + hex(area.size) + ") lies outside the " +
                            hex(region.size) + "-byte region");
    }
    areas.push_back({area.offset, area.size});
  }
  region.sparse_areas = std::move(areas);
  return ok_status();
}

}  // namespace

bool DeviceInfo::is_pci() const { return (flags & VFIO_DEVICE_FLAGS_PCI) != 0; }
bool DeviceInfo::can_reset() const { return (flags & VFIO_DEVICE_FLAGS_RESET) != 0; }

bool RegionInfo::readable() const { return (flags & VFIO_REGION_INFO_FLAG_READ) != 0; }
bool RegionInfo::writable() const { return (flags & VFIO_REGION_INFO_FLAG_WRITE) != 0; }
bool RegionInfo::mmappable() const { return (flags & VFIO_REGION_INFO_FLAG_MMAP) != 0; }

Result<RegionInfo> parse_region_info(std::span<const std::uint8_t> reply) {
  auto head = read_at<vfio_region_info>(reply, 0);
  if (!head) {
    return Error::invalid("VFIO_DEVICE_GET_REGION_INFO: reply of " + std::to_string(reply.size()) +
                          " bytes is shorter than struct vfio_region_info");
  }
  const std::string what = "VFIO_DEVICE_GET_REGION_INFO(" + std::to_string(head->index) + ")";
  RegionInfo region;
  region.index = head->index;
  region.flags = head->flags;
  region.size = head->size;
  region.offset = head->offset;
  if ((head->flags & VFIO_REGION_INFO_FLAG_CAPS) == 0) {
    return region;
  }
  if (head->cap_offset == 0) {
    return Error::invalid(what + ": capabilities did not fit in argsz " +
                          std::to_string(head->argsz));
  }
  KEEL_TRY(auto caps, walk_cap_chain(reply, head->cap_offset, sizeof(vfio_region_info), what));
  for (const CapRef& cap : caps) {
    switch (cap.id) {
      case VFIO_REGION_INFO_CAP_SPARSE_MMAP:
        KEEL_TRY_STATUS(parse_sparse(reply, cap.offset, what, region));
        break;
      case VFIO_REGION_INFO_CAP_TYPE: {
        auto type = read_at<vfio_region_info_cap_type>(reply, cap.offset);
        if (!type) {
          return Error::invalid(what + ": TYPE capability at offset " + hex(cap.offset) +
                                " is truncated");
        }
        region.type = type->type;
        region.subtype = type->subtype;
        break;
      }
      case VFIO_REGION_INFO_CAP_MSIX_MAPPABLE:
        region.msix_mappable = true;
        break;
      default:
        break;  // unknown capabilities are skipped on purpose
    }
  }
  return region;
}

// VFIO_GROUP_GET_DEVICE_FD (via Group::device_fd), then VFIO_DEVICE_GET_INFO: fills flags,
// num_regions, num_irqs; assumes argsz = sizeof(vfio_device_info) is accepted (the device info
// capabilities, s390 only, are not read).
Result<DeviceFd> DeviceFd::open(std::shared_ptr<VfioSys> sys, Group& group, const std::string& bdf) {
  KEEL_TRY_WRAP(auto fd, group.device_fd(bdf), "VFIO device " + bdf);
  return adopt(std::move(sys), std::move(fd), bdf);
}

Result<DeviceFd> DeviceFd::adopt(std::shared_ptr<VfioSys> sys, UniqueFd fd, const std::string& bdf) {
  vfio_device_info raw{};
  raw.argsz = sizeof(raw);
  if (auto got = sys->ioctl(fd.get(), VFIO_DEVICE_GET_INFO, &raw, "VFIO_DEVICE_GET_INFO " + bdf);
      !got) {
    return got.error().wrap("VFIO device " + bdf);
  }
  DeviceInfo info{raw.flags, raw.num_regions, raw.num_irqs};
  return DeviceFd(std::move(sys), bdf, std::move(fd), info);
}

// VFIO_DEVICE_GET_REGION_INFO(index): assumes the argsz-growth protocol (see query_info) for
// the capability chain; an index past num_regions is EINVAL from the kernel.
Result<RegionInfo> DeviceFd::region_info(std::uint32_t index) const {
  vfio_region_info head{};
  head.argsz = sizeof(head);
  head.index = index;
  const std::string what = "VFIO_DEVICE_GET_REGION_INFO(" + std::to_string(index) + ") " + name_;
  auto reply =
      query_info(*sys_, fd_.get(), VFIO_DEVICE_GET_REGION_INFO,
                 std::span(reinterpret_cast<const std::uint8_t*>(&head), sizeof(head)), what);
  if (!reply) {
    return reply.error();
  }
  KEEL_TRY_WRAP(auto region, parse_region_info(*reply), name_);
  if (region.index != index) {
    return Error::invalid(what + ": the reply describes region " + std::to_string(region.index));
  }
  return region;
}

// VFIO_DEVICE_GET_IRQ_INFO(index): fills flags and count; an index past num_irqs is EINVAL.
Result<IrqInfo> DeviceFd::irq_info(std::uint32_t index) const {
  vfio_irq_info raw{};
  raw.argsz = sizeof(raw);
  raw.index = index;
  KEEL_TRY_STATUS(sys_->ioctl(fd_.get(), VFIO_DEVICE_GET_IRQ_INFO, &raw,
                              "VFIO_DEVICE_GET_IRQ_INFO(" + std::to_string(index) + ") " + name_));
  return IrqInfo{index, raw.flags, raw.count};
}

Status DeviceFd::check_range(const RegionInfo& region, std::uint64_t offset, std::uint64_t size,
                           const char* access) const {
  if (offset > region.size || size > region.size - offset) {
    return Error::from_errno(EFAULT, name_ + " region " + std::to_string(region.index) + ": " +
                                         access + " of " + std::to_string(size) + " bytes at " +
                                         hex(offset) + " is outside the " + hex(region.size) +
                                         "-byte region");
  }
  return ok_status();
}

Status DeviceFd::read(const RegionInfo& region, std::uint64_t offset, void* data,
                    std::size_t size) const {
  KEEL_TRY_STATUS(check_range(region, offset, size, "read"));
  if (!region.readable()) {
    return Error::from_errno(EPERM,
                             name_ + " region " + std::to_string(region.index) + " cannot be read");
  }
  return sys_->pread(fd_.get(), data, size, static_cast<off_t>(region.offset + offset),
                     name_ + " region " + std::to_string(region.index) + " read at " + hex(offset));
}

Status DeviceFd::write(const RegionInfo& region, std::uint64_t offset, const void* data,
                     std::size_t size) const {
  KEEL_TRY_STATUS(check_range(region, offset, size, "write"));
  if (!region.writable()) {
    return Error::from_errno(
        EPERM, name_ + " region " + std::to_string(region.index) + " cannot be written");
  }
  return sys_->pwrite(
      fd_.get(), data, size, static_cast<off_t>(region.offset + offset),
      name_ + " region " + std::to_string(region.index) + " write at " + hex(offset));
}

Result<Mapping> DeviceFd::mmap(const RegionInfo& region, std::uint64_t offset, std::uint64_t size,
                             int prot) const {
  KEEL_TRY_STATUS(check_range(region, offset, size, "mmap"));
  const std::string what =
      name_ + " region " + std::to_string(region.index) + " mmap " + hex(offset) + "+" + hex(size);
  if (!region.mmappable()) {
    return Error::from_errno(EPERM, what + ": the region cannot be mmapped");
  }
  if (region.sparse_areas) {
    bool inside = false;
    for (const auto& area : *region.sparse_areas) {
      inside = inside || (offset >= area.offset && offset + size <= area.offset + area.size);
    }
    if (!inside) {
      return Error::from_errno(EPERM, what + ": not inside one of the region's " +
                                          std::to_string(region.sparse_areas->size()) +
                                          " mmappable areas");
    }
  }
  return sys_->mmap(fd_.get(), size, prot, static_cast<off_t>(region.offset + offset), what);
}

}  // namespace keel::vfio
