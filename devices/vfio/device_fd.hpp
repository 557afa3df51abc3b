#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/mapping.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "devices/vfio/group.hpp"
#include "devices/vfio/vfio_sys.hpp"

namespace keel::vfio {

// VFIO_DEVICE_GET_INFO.
struct DeviceInfo {
  std::uint32_t flags = 0;  // VFIO_DEVICE_FLAGS_*
  std::uint32_t num_regions = 0;
  std::uint32_t num_irqs = 0;

  bool is_pci() const;
  bool can_reset() const;
};

// An area of a region that may be mmapped (VFIO_REGION_INFO_CAP_SPARSE_MMAP); offsets count
// from the start of the region.
struct SparseMmapArea {
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
};

// VFIO_DEVICE_GET_REGION_INFO with its capability chain.
struct RegionInfo {
  std::uint32_t index = 0;
  std::uint32_t flags = 0;   // VFIO_REGION_INFO_FLAG_*
  std::uint64_t size = 0;    // 0: the region does not exist (e.g. an unimplemented BAR)
  std::uint64_t offset = 0;  // of the region in the device fd, for pread/pwrite/mmap
  // Set when the kernel reports a sparse mmap capability: only these areas may be mmapped
  // (a BAR holding the MSI-X table). Absent: the whole region may be, if mmappable().
  std::optional<std::vector<SparseMmapArea>> sparse_areas;
  bool msix_mappable = false;         // VFIO_REGION_INFO_CAP_MSIX_MAPPABLE
  std::optional<std::uint32_t> type;  // VFIO_REGION_INFO_CAP_TYPE
  std::optional<std::uint32_t> subtype;

  bool readable() const;
  bool writable() const;
  bool mmappable() const;
};

// VFIO_DEVICE_GET_IRQ_INFO.
struct IrqInfo {
  std::uint32_t index = 0;
  std::uint32_t flags = 0;  // VFIO_IRQ_INFO_*
  std::uint32_t count = 0;  // 0: the device does not have this kind of interrupt
};

// One VFIO device fd (a PCI function): owns the fd and does every access through the seam.
// Independent of the ContainerFd and Group objects once open (the kernel keeps them alive through
// the fd). Move-only.
class DeviceFd {
 public:
  // VFIO_GROUP_GET_DEVICE_FD for `bdf` in `group` (whose container has its IOMMU set), then
  // VFIO_DEVICE_GET_INFO.
  static Result<DeviceFd> open(std::shared_ptr<VfioSys> sys, Group& group, const std::string& bdf);
  // A device cdev already bound to an iommufd and attached (iommufd.hpp): VFIO_DEVICE_GET_INFO.
  static Result<DeviceFd> adopt(std::shared_ptr<VfioSys> sys, UniqueFd fd, const std::string& bdf);

  const std::string& name() const { return name_; }
  int fd() const { return fd_.get(); }
  VfioSys& sys() const { return *sys_; }
  const DeviceInfo& info() const { return info_; }

  // VFIO_DEVICE_GET_REGION_INFO(index), growing argsz for the capability chain.
  Result<RegionInfo> region_info(std::uint32_t index) const;
  // VFIO_DEVICE_GET_IRQ_INFO(index).
  Result<IrqInfo> irq_info(std::uint32_t index) const;

  // pread/pwrite of [offset, offset+size) inside `region`; refused outside it or when the
  // region does not allow the access.
  Status read(const RegionInfo& region, std::uint64_t offset, void* data, std::size_t size) const;
  Status write(const RegionInfo& region, std::uint64_t offset, const void* data,
               std::size_t size) const;
  // mmap(MAP_SHARED) of [offset, offset+size) inside `region`; refused unless the region is
  // mmappable and, with sparse areas, the range lies in one of them.
  Result<Mapping> mmap(const RegionInfo& region, std::uint64_t offset, std::uint64_t size,
                       int prot) const;

 private:
  DeviceFd(std::shared_ptr<VfioSys> sys, std::string name, UniqueFd fd, DeviceInfo info)
      : sys_(std::move(sys)), name_(std::move(name)), fd_(std::move(fd)), info_(info) {}
  Status check_range(const RegionInfo& region, std::uint64_t offset, std::uint64_t size,
                     const char* access) const;

  std::shared_ptr<VfioSys> sys_;
  std::string name_;
  UniqueFd fd_;
  DeviceInfo info_;
};

// Parses one VFIO_DEVICE_GET_REGION_INFO reply (exposed for tests).
Result<RegionInfo> parse_region_info(std::span<const std::uint8_t> reply);

}  // namespace keel::vfio
