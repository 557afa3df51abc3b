#include "devices/vfio/container_fd.hpp"

#include <linux/vfio.h>

#include <cerrno>
#include <cstdint>

namespace keel::vfio {
namespace {

// ioctls whose argument is a plain integer travel through the seam's void* unchanged (the
// kernel reads the argument as an unsigned long either way).
void* int_arg(unsigned long value) {
  return reinterpret_cast<void*>(  // NOLINT(performance-no-int-to-ptr): the ioctl ABI
      static_cast<std::uintptr_t>(value));
}

// VFIO_CHECK_EXTENSION(extension): assumes > 0 means supported, 0 not supported.
Result<bool> has_extension(VfioSys& sys, int fd, unsigned long extension, const char* name) {
  KEEL_TRY(const int ret, sys.ioctl(fd, VFIO_CHECK_EXTENSION, int_arg(extension),
                                    std::string("VFIO_CHECK_EXTENSION(") + name + ")"));
  return ret > 0;
}

}  // namespace

Result<ContainerFd> ContainerFd::open(std::shared_ptr<VfioSys> sys) {
  auto fd = sys->open(kContainerPath);
  if (!fd) {
    if (fd.error().errno_value() == ENOENT) {
      return fd.error().wrap("VFIO container: no " + std::string(kContainerPath) +
                             " (load the vfio and vfio_iommu_type1 modules: modprobe vfio-pci)");
    }
    return fd.error().wrap("VFIO container");
  }
  // VFIO_GET_API_VERSION: no argument; assumes VFIO_API_VERSION (0) on every kernel since 3.6.
  KEEL_TRY_WRAP(auto api,
                sys->ioctl(fd->get(), VFIO_GET_API_VERSION, nullptr, "VFIO_GET_API_VERSION"),
                "VFIO container");
  if (api != VFIO_API_VERSION) {
    return Error::invalid("VFIO container: " + std::string(kContainerPath) +
                          " speaks API version " + std::to_string(api) + ", Keel speaks " +
                          std::to_string(VFIO_API_VERSION));
  }
  KEEL_TRY_WRAP(auto type1v2,
                has_extension(*sys, fd->get(), VFIO_TYPE1v2_IOMMU, "VFIO_TYPE1v2_IOMMU"),
                "VFIO container");
  if (!type1v2) {
    return Error::invalid(
        "VFIO container: the kernel does not offer the type1v2 IOMMU "
        "(VFIO_TYPE1v2_IOMMU), which Keel requires: load vfio_iommu_type1 "
        "(modprobe vfio_iommu_type1) on Linux 3.18 or later");
  }
  KEEL_TRY_WRAP(auto unmap_all, has_extension(*sys, fd->get(), VFIO_UNMAP_ALL, "VFIO_UNMAP_ALL"),
                "VFIO container");
  return ContainerFd(std::move(sys), std::move(*fd), unmap_all);
}

// VFIO_SET_IOMMU(VFIO_TYPE1v2_IOMMU): assumes at least one group is in the container and the
// IOMMU was not set before; EPERM usually means the host has no interrupt remapping.
Status ContainerFd::attach(Group& group) {
  const std::string name = "IOMMU group " + std::to_string(group.number());
  if (auto st = group.set_container(fd_.get()); !st) {
    return st.error().wrap("VFIO container: attach " + name);
  }
  if (iommu_set_) {
    return ok_status();
  }
  auto ret = sys_->ioctl(fd_.get(), VFIO_SET_IOMMU, int_arg(VFIO_TYPE1v2_IOMMU),
                         "VFIO_SET_IOMMU(VFIO_TYPE1v2_IOMMU) with " + name);
  if (!ret) {
    // Best effort: the group leaves the container when its fd closes anyway.
    [[maybe_unused]] auto undo = group.unset_container();
    if (ret.error().errno_value() == EPERM) {
      return ret.error().wrap(
          "VFIO container: the host has no interrupt remapping (enable it, or "
          "load vfio_iommu_type1 with allow_unsafe_interrupts=1 at your own "
          "risk)");
    }
    return ret.error().wrap("VFIO container");
  }
  iommu_set_ = true;
  return ok_status();
}

}  // namespace keel::vfio
