#include "devices/vfio/group.hpp"

#include <linux/vfio.h>

#include <cerrno>
#include <utility>

#include "base/log.hpp"
#include "devices/vfio/pci_sysfs.hpp"

namespace keel::vfio {

Result<Group> Group::open(std::shared_ptr<VfioSys> sys, std::uint32_t number,
                          const std::filesystem::path& sysfs_root) {
  const std::string name = "IOMMU group " + std::to_string(number);
  const std::string path = "/dev/vfio/" + std::to_string(number);
  auto fd = sys->open(path);
  if (!fd) {
    switch (fd.error().errno_value()) {
      case ENOENT:
        return fd.error().wrap(name + ": no " + path +
                               " (is vfio-pci loaded and the device bound to it?)");
      case EBUSY:
        return fd.error().wrap(name + " is in use by another process (another VMM?)");
      case EACCES:
      case EPERM:
        return fd.error().wrap(name + ": no permission to open " + path +
                               " (run as root or give this user the node)");
      default:
        return fd.error().wrap(name);
    }
  }
  // VFIO_GROUP_GET_STATUS: fills flags; assumes VIABLE means every device of the group is bound
  // to a VFIO driver or to none.
  vfio_group_status status{};
  status.argsz = sizeof(status);
  KEEL_TRY_STATUS_WRAP(
      sys->ioctl(fd->get(), VFIO_GROUP_GET_STATUS, &status, "VFIO_GROUP_GET_STATUS " + path), name);
  if ((status.flags & VFIO_GROUP_FLAGS_VIABLE) == 0) {
    auto members = group_members(sysfs_root, number);
    if (!members) {
      return Error::invalid(name +
                            " is not viable (bind every device of the group to vfio-pci); "
                            "its devices could not be listed: " +
                            members.error().message());
    }
    return Error::invalid(describe_unviable_group(number, *members));
  }
  return Group(std::move(sys), number, std::move(*fd));
}

Group::~Group() { release(); }

Group::Group(Group&& other) noexcept
    : sys_(std::move(other.sys_)),
      number_(other.number_),
      fd_(std::move(other.fd_)),
      attached_(std::exchange(other.attached_, false)) {}

Group& Group::operator=(Group&& other) noexcept {
  if (this != &other) {
    release();
    sys_ = std::move(other.sys_);
    number_ = other.number_;
    fd_ = std::move(other.fd_);
    attached_ = std::exchange(other.attached_, false);
  }
  return *this;
}

void Group::release() {
  if (attached_) {
    // Closing the fd detaches too, once the last device fd is gone; unsetting first makes the
    // group reusable at once when nothing else holds it.
    if (auto st = unset_container(); !st) {
      log::debug("vfio", "group stays attached until its device fds close",
                 {{"group", number_}, {"error", st.error().message()}});
    }
  }
  fd_.reset();
}

// VFIO_GROUP_SET_CONTAINER: takes a pointer to the container fd; assumes the group is viable
// and not yet in a container.
Status Group::set_container(int container_fd) {
  int fd = container_fd;
  KEEL_TRY_STATUS(sys_->ioctl(fd_.get(), VFIO_GROUP_SET_CONTAINER, &fd,
                              "VFIO_GROUP_SET_CONTAINER group " + std::to_string(number_)));
  attached_ = true;
  return ok_status();
}

// VFIO_GROUP_UNSET_CONTAINER: no argument; assumes no device fd of the group is open (EBUSY).
Status Group::unset_container() {
  KEEL_TRY_STATUS(sys_->ioctl(fd_.get(), VFIO_GROUP_UNSET_CONTAINER, nullptr,
                              "VFIO_GROUP_UNSET_CONTAINER group " + std::to_string(number_)));
  attached_ = false;
  return ok_status();
}

// VFIO_GROUP_GET_DEVICE_FD: takes the device name (its PCI address); assumes the group is in a
// container whose IOMMU is set. Returns a new fd.
Result<UniqueFd> Group::device_fd(const std::string& bdf) {
  std::string name = bdf;
  auto ret =
      sys_->ioctl(fd_.get(), VFIO_GROUP_GET_DEVICE_FD, name.data(),
                  "VFIO_GROUP_GET_DEVICE_FD " + bdf + " in group " + std::to_string(number_));
  if (!ret) {
    return ret.error();
  }
  return UniqueFd(*ret);
}

}  // namespace keel::vfio
