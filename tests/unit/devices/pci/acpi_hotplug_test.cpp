#include "devices/pci/acpi_hotplug.hpp"

#include <vector>

#include <catch2/catch.hpp>

#include "memory/layout.hpp"

namespace keel::pci {
namespace {

namespace layout = keel::memory::layout;

struct Edges : devices::InterruptLine {
  void trigger() override { ++count; }
  int count = 0;
};

struct Rig {
  std::shared_ptr<Edges> edges = std::make_shared<Edges>();
  std::vector<std::uint8_t> ejected;
  AcpiHotplug hp{edges, [this](std::uint8_t slot) { ejected.push_back(slot); }};

  std::uint32_t read32(std::uint64_t offset) {
    std::uint8_t b[4];
    hp.read(offset, b);
    return b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<std::uint32_t>(b[3]) << 24);
  }
  void write32(std::uint64_t offset, std::uint32_t v) {
    const std::uint8_t b[4] = {static_cast<std::uint8_t>(v), static_cast<std::uint8_t>(v >> 8),
                               static_cast<std::uint8_t>(v >> 16),
                               static_cast<std::uint8_t>(v >> 24)};
    hp.write(offset, b);
  }
};

TEST_CASE("ACPI hot-plug: an announcement raises the event once and PCIU clears on read") {
  Rig r;
  r.hp.announce(3);
  r.hp.announce(31);
  CHECK(r.edges->count == 2);
  CHECK(r.read32(layout::kPciHotplugUpOffset) == ((1U << 3) | (1U << 31)));
  CHECK(r.read32(layout::kPciHotplugUpOffset) == 0);  // each slot notified once
  CHECK(r.read32(layout::kPciHotplugDownOffset) == 0);
  CHECK(r.ejected.empty());
}

TEST_CASE("ACPI hot-plug: an eject request stays in PCID until the guest's _EJ0 writes B0EJ") {
  Rig r;
  r.hp.request_eject(5);
  CHECK(r.edges->count == 1);
  CHECK(r.hp.eject_pending(5));
  CHECK(r.read32(layout::kPciHotplugDownOffset) == (1U << 5));
  CHECK(r.read32(layout::kPciHotplugDownOffset) == (1U << 5));  // not cleared by reading
  r.write32(layout::kPciHotplugEjectOffset, 1U << 5);
  CHECK(r.ejected == std::vector<std::uint8_t>{5});
  CHECK_FALSE(r.hp.eject_pending(5));
  CHECK(r.read32(layout::kPciHotplugDownOffset) == 0);
}

TEST_CASE("ACPI hot-plug: what a guest writes cannot name the host bridge or misfire") {
  Rig r;
  // Slot 0 (the host bridge) is never ejected or announced.
  r.hp.announce(0);
  CHECK(r.read32(layout::kPciHotplugUpOffset) == 0);
  r.write32(layout::kPciHotplugEjectOffset, 1);
  CHECK(r.ejected.empty());
  // Writes to PCIU/PCID, and partial writes of B0EJ, are ignored.
  r.write32(layout::kPciHotplugUpOffset, 0xffffffff);
  r.write32(layout::kPciHotplugDownOffset, 0xffffffff);
  const std::uint8_t one = 0xff;
  r.hp.write(layout::kPciHotplugEjectOffset, std::span<const std::uint8_t>(&one, 1));
  CHECK(r.read32(layout::kPciHotplugUpOffset) == 0);
  CHECK(r.read32(layout::kPciHotplugDownOffset) == 0);
  CHECK(r.ejected.empty());
  // A guest may eject slots on its own (several at once): each is reported, in order.
  r.write32(layout::kPciHotplugEjectOffset, (1U << 2) | (1U << 9));
  CHECK(r.ejected == std::vector<std::uint8_t>{2, 9});
  // Reads past the registers are zero; B0EJ reads as zero.
  CHECK(r.read32(layout::kPciHotplugEjectOffset) == 0);
  std::uint8_t past[2] = {0xaa, 0xaa};
  r.hp.read(layout::kPciHotplugSize, past);
  CHECK(past[0] == 0);
  CHECK(past[1] == 0);
}

}  // namespace
}  // namespace keel::pci
