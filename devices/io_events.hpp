#pragma once

#include <cstdint>

#include "base/result.hpp"

namespace keel::devices {

// Lets a device have guest writes to one MMIO address signal an eventfd inside the kernel, with
// no exit to the VMM (a virtio queue's notify address). The VMM implements it with KVM
// ioeventfds; a write that is not caught this way still reaches the device on the MMIO bus.
class IoEvents {
 public:
  virtual ~IoEvents() = default;
  // Writes of any size to `gpa` signal `eventfd`.
  virtual Status add(std::uint64_t gpa, int eventfd) = 0;
  virtual Status remove(std::uint64_t gpa, int eventfd) = 0;
};

}  // namespace keel::devices
