#pragma once

#include <memory>
#include <string>

#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "devices/vfio/group.hpp"
#include "devices/vfio/vfio_sys.hpp"

namespace keel::vfio {

inline constexpr const char* kContainerPath = "/dev/vfio/vfio";

// One VFIO container (/dev/vfio/vfio) with the type1v2 IOMMU: owns its fd. Move-only.
class ContainerFd {
 public:
  // Opens the container and checks VFIO_GET_API_VERSION and the extensions: VFIO_TYPE1v2_IOMMU is
  // required; VFIO_UNMAP_ALL is noted.
  static Result<ContainerFd> open(std::shared_ptr<VfioSys> sys);

  int fd() const { return fd_.get(); }
  VfioSys& sys() const { return *sys_; }
  bool iommu_set() const { return iommu_set_; }
  // VFIO_UNMAP_ALL (extension 9): one VFIO_IOMMU_UNMAP_DMA clears the whole container.
  bool unmap_all_supported() const { return unmap_all_; }

  // Puts `group` into this container (VFIO_GROUP_SET_CONTAINER) and, for the first group, selects
  // the type1v2 IOMMU (VFIO_SET_IOMMU). If that fails the group is taken out again.
  Status attach(Group& group);

 private:
  ContainerFd(std::shared_ptr<VfioSys> sys, UniqueFd fd, bool unmap_all)
      : sys_(std::move(sys)), fd_(std::move(fd)), unmap_all_(unmap_all) {}

  std::shared_ptr<VfioSys> sys_;
  UniqueFd fd_;
  bool unmap_all_ = false;
  bool iommu_set_ = false;
};

}  // namespace keel::vfio
