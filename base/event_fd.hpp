#pragma once

#include <sys/eventfd.h>

#include <cstdint>

#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace keel {

// An eventfd counter: one side signals, the other waits or is woken through poll/epoll/KVM irqfd.
class EventFd {
 public:
  // eventfd(0, EFD_CLOEXEC | flags); pass EFD_NONBLOCK for event-loop use.
  static Result<EventFd> create(int flags = 0);

  Status signal(std::uint64_t value = 1) const;
  // Returns the counter and resets it; EAGAIN on a non-blocking eventfd with nothing pending.
  Result<std::uint64_t> consume() const;

  int fd() const { return fd_.get(); }

 private:
  explicit EventFd(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace keel
