#include "tests/unit/devices/recording_platform.hpp"

#include <poll.h>
#include <unistd.h>

#include <string>

namespace keel::testing {

Result<std::uint32_t> RecordingRouter::add_msi_route(std::uint64_t address, std::uint32_t data) {
  if (fail_add_route) {
    return Error::from_errno(*fail_add_route, "recording router: add_msi_route");
  }
  const std::uint32_t gsi = next_gsi_++;
  routes[gsi] = Route{address, data};
  ++routes_added;
  return gsi;
}

Status RecordingRouter::update_msi_route(std::uint32_t gsi, std::uint64_t address,
                                         std::uint32_t data) {
  auto it = routes.find(gsi);
  if (it == routes.end()) {
    ++refused;
    return Error::from_errno(ENOENT,
                             "recording router: update of unknown GSI " + std::to_string(gsi));
  }
  it->second = Route{address, data};
  ++route_updates;
  return ok_status();
}

Status RecordingRouter::remove_msi_route(std::uint32_t gsi) {
  if (routes.erase(gsi) == 0) {
    ++refused;
    return Error::from_errno(ENOENT,
                             "recording router: removal of unknown GSI " + std::to_string(gsi));
  }
  for (const auto& [fd, irqfd] : irqfds) {
    if (irqfd.gsi == gsi) {
      ++refused;  // an irqfd left pointing at a route that is gone
    }
  }
  return ok_status();
}

Status RecordingRouter::attach_irqfd(int eventfd, std::uint32_t gsi) {
  if (!irqfds.emplace(eventfd, Irqfd{gsi, -1}).second) {
    return Error::from_errno(EBUSY, "recording router: eventfd attached twice");
  }
  return ok_status();
}

Status RecordingRouter::attach_level_irqfd(int eventfd, int resample_fd, std::uint32_t gsi) {
  if (!irqfds.emplace(eventfd, Irqfd{gsi, resample_fd}).second) {
    return Error::from_errno(EBUSY, "recording router: eventfd attached twice");
  }
  return ok_status();
}

Status RecordingRouter::detach_irqfd(int eventfd, std::uint32_t gsi) {
  auto it = irqfds.find(eventfd);
  if (it == irqfds.end() || it->second.gsi != gsi) {
    ++refused;
    return Error::from_errno(ENOENT, "recording router: detach of an unknown irqfd");
  }
  irqfds.erase(it);
  return ok_status();
}

Result<std::uint32_t> RecordingSlots::add(std::uint64_t gpa, std::uint64_t size, void* host) {
  ++adds;
  const auto page = [](std::uint64_t v) { return v % 4096 == 0; };
  bool overlaps = false;
  for (const auto& [id, s] : slots) {
    overlaps = overlaps || (gpa < s.gpa + s.size && s.gpa < gpa + size);
  }
  if (size == 0 || !page(gpa) || !page(size) || !page(reinterpret_cast<std::uintptr_t>(host)) ||
      overlaps) {
    ++refused;
    return Error::from_errno(EINVAL, "recording slots: bad slot");
  }
  const std::uint32_t id = next_++;
  slots[id] = Slot{gpa, size, host};
  return id;
}

Status RecordingSlots::remove(std::uint32_t slot) {
  ++removes;
  if (slots.erase(slot) == 0) {
    ++refused;
    return Error::from_errno(ENOENT, "recording slots: unknown slot");
  }
  return ok_status();
}

const RecordingSlots::Slot* RecordingSlots::at(std::uint64_t gpa) const {
  for (const auto& [id, s] : slots) {
    if (s.gpa == gpa) {
      return &s;
    }
  }
  return nullptr;
}

std::uint64_t RecordingRouter::fired(std::uint32_t data) {
  for (const auto& [gsi, route] : routes) {
    if (route.data != data) {
      continue;
    }
    for (const auto& [fd, irqfd] : irqfds) {
      if (irqfd.gsi == gsi) {
        pollfd p{fd, POLLIN, 0};
        std::uint64_t n = 0;
        if (::poll(&p, 1, 0) == 1 && ::read(fd, &n, sizeof n) == sizeof n) {
          return n;
        }
      }
    }
  }
  return 0;
}

}  // namespace keel::testing
