#include "devices/power_button.hpp"

#include "base/log.hpp"
#include "devices/registers.hpp"

namespace keel::devices {

void PowerButton::press() {
  {
    std::lock_guard lock(mutex_);
    pressed_ = 1;
  }
  log::info("acpi", "power button pressed");
  event_->trigger();
}

void PowerButton::read(std::uint64_t offset, std::span<std::uint8_t> data) {
  std::uint32_t pbst = 0;
  {
    std::lock_guard lock(mutex_);
    pbst = pressed_;
    if (offset == 0) {  // a read of PBST's first byte hands the press to the guest, once
      pressed_ = 0;
    }
  }
  read_registers(std::span(&pbst, 1), offset, data);
}

void PowerButton::write(std::uint64_t /*offset*/, std::span<const std::uint8_t> /*data*/) {}

}  // namespace keel::devices
