#include "devices/acpi_pm.hpp"

#include <algorithm>

#include "base/hex.hpp"
#include "base/log.hpp"
#include "memory/layout.hpp"

namespace keel::devices {
namespace {
namespace layout = keel::memory::layout;
constexpr std::uint8_t kSleepTypeMask = 0x7;
}  // namespace

void AcpiPm::read(std::uint64_t /*offset*/, std::span<std::uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
}

void AcpiPm::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
  if (data.empty() || !on_power_) {
    return;
  }
  const std::uint8_t value = data[0];
  if (offset == layout::kAcpiSleepControlOffset && (value & layout::kAcpiSleepEnable) != 0 &&
      ((value >> layout::kAcpiSleepTypeShift) & kSleepTypeMask) == layout::kAcpiS5SleepType) {
    log::info("acpi", "sleep control: S5 requested",
              {{"value", hex(value)}, {"size", data.size()}});
    on_power_(PowerEvent::kPowerOff);
  } else if (offset == layout::kAcpiResetOffset && value == layout::kAcpiResetValue) {
    log::info("acpi", "reset register written", {{"size", data.size()}});
    on_power_(PowerEvent::kReset);
  }
}

}  // namespace keel::devices
