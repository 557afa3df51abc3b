#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "devices/vfio/dma_access.hpp"
#include "devices/vfio/iommu_info.hpp"
#include "devices/vfio/vfio_sys.hpp"

namespace keel::vfio {

inline constexpr const char* kIommufdPath = "/dev/iommu";

// What an IOAS lets a device reach: the usable IOVA ranges (narrowed by every attached device's
// reserved regions, so read again after an attach) and the alignment every mapping needs.
struct IoasRanges {
  std::vector<IovaRange> ranges;
  std::uint64_t alignment = 0;
};

// An iommufd context (/dev/iommu): the modern VFIO path (Linux 6.2; the device cdev that binds
// to it, 6.6). Unlike a type1 container it has no count of mappings: what binds is pinned memory,
// charged to RLIMIT_MEMLOCK of the user (the default) or of this process. Every call goes through
// the VfioSys seam. Move-only; closing it frees what no bound device still holds.
class Iommufd {
 public:
  // Opens /dev/iommu; ENOENT names the fix (a host kernel with CONFIG_IOMMUFD, modprobe iommufd).
  static Result<Iommufd> open(std::shared_ptr<VfioSys> sys);

  int fd() const { return fd_.get(); }
  VfioSys& sys() const { return *sys_; }

  // IOMMU_OPTION RLIMIT_MODE: whether pinned pages are charged to this process's locked memory
  // (as type1 does) rather than to its user's, which every process of the user shares.
  Result<bool> charged_per_process();
  // Charges them to this process from now on. Only before any IOAS exists (else EBUSY) and with
  // CAP_SYS_RESOURCE (else EPERM); the errors say so.
  Status charge_per_process();

  // IOMMU_IOAS_ALLOC: a new, empty IO address space.
  Result<std::uint32_t> alloc_ioas();
  // IOMMU_DESTROY of an IOAS (EBUSY while a device is attached to it).
  Status destroy(std::uint32_t id);
  // IOMMU_IOAS_IOVA_RANGES, sized by asking once and again if more ranges appeared meanwhile.
  Result<IoasRanges> iova_ranges(std::uint32_t ioas);

  // IOMMU_IOAS_MAP at a fixed IOVA: pins [user_va, user_va + length) and maps it. The error
  // keeps the errno for the caller to explain (DmaMapper): ENOMEM is the memlock limit, EEXIST an
  // overlap, EINVAL a reserved or misaligned range. `what` names the call in the error.
  Status map(std::uint32_t ioas, std::uint64_t iova, std::uint64_t length, std::uint64_t user_va,
             DmaAccess access, const std::string& what);
  // IOMMU_IOAS_UNMAP of [iova, iova + length), which must cover whole areas (iommufd never
  // splits one: ENOENT). Returns the bytes the kernel unmapped.
  Result<std::uint64_t> unmap(std::uint32_t ioas, std::uint64_t iova, std::uint64_t length,
                              const std::string& what);
  // IOMMU_IOAS_UNMAP of everything in the IOAS (iova 0, length UINT64_MAX); returns the bytes.
  Result<std::uint64_t> unmap_all(std::uint32_t ioas, const std::string& what);

 private:
  Iommufd(std::shared_ptr<VfioSys> sys, UniqueFd fd) : sys_(std::move(sys)), fd_(std::move(fd)) {}

  std::shared_ptr<VfioSys> sys_;
  UniqueFd fd_;
};

// The device cdev of a PCI function bound to vfio-pci: /dev/vfio/devices/vfioN, named by
// <sysfs_root>/bus/pci/devices/<bdf>/vfio-dev/vfioN. An error names the fix when there is none
// (a host kernel with CONFIG_VFIO_DEVICE_CDEV, and the device bound to vfio-pci).
Result<std::filesystem::path> find_device_cdev(const std::filesystem::path& sysfs_root,
                                               const std::string& bdf);

// Binds an open device cdev to `iommufd` (VFIO_DEVICE_BIND_IOMMUFD; returns the device id) and
// attaches it to `ioas` (VFIO_DEVICE_ATTACH_IOMMUFD_PT). Errors name the device and the usual
// causes: EBUSY (its group is open the type1 way, or another owner), EPERM (no interrupt
// remapping: iommufd.allow_unsafe_interrupts).
Result<std::uint32_t> bind_device(VfioSys& sys, int device_fd, const Iommufd& iommufd,
                                  const std::string& bdf);
Status attach_device(VfioSys& sys, int device_fd, std::uint32_t ioas, const std::string& bdf);

}  // namespace keel::vfio
