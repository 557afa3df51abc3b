#include <memory>
#include <vector>

#include <catch2/catch.hpp>

#include "devices/acpi_pm.hpp"
#include "devices/acpi_slots.hpp"
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

std::uint32_t read_cpu(AcpiSlots& cpus, std::uint32_t id) {
  std::uint8_t b[4] = {0xaa, 0xaa, 0xaa, 0xaa};
  cpus.read(id * 4, b);
  return b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<std::uint32_t>(b[3]) << 24);
}

void write_cpu(AcpiSlots& cpus, std::uint32_t id, std::uint32_t value) {
  const std::uint8_t b[4] = {static_cast<std::uint8_t>(value), static_cast<std::uint8_t>(value >> 8),
                             static_cast<std::uint8_t>(value >> 16),
                             static_cast<std::uint8_t>(value >> 24)};
  cpus.write(id * 4, b);
}

TEST_CASE("vCPU hot-plug registers: plug, acknowledge, unplug, eject") {
  auto line = std::make_shared<CountingLine>();
  std::vector<std::uint32_t> ejected;
  AcpiSlots cpus(2, 4, 1, line, [&](std::uint32_t id) { ejected.push_back(id); });
  CHECK(cpus.size() == 16);
  CHECK(read_cpu(cpus, 0) == layout::kSlotEnabled);
  CHECK(read_cpu(cpus, 1) == layout::kSlotEnabled);
  CHECK(read_cpu(cpus, 2) == 0);
  // Plugged: enabled and inserting until the guest's _EVT acknowledges it.
  cpus.plug(2);
  CHECK(line->edges == 1);
  CHECK(read_cpu(cpus, 2) == (layout::kSlotEnabled | layout::kSlotInserting));
  write_cpu(cpus, 2, layout::kSlotInserting);
  CHECK(read_cpu(cpus, 2) == layout::kSlotEnabled);
  CHECK(cpus.enabled(2));
  // A guest that ejects a vCPU nobody asked back (sysfs eject) keeps it.
  write_cpu(cpus, 2, layout::kSlotEject);
  write_cpu(cpus, 1, layout::kSlotEject);
  CHECK(ejected.empty());
  CHECK(cpus.enabled(2));
  CHECK(cpus.enabled(1));
  // Asked back: removing until acknowledged; _EJ0 then takes it away and tells the VMM.
  cpus.request_unplug(2);
  CHECK(line->edges == 2);
  CHECK(read_cpu(cpus, 2) == (layout::kSlotEnabled | layout::kSlotRemoving));
  write_cpu(cpus, 2, layout::kSlotRemoving);
  CHECK(ejected.empty());
  write_cpu(cpus, 2, layout::kSlotEject);
  CHECK(ejected == std::vector<std::uint32_t>{2});
  CHECK(read_cpu(cpus, 2) == 0);
  CHECK_FALSE(cpus.enabled(2));
  // A vCPU that is not there cannot be ejected again or asked back; vCPU 0 never leaves.
  write_cpu(cpus, 2, layout::kSlotEject);
  cpus.request_unplug(3);
  cpus.request_unplug(0);
  write_cpu(cpus, 0, layout::kSlotEject);
  CHECK(ejected == std::vector<std::uint32_t>{2});
  CHECK(line->edges == 2);
  CHECK(cpus.enabled(0));
  // Out of range, partial or unaligned accesses: zeros read, nothing changed, no fault.
  cpus.plug(9);
  write_cpu(cpus, 9, layout::kSlotEject);
  std::uint8_t two[2] = {0xaa, 0xaa};
  cpus.write(1, std::span<const std::uint8_t>(two, 2));
  cpus.read(15, two);
  CHECK(two[0] == 0);
  CHECK(two[1] == 0);
  CHECK(read_cpu(cpus, 1) == layout::kSlotEnabled);
}

}  // namespace
}  // namespace keel::devices
