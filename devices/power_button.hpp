#pragma once

#include <cstdint>
#include <memory>
#include <mutex>

#include "devices/bus_device.hpp"
#include "devices/interrupt.hpp"

namespace keel::devices {

// The ACPI power button (the DSDT's \_SB_.PWRB, a PNP0C0C control-method button) behind one
// 32-bit register at layout::kPowerButtonPort. press() sets PBST bit 0 and raises the Generic
// Event Device's interrupt; the guest's _EVT reads PBST (which clears it) and notifies the
// button, and Linux's button driver reports KEY_POWER to whatever user space acts on it
// (systemd-logind, acpid). What the guest does with it is its own affair, as on a real machine.
class PowerButton : public BusDevice {
 public:
  explicit PowerButton(std::shared_ptr<InterruptLine> event) : event_(std::move(event)) {}

  void press();

  void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
  void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

 private:
  std::shared_ptr<InterruptLine> event_;
  std::mutex mutex_;
  std::uint32_t pressed_ = 0;  // PBST: bit 0 once pressed, until the guest reads it
};

}  // namespace keel::devices
