#pragma once

#include <cstdint>

#include "base/result.hpp"

namespace keel::devices {

// Lets a device map host memory (a passthrough BAR) straight into the guest-physical space, so
// guest accesses to it never exit to the VMM. The VMM implements it with KVM memory slots.
class MemorySlots {
 public:
  virtual ~MemorySlots() = default;
  // Maps [gpa, gpa+size) to `host`; returns a slot id for remove().
  virtual Result<std::uint32_t> add(std::uint64_t gpa, std::uint64_t size, void* host) = 0;
  virtual Status remove(std::uint32_t slot) = 0;
};

}  // namespace keel::devices
