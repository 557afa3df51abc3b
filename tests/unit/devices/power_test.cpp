#include <vector>

#include <catch2/catch.hpp>

#include "devices/acpi_pm.hpp"
#include "devices/i8042.hpp"
#include "memory/layout.hpp"

namespace keel::devices {
namespace {

namespace layout = keel::memory::layout;

TEST_CASE("i8042 command 0xFE resets; other writes do nothing") {
  std::vector<PowerEvent> events;
  I8042 kbd([&](PowerEvent e) { events.push_back(e); });
  std::uint8_t v = 0xfe;
  kbd.write(0, std::span<const std::uint8_t>(&v, 1));  // data port: not a command
  v = 0xd1;
  kbd.write(4, std::span<const std::uint8_t>(&v, 1));
  CHECK(events.empty());
  v = 0xfe;
  kbd.write(4, std::span<const std::uint8_t>(&v, 1));
  CHECK(events == std::vector<PowerEvent>{PowerEvent::kReset});
  std::uint8_t status = 0xff;
  kbd.read(4, std::span(&status, 1));
  CHECK(status == 0);
}

TEST_CASE("ACPI sleep control with SLP_TYP=S5 powers off; reset register resets") {
  std::vector<PowerEvent> events;
  AcpiPm pm([&](PowerEvent e) { events.push_back(e); });
  auto put = [&](std::uint8_t off, std::uint8_t v) { pm.write(off, std::span<const std::uint8_t>(&v, 1)); };
  put(layout::kAcpiSleepControlOffset, static_cast<std::uint8_t>(layout::kAcpiS5SleepType << 2));  // no SLP_EN
  put(layout::kAcpiSleepControlOffset, static_cast<std::uint8_t>((3 << 2) | 0x20));  // S3: ignored
  put(layout::kAcpiResetOffset, 0x7);
  CHECK(events.empty());
  put(layout::kAcpiSleepControlOffset, static_cast<std::uint8_t>((layout::kAcpiS5SleepType << 2) | 0x20));
  put(layout::kAcpiResetOffset, layout::kAcpiResetValue);
  CHECK(events == std::vector<PowerEvent>{PowerEvent::kPowerOff, PowerEvent::kReset});
}

}  // namespace
}  // namespace keel::devices
