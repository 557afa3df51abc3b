#pragma once

#include "devices/bus_device.hpp"
#include "devices/power_event.hpp"

namespace keel::devices {

// Just enough of the i8042 keyboard controller for its reset line: command 0xFE on the
// command port (offset 4 from 0x60) resets the machine. No keyboard is attached.
class I8042 : public BusDevice {
 public:
  explicit I8042(PowerHandler on_power) : on_power_(std::move(on_power)) {}
  void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
  void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

  static constexpr std::uint64_t kSize = 5;  // ports 0x60..0x64

 private:
  PowerHandler on_power_;
};

}  // namespace keel::devices
