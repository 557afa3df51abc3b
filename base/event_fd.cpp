#include "base/event_fd.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

namespace keel {

Result<EventFd> EventFd::create(int flags) {
  int fd = ::eventfd(0, EFD_CLOEXEC | flags);
  if (fd < 0) {
    return Error::from_errno("eventfd");
  }
  return EventFd(UniqueFd(fd));
}

Status EventFd::signal(std::uint64_t value) const {
  if (::write(fd_.get(), &value, sizeof value) != static_cast<ssize_t>(sizeof value)) {
    return Error::from_errno("eventfd write");
  }
  return ok_status();
}

Result<std::uint64_t> EventFd::consume() const {
  std::uint64_t value = 0;
  if (::read(fd_.get(), &value, sizeof value) != static_cast<ssize_t>(sizeof value)) {
    return Error::from_errno("eventfd read");
  }
  return value;
}

}  // namespace keel
