#pragma once

#include <cstdint>
#include <span>

namespace keel::devices {

// A device that sits on a port-I/O or MMIO bus. It sees offsets from the base it was registered
// at, never absolute addresses. Calls can come from several vCPU threads at once: a device
// guards its own state.
class BusDevice {
 public:
  virtual ~BusDevice() = default;
  // Fills `data` (1, 2, 4 or 8 bytes) with the value read at `offset`.
  virtual void read(std::uint64_t offset, std::span<std::uint8_t> data) = 0;
  virtual void write(std::uint64_t offset, std::span<const std::uint8_t> data) = 0;
};

}  // namespace keel::devices
