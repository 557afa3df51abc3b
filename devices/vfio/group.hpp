#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "devices/vfio/vfio_sys.hpp"

namespace keel::vfio {

// One VFIO group (/dev/vfio/<number>): owns its fd, and detaches itself from its container on
// destruction. Move-only.
class Group {
 public:
  // Opens /dev/vfio/<number> and checks VFIO_GROUP_GET_STATUS: a group that is not viable is an
  // error naming the devices in <sysfs_root>/kernel/iommu_groups/<number> that are not bound to
  // vfio-pci.
  static Result<Group> open(std::shared_ptr<VfioSys> sys, std::uint32_t number,
                            const std::filesystem::path& sysfs_root);

  ~Group();
  Group(Group&& other) noexcept;
  Group& operator=(Group&& other) noexcept;
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  std::uint32_t number() const { return number_; }
  int fd() const { return fd_.get(); }
  bool attached() const { return attached_; }

  // Puts the group into a container (VFIO_GROUP_SET_CONTAINER); ContainerFd::attach calls it.
  Status set_container(int container_fd);
  // Takes it out again (VFIO_GROUP_UNSET_CONTAINER). Fails with EBUSY while device fds are open.
  Status unset_container();
  // A device fd for the PCI address `bdf` (VFIO_GROUP_GET_DEVICE_FD); DeviceFd::open calls it.
  Result<UniqueFd> device_fd(const std::string& bdf);

 private:
  Group(std::shared_ptr<VfioSys> sys, std::uint32_t number, UniqueFd fd)
      : sys_(std::move(sys)), number_(number), fd_(std::move(fd)) {}
  void release();

  std::shared_ptr<VfioSys> sys_;
  std::uint32_t number_ = 0;
  UniqueFd fd_;
  bool attached_ = false;
};

}  // namespace keel::vfio
