#include "devices/power_button.hpp"

#include <algorithm>

#include "base/log.hpp"

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
  std::fill(data.begin(), data.end(), 0);
  std::uint32_t value = 0;
  {
    std::lock_guard lock(mutex_);
    value = pressed_;
    if (offset == 0) {  // a read of PBST's first byte hands the press to the guest, once
      pressed_ = 0;
    }
  }
  for (std::size_t i = 0; i < data.size() && offset + i < 4; ++i) {
    data[i] = static_cast<std::uint8_t>(value >> (8 * (offset + i)));
  }
}

void PowerButton::write(std::uint64_t /*offset*/, std::span<const std::uint8_t> /*data*/) {}

}  // namespace keel::devices
