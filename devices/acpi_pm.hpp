#pragma once

#include "devices/bus_device.hpp"
#include "devices/power_event.hpp"

namespace keel::devices {

// The registers a hardware-reduced ACPI FADT points at (see memory/layout.hpp for the port):
// the sleep control register (SLP_EN with SLP_TYP = the \_S5 value powers off), the sleep status
// register, and the reset register.
class AcpiPm : public BusDevice {
 public:
  explicit AcpiPm(PowerHandler on_power) : on_power_(std::move(on_power)) {}
  void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
  void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

 private:
  PowerHandler on_power_;
};

}  // namespace keel::devices
