#include <memory>
#include <vector>

#include <catch2/catch.hpp>

#include "devices/acpi_pm.hpp"
#include "devices/i8042.hpp"
#include "devices/power_button.hpp"
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

struct CountingLine : InterruptLine {
  int edges = 0;
  void trigger() override { ++edges; }
};

std::uint32_t read_pbst(PowerButton& button) {
  std::uint8_t bytes[4] = {0xaa, 0xaa, 0xaa, 0xaa};
  button.read(0, bytes);  // the DSDT's DWordAcc field: one 32-bit read
  return bytes[0] | (bytes[1] << 8) | (bytes[2] << 16) | (static_cast<std::uint32_t>(bytes[3]) << 24);
}

TEST_CASE("power button: a press sets PBST once and raises the GED's line each time") {
  auto line = std::make_shared<CountingLine>();
  PowerButton button(line);
  CHECK(read_pbst(button) == 0);
  button.press();
  CHECK(line->edges == 1);
  // A read of another byte does not take the press; PBST's first byte does, once.
  std::uint8_t high = 0xaa;
  button.read(1, std::span(&high, 1));
  CHECK(high == 0);
  CHECK(read_pbst(button) == 1);
  CHECK(read_pbst(button) == 0);
  // Two presses before the guest looks are one press; writes change nothing.
  button.press();
  button.press();
  CHECK(line->edges == 3);
  const std::uint8_t zeros[4] = {};
  button.write(0, zeros);
  CHECK(read_pbst(button) == 1);
  CHECK(read_pbst(button) == 0);
  // Out of range: zeros, never a fault.
  std::uint8_t beyond[2] = {0xaa, 0xaa};
  button.read(3, beyond);
  CHECK(beyond[0] == 0);
  CHECK(beyond[1] == 0);
}

}  // namespace
}  // namespace keel::devices
