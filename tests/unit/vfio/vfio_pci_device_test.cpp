#include "devices/vfio/vfio_pci_device.hpp"

#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include <cstring>
#include <memory>
#include <random>

#include <catch2/catch.hpp>

#include "base/log.hpp"
#include "memory/layout.hpp"
#include "tests/unit/vfio/vfio_pci_rig.hpp"

// Configuration space, BARs, INTx, faults and teardown of a passed-through function, against the
// fake kernel. MSI and MSI-X are in vfio_pci_device_irq_test.cpp.
namespace keel::vfio {
namespace {

using testing::FakeFunction;
using testing::kNicBar0;
using testing::kNicBar1;
using testing::kNicBar2;
using testing::kNicBar4;
using testing::nic;
using testing::PassthroughRig;
using Rig = PassthroughRig;

constexpr std::uint16_t bar_reg(int i) {
  return static_cast<std::uint16_t>(PCI_BASE_ADDRESS_0 + 4 * i);
}

// A device claiming everything: inserting it succeeds only on an empty bus.
struct Nothing : devices::BusDevice {
  void read(std::uint64_t, std::span<std::uint8_t>) override {}
  void write(std::uint64_t, std::span<const std::uint8_t>) override {}
};
// Nothing on `bus` but the platform's own config-space window [keep, keep + keep_len).
bool bus_empty(devices::Bus& bus, std::uint64_t keep, std::uint64_t keep_len) {
  const bool below = bus.insert(std::make_shared<Nothing>(), 0, keep).ok();
  const bool above = bus.insert(std::make_shared<Nothing>(), keep + keep_len, ~0ULL - keep - keep_len).ok();
  if (below) {
    (void)bus.remove(0);
  }
  if (above) {
    (void)bus.remove(keep + keep_len);
  }
  return below && above;
}

bool bus_empty(Rig& rig, devices::Bus& bus) {
  namespace layout = memory::layout;
  return &bus == &rig.mmio ? bus_empty(bus, layout::kEcamStart, layout::kEcamSize)
                           : bus_empty(bus, layout::kPciConfigAddressPort, pci::PciConfigIo::kSize);
}

TEST_CASE("vfio-pci: identity passes through, the ROM is hidden, the line is the guest's") {
  Rig rig(nic());
  auto created = rig.create();
  REQUIRE(created.ok());
  VfioPciDevice& d = **created;

  CHECK(Rig::cfg_read(d, PCI_VENDOR_ID) == 0x10d38086);
  CHECK(Rig::cfg_read(d, PCI_VENDOR_ID, 2) == 0x8086);
  CHECK(Rig::cfg_read(d, PCI_DEVICE_ID, 2) == 0x10d3);
  CHECK(Rig::cfg_read(d, PCI_REVISION_ID) == 0x02000003);
  CHECK(Rig::cfg_read(d, PCI_CLASS_DEVICE, 2) == 0x0200);
  CHECK(Rig::cfg_read(d, PCI_SUBSYSTEM_VENDOR_ID) == 0xa01f8086);
  // Not a snapshot: the device's own registers are read each time.
  rig.fake->set_region_bytes(rig.bdf, VFIO_PCI_CONFIG_REGION_INDEX, PCI_STATUS, {0x10, 0x20});
  CHECK(Rig::cfg_read(d, PCI_STATUS, 2) == 0x2010);

  // The expansion ROM: reads 0, sizing finds nothing, writes never reach the device.
  CHECK(Rig::cfg_read(d, PCI_ROM_ADDRESS) == 0);
  Rig::cfg_write(d, PCI_ROM_ADDRESS, 0xfffff800);
  CHECK(Rig::cfg_read(d, PCI_ROM_ADDRESS) == 0);
  Rig::cfg_write(d, PCI_ROM_ADDRESS, 0xfebc0001);
  CHECK(Rig::cfg_read(d, PCI_ROM_ADDRESS) == 0);
  CHECK(rig.device_config(PCI_ROM_ADDRESS) == 0xfebc0001);

  // The interrupt line starts at the IOAPIC line of slot 3, INTA, and holds what the guest
  // writes; the pin is the device's and read-only.
  const std::uint32_t gsi = memory::layout::pci_intx_gsi(3, 0);
  CHECK(Rig::cfg_read(d, PCI_INTERRUPT_LINE, 1) == gsi);
  CHECK(Rig::cfg_read(d, PCI_INTERRUPT_PIN, 1) == 1);
  Rig::cfg_write(d, PCI_INTERRUPT_LINE, 0x0a, 1);
  CHECK(Rig::cfg_read(d, PCI_INTERRUPT_LINE, 1) == 0x0a);
  Rig::cfg_write(d, PCI_INTERRUPT_PIN, 4, 1);
  CHECK(Rig::cfg_read(d, PCI_INTERRUPT_PIN, 1) == 1);
  Rig::cfg_write(d, PCI_INTERRUPT_LINE, 0xffffffff);
  CHECK(Rig::cfg_read(d, PCI_INTERRUPT_LINE) == 0x000001ff);
  CHECK(rig.device_config(PCI_INTERRUPT_LINE, 1) == 0x0b);  // the host's line stays the host's

  const auto counters = d.counters();
  CHECK(counters.config_reads == 15);
  CHECK(counters.config_writes == 5);
}

TEST_CASE("vfio-pci: BARs are assigned from the allocator's windows, naturally aligned") {
  Rig rig(nic());
  auto created = rig.create();
  REQUIRE(created.ok());
  VfioPciDevice& d = **created;

  CHECK(Rig::cfg_read(d, bar_reg(0)) == kNicBar0);  // 32-bit memory
  CHECK(Rig::cfg_read(d, bar_reg(1)) == (kNicBar1 | PCI_BASE_ADDRESS_SPACE_IO));
  CHECK(Rig::cfg_read(d, bar_reg(2)) ==
        ((kNicBar2 & 0xffffffff) | PCI_BASE_ADDRESS_MEM_TYPE_64 | PCI_BASE_ADDRESS_MEM_PREFETCH));
  CHECK(Rig::cfg_read(d, bar_reg(3)) == kNicBar2 >> 32);
  CHECK(Rig::cfg_read(d, bar_reg(4)) == kNicBar4);
  CHECK(Rig::cfg_read(d, bar_reg(5)) == 0);
  CHECK(kNicBar0 % 0x20000 == 0);
  CHECK(kNicBar2 % 0x10000 == 0);
  CHECK(kNicBar2 >= testing::kMmio64Start);
  // Nothing is mapped before the guest turns decoding on.
  CHECK(rig.slots.slots.empty());
  CHECK(bus_empty(rig, rig.mmio));
  CHECK(bus_empty(rig, rig.pio));
  // The host's BAR addresses stay in the device.
  CHECK(rig.device_config(bar_reg(0)) == 0xf7000000);
}

TEST_CASE("vfio-pci: BAR sizing reads the size mask with the type bits kept") {
  Rig rig(nic());
  auto created = rig.create();
  REQUIRE(created.ok());
  VfioPciDevice& d = **created;
  const bool decode_on = GENERATE(false, true);
  if (decode_on) {
    Rig::cfg_write(d, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_IO, 2);
  }
  const std::size_t slots_before = rig.slots.slots.size();

  Rig::cfg_write(d, bar_reg(0), 0xffffffff);
  CHECK(Rig::cfg_read(d, bar_reg(0)) == 0xfffe0000);
  Rig::cfg_write(d, bar_reg(1), 0xffffffff);
  CHECK(Rig::cfg_read(d, bar_reg(1)) == 0xffffffe1);
  Rig::cfg_write(d, bar_reg(2), 0xffffffff);
  Rig::cfg_write(d, bar_reg(3), 0xffffffff);
  CHECK(Rig::cfg_read(d, bar_reg(2)) == 0xffff000c);
  CHECK(Rig::cfg_read(d, bar_reg(3)) == 0xffffffff);
  Rig::cfg_write(d, bar_reg(4), 0xffffffff);
  CHECK(Rig::cfg_read(d, bar_reg(4)) == 0xfffff000);
  Rig::cfg_write(d, bar_reg(5), 0xffffffff);
  CHECK(Rig::cfg_read(d, bar_reg(5)) == 0);
  // A BAR being sized is never mapped at its size mask.
  for (const auto& [id, slot] : rig.slots.slots) {
    CHECK(slot.gpa < 0xf000'0000);
  }
  CHECK_FALSE(rig.mmio_read(0xfffff000).has_value());
  CHECK(rig.slots.refused == 0);
  CHECK(rig.device_config(bar_reg(0)) == 0xf7000000);  // sizing stays virtual

  Rig::cfg_write(d, bar_reg(0), static_cast<std::uint32_t>(kNicBar0));
  Rig::cfg_write(d, bar_reg(1), static_cast<std::uint32_t>(kNicBar1));
  Rig::cfg_write(d, bar_reg(2), static_cast<std::uint32_t>(kNicBar2));
  Rig::cfg_write(d, bar_reg(3), static_cast<std::uint32_t>(kNicBar2 >> 32));
  Rig::cfg_write(d, bar_reg(4), static_cast<std::uint32_t>(kNicBar4));
  CHECK(Rig::cfg_read(d, bar_reg(0)) == kNicBar0);
  CHECK(Rig::cfg_read(d, bar_reg(1)) == (kNicBar1 | 1));
  CHECK(Rig::cfg_read(d, bar_reg(2)) == ((kNicBar2 & 0xffffffff) | 0xc));
  CHECK(Rig::cfg_read(d, bar_reg(3)) == kNicBar2 >> 32);
  CHECK(rig.slots.slots.size() == slots_before);
  CHECK((rig.slots.at(kNicBar0) != nullptr) == decode_on);
  CHECK(rig.pio_read(kNicBar1).has_value() == decode_on);
}

TEST_CASE("vfio-pci: memory decode maps BARs as slots and traps the rest; off unmaps them") {
  Rig rig(nic());
  auto created = rig.create();
  REQUIRE(created.ok());
  VfioPciDevice& d = **created;

  Rig::cfg_write(d, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_IO | PCI_COMMAND_MASTER, 2);
  CHECK(rig.device_config(PCI_COMMAND, 2) == 0x0007);  // the command reached the device
  CHECK(Rig::cfg_read(d, PCI_COMMAND, 2) == 0x0007);

  // BAR0: its two mmappable areas become slots; the hole between them traps to the region.
  REQUIRE(rig.slots.slots.size() == 4);
  const auto* bar0_low = rig.slots.at(kNicBar0);
  const auto* bar0_high = rig.slots.at(kNicBar0 + 0x18000);
  REQUIRE(bar0_low != nullptr);
  REQUIRE(bar0_high != nullptr);
  CHECK(bar0_low->size == 0x10000);
  CHECK(bar0_high->size == 0x8000);
  // The slots map the BAR's own bytes at the right offsets.
  std::uint32_t magic = 0x11223344;
  std::memcpy(static_cast<std::uint8_t*>(bar0_low->host) + 0x100, &magic, 4);
  CHECK(rig.fake->region_bytes(rig.bdf, VFIO_PCI_BAR0_REGION_INDEX, 0x100, 4) ==
        std::vector<std::uint8_t>{0x44, 0x33, 0x22, 0x11});
  rig.fake->set_region_bytes(rig.bdf, VFIO_PCI_BAR0_REGION_INDEX, 0x18004, {0xab});
  CHECK(static_cast<std::uint8_t*>(bar0_high->host)[4] == 0xab);
  rig.fake->set_region_bytes(rig.bdf, VFIO_PCI_BAR0_REGION_INDEX, 0x10010, {1, 2, 3, 4});
  CHECK(rig.mmio_read(kNicBar0 + 0x10010) == 0x04030201);
  CHECK(rig.mmio_write(kNicBar0 + 0x17ffc, 0xcafe, 2));
  CHECK(rig.fake->region_bytes(rig.bdf, VFIO_PCI_BAR0_REGION_INDEX, 0x17ffc, 2) ==
        std::vector<std::uint8_t>{0xfe, 0xca});
  CHECK_FALSE(rig.mmio_read(kNicBar0).has_value());  // mapped directly, never trapped

  // BAR2: mmappable as a whole, but the MSI-X table and PBA pages are cut out and trap.
  const auto* bar2_low = rig.slots.at(kNicBar2);
  const auto* bar2_high = rig.slots.at(kNicBar2 + 0xa000);
  REQUIRE(bar2_low != nullptr);
  REQUIRE(bar2_high != nullptr);
  CHECK(bar2_low->size == testing::kMsixTable);
  CHECK(bar2_high->size == 0x6000);
  CHECK(rig.mmio_read(kNicBar2 + testing::kMsixTable).has_value());
  CHECK(rig.mmio_read(kNicBar2 + 0x9ffc).has_value());

  // BAR4 cannot be mmapped: it traps as a whole. BAR1 is I/O: it traps on the port bus.
  rig.fake->set_region_bytes(rig.bdf, VFIO_PCI_BAR4_REGION_INDEX, 0xffc, {0x78, 0x56, 0x34, 0x12});
  CHECK(rig.mmio_read(kNicBar4 + 0xffc) == 0x12345678);
  rig.fake->set_region_bytes(rig.bdf, VFIO_PCI_BAR1_REGION_INDEX, 0x1c, {0x5a});
  CHECK(rig.pio_read(kNicBar1 + 0x1c, 1) == 0x5a);
  CHECK_FALSE(rig.pio_read(kNicBar1 + 0x20, 1).has_value());
  CHECK(d.counters().bar_traps == 6);

  // Decode off: every slot and trap goes; on again: all back at the same places.
  Rig::cfg_write(d, PCI_COMMAND, PCI_COMMAND_MASTER, 2);
  CHECK(rig.device_config(PCI_COMMAND, 2) == PCI_COMMAND_MASTER);
  CHECK(rig.slots.slots.empty());
  CHECK(rig.slots.removes == 4);
  CHECK(bus_empty(rig, rig.mmio));
  CHECK(bus_empty(rig, rig.pio));
  Rig::cfg_write(d, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
  CHECK(rig.slots.slots.size() == 4);
  CHECK(rig.slots.at(kNicBar2 + 0xa000) != nullptr);
  CHECK(rig.mmio_read(kNicBar4).has_value());
  CHECK_FALSE(rig.pio_read(kNicBar1, 1).has_value());  // I/O decode is still off
  Rig::cfg_write(d, PCI_COMMAND, PCI_COMMAND_IO, 2);
  CHECK(rig.slots.slots.empty());
  CHECK(rig.pio_read(kNicBar1, 1).has_value());
  CHECK(rig.slots.refused == 0);
}

TEST_CASE("vfio-pci: relocating a BAR moves its slots and traps") {
  Rig rig(nic());
  auto created = rig.create();
  REQUIRE(created.ok());
  VfioPciDevice& d = **created;
  Rig::cfg_write(d, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
  REQUIRE(rig.slots.at(kNicBar0) != nullptr);

  SECTION("a 32-bit BAR while decoding") {
    Rig::cfg_write(d, bar_reg(0), 0xd000'0000);
    CHECK(Rig::cfg_read(d, bar_reg(0)) == 0xd000'0000);
    CHECK(rig.slots.at(kNicBar0) == nullptr);
    CHECK(rig.slots.at(kNicBar0 + 0x18000) == nullptr);
    REQUIRE(rig.slots.at(0xd000'0000) != nullptr);
    CHECK(rig.slots.at(0xd000'0000)->size == 0x10000);
    CHECK(rig.slots.at(0xd001'8000) != nullptr);
    CHECK_FALSE(rig.mmio_read(kNicBar0 + 0x10000).has_value());
    CHECK(rig.mmio_read(0xd001'0000).has_value());
    CHECK(rig.slots.slots.size() == 4);
  }
  SECTION("a 64-bit BAR, one dword at a time") {
    Rig::cfg_write(d, bar_reg(2), 0x2000'000c);
    Rig::cfg_write(d, bar_reg(3), 0x41);
    CHECK(Rig::cfg_read(d, bar_reg(2)) == 0x2000'000c);
    CHECK(Rig::cfg_read(d, bar_reg(3)) == 0x41);
    CHECK(rig.slots.at(kNicBar2) == nullptr);
    CHECK(rig.slots.at(0x40'2000'0000) == nullptr);  // where it was between the two writes
    CHECK(rig.slots.at(0x41'2000'0000) != nullptr);
    CHECK(rig.slots.at(0x41'2000'a000) != nullptr);
    CHECK(rig.mmio_read(0x41'2000'0000 + testing::kMsixTable).has_value());
    CHECK_FALSE(rig.mmio_read(kNicBar2 + testing::kMsixTable).has_value());
    CHECK(rig.slots.slots.size() == 4);
  }
  SECTION("with decoding off, the move shows when it comes back on") {
    Rig::cfg_write(d, PCI_COMMAND, 0, 2);
    Rig::cfg_write(d, bar_reg(4), 0xd800'0000);
    CHECK(rig.slots.slots.empty());
    CHECK_FALSE(rig.mmio_read(0xd800'0000).has_value());
    Rig::cfg_write(d, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
    CHECK(rig.mmio_read(0xd800'0000).has_value());
    CHECK_FALSE(rig.mmio_read(kNicBar4).has_value());
  }
  CHECK(rig.slots.refused == 0);
}

TEST_CASE("vfio-pci: INTx is wired at creation on the slot's IOAPIC line") {
  SECTION("INTA on slot 3") {
    Rig rig(nic());
    auto created = rig.create();
    REQUIRE(created.ok());
    const std::uint32_t gsi = memory::layout::pci_intx_gsi(3, 0);
    REQUIRE(rig.router.irqfds.size() == 1);
    const auto& [trigger, irqfd] = *rig.router.irqfds.begin();
    CHECK(irqfd.gsi == gsi);
    CHECK(irqfd.resample_fd >= 0);
    const auto& sets = rig.fake->irq_sets();
    REQUIRE(sets.size() == 2);
    CHECK(sets[0].index == VFIO_PCI_INTX_IRQ_INDEX);
    CHECK(sets[0].flags == (VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER));
    CHECK(sets[0].fds == std::vector<std::int32_t>{trigger});
    CHECK(sets[1].index == VFIO_PCI_INTX_IRQ_INDEX);
    CHECK(sets[1].flags == (VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK));
    CHECK(sets[1].fds == std::vector<std::int32_t>{irqfd.resample_fd});
    CHECK(sets[0].error == 0);
    CHECK(sets[1].error == 0);
    CHECK(rig.fake->active_irq(rig.bdf) == VFIO_PCI_INTX_IRQ_INDEX);
    CHECK(rig.router.routes.empty());
  }
  SECTION("INTC on slot 6 wraps around the eight lines") {
    FakeFunction f = nic();
    f.config.set8(PCI_INTERRUPT_PIN, 3);
    Rig rig(f, 6);
    auto created = rig.create();
    REQUIRE(created.ok());
    const std::uint32_t gsi = memory::layout::pci_intx_gsi(6, 2);
    CHECK(gsi == memory::layout::kPciIntxGsiBase);
    REQUIRE(rig.router.irqfds.size() == 1);
    CHECK(rig.router.irqfds.begin()->second.gsi == gsi);
    CHECK(Rig::cfg_read(**created, PCI_INTERRUPT_LINE, 1) == gsi);
    CHECK(Rig::cfg_read(**created, PCI_INTERRUPT_PIN, 1) == 3);
  }
  SECTION("no pin, or no INTx from VFIO: nothing is wired") {
    FakeFunction f = nic();
    if (GENERATE(false, true)) {
      f.config.set8(PCI_INTERRUPT_PIN, 0);
    } else {
      f.intx = 0;
    }
    Rig rig(f);
    auto created = rig.create();
    REQUIRE(created.ok());
    CHECK(rig.router.irqfds.empty());
    CHECK(rig.fake->irq_sets().empty());
    CHECK(rig.fake->active_irq(rig.bdf) == -1);
  }
}

TEST_CASE("vfio-pci: creation refuses functions it cannot pass through, and leaks nothing") {
  FakeFunction f = nic();
  std::string expected;
  SECTION("a config region smaller than a PCI header") {
    f.config_size = 128;
    expected = "config region is 128 bytes";
  }
  SECTION("an MSI-X table past the end of its BAR") {
    f.config.set32(testing::kMsixCap + PCI_MSIX_TABLE, 0xfff8 | 2);
    expected = "MSI-X table (BAR2 offset 0xfff8, 4 vectors) lies outside its BAR";
  }
  SECTION("a 64-bit BAR5") {
    f.bars[5] = {0x1000, PCI_BASE_ADDRESS_MEM_TYPE_64, true, std::nullopt, false};
    expected = "BAR5 claims to be 64-bit";
  }
  SECTION("a BAR bigger than the window") {
    f.bars[0].size = 0x4000'0000;
    f.bars[0].sparse.reset();
    expected = "BAR0: 32-bit PCI MMIO window 0xc0001000-0xdfffffff has no room left";
  }
  SECTION("VFIO refuses to turn INTx on") { expected = "VFIO_DEVICE_SET_IRQS"; }
  Rig rig(f);
  if (expected == "VFIO_DEVICE_SET_IRQS") {
    rig.fake->inject(VFIO_DEVICE_SET_IRQS, 2, EIO);  // the UNMASK after the TRIGGER
  }
  auto created = rig.create();
  REQUIRE_FALSE(created.ok());
  CHECK_THAT(created.error().message(), Catch::Contains("passthrough device " + rig.bdf));
  CHECK_THAT(created.error().message(), Catch::Contains(expected));
  CHECK(rig.router.irqfds.empty());
  CHECK(rig.router.refused == 0);
  CHECK(rig.slots.slots.empty());
}

TEST_CASE("vfio-pci: config accesses the root would never make do not crash") {
  FakeFunction f = nic();
  f.config_size = GENERATE(256, 4096);
  Rig rig(f);
  auto created = rig.create();
  REQUIRE(created.ok());
  VfioPciDevice& d = **created;
  std::array<std::uint8_t, 8> buf{};
  // Past the end of configuration space, and across its last byte.
  d.read_config(0xffe, std::span(buf.data(), 4));
  d.read_config(0xfff, std::span(buf.data(), 8));
  d.write_config(0xfff, std::span<const std::uint8_t>(buf.data(), 8));
  d.read_config(0x1000, std::span(buf.data(), 4));
  CHECK(buf == std::array<std::uint8_t, 8>{0xff, 0xff, 0xff, 0xff, buf[4], buf[5], buf[6], buf[7]});
  d.read_config(0x10, std::span(buf.data(), 0));
  d.write_config(0x10, std::span<const std::uint8_t>(buf.data(), 0));
  // Odd offsets and sizes inside a register: the emulated bits behave as bytes.
  Rig::cfg_write(d, bar_reg(0) + 3, 0xd1, 1);
  CHECK(Rig::cfg_read(d, bar_reg(0)) == 0xd1020000);
  Rig::cfg_write(d, bar_reg(0) + 1, 0xffff, 2);  // bits 8..16 are size bits: they stay 0
  CHECK(Rig::cfg_read(d, bar_reg(0) + 1, 2) == 0xfe00);
  CHECK(Rig::cfg_read(d, bar_reg(0)) == 0xd1fe0000);
  CHECK(Rig::cfg_read(d, bar_reg(2) + 2, 1) == 0x01);
  CHECK(Rig::cfg_read(d, PCI_VENDOR_ID + 1, 1) == 0x80);
  // Past a 256-byte region nothing reaches the device; inside a 4 KiB one it does.
  Rig::cfg_write(d, 0x200, 0x12345678);
  if (f.config_size == 4096) {
    CHECK(Rig::cfg_read(d, 0x200) == 0x12345678);
    CHECK(rig.device_config(0x200) == 0x12345678);
  } else {
    CHECK(Rig::cfg_read(d, 0x200) != 0x12345678);
  }
  CHECK(rig.router.refused == 0);
}

TEST_CASE("vfio-pci: device accesses that fail read all-ones and are survived") {
  Rig rig(nic());
  auto created = rig.create();
  REQUIRE(created.ok());
  VfioPciDevice& d = **created;
  Rig::cfg_write(d, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_IO, 2);
  rig.fake->set_region_bytes(rig.bdf, VFIO_PCI_BAR4_REGION_INDEX, 0x40, {1, 2, 3, 4});
  REQUIRE(rig.mmio_read(kNicBar4 + 0x40) == 0x04030201);

  rig.fake->fail_region_reads(VFIO_PCI_BAR4_REGION_INDEX, EIO);
  rig.fake->fail_region_writes(VFIO_PCI_BAR4_REGION_INDEX, EIO);
  CHECK(rig.mmio_read(kNicBar4 + 0x40) == 0xffffffff);
  CHECK(rig.mmio_read(kNicBar4 + 0x40, 8) == ~0ULL);
  CHECK(rig.mmio_write(kNicBar4 + 0x40, 0x55));
  rig.fake->fail_region_reads(VFIO_PCI_BAR4_REGION_INDEX, 0);
  CHECK(rig.mmio_read(kNicBar4 + 0x40) == 0x04030201);  // the failed write changed nothing
  rig.fake->fail_region_reads(VFIO_PCI_BAR1_REGION_INDEX, EIO);
  CHECK(rig.pio_read(kNicBar1, 2) == 0xffff);

  // Config space: a failed read is all-ones; a failed command write changes no mapping.
  rig.fake->fail_region_reads(VFIO_PCI_CONFIG_REGION_INDEX, EIO);
  CHECK(Rig::cfg_read(d, PCI_VENDOR_ID) == 0xffffffff);
  CHECK(Rig::cfg_read(d, bar_reg(0)) == kNicBar0);  // emulated registers do not need the device
  rig.fake->fail_region_reads(VFIO_PCI_CONFIG_REGION_INDEX, 0);
  rig.fake->fail_region_writes(VFIO_PCI_CONFIG_REGION_INDEX, EIO);
  Rig::cfg_write(d, PCI_COMMAND, 0, 2);
  CHECK(rig.slots.slots.size() == 4);
  CHECK(rig.device_config(PCI_COMMAND, 2) == (PCI_COMMAND_MEMORY | PCI_COMMAND_IO));
  rig.fake->fail_region_writes(VFIO_PCI_CONFIG_REGION_INDEX, 0);
  Rig::cfg_write(d, PCI_COMMAND, 0, 2);
  CHECK(rig.slots.slots.empty());
}

TEST_CASE("vfio-pci: destruction releases every slot, trap, route and irqfd") {
  Rig rig(nic());
  {
    auto created = rig.create();
    REQUIRE(created.ok());
    std::shared_ptr<VfioPciDevice> d = *created;
    Rig::cfg_write(*d, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_IO, 2);
    // MSI-X on with one live vector.
    const std::uint64_t table = kNicBar2 + testing::kMsixTable;
    CHECK(rig.mmio_write(table, 0xfee0'0000));
    CHECK(rig.mmio_write(table + 8, 0x4021));
    CHECK(rig.mmio_write(table + 12, 0));
    Rig::cfg_write(*d, testing::kMsixCap + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE, 2);
    REQUIRE(rig.router.routes.size() == 1);
    REQUIRE(rig.router.irqfds.size() == 2);  // INTx's and the vector's
    REQUIRE(rig.slots.slots.size() == 4);
    REQUIRE(rig.fake->active_irq(rig.bdf) == VFIO_PCI_MSIX_IRQ_INDEX);
    created = Error::invalid("dropped");
  }
  CHECK(rig.slots.slots.empty());
  CHECK(rig.router.routes.empty());
  CHECK(rig.router.irqfds.empty());
  CHECK(rig.router.refused == 0);
  CHECK(rig.slots.refused == 0);
  CHECK(bus_empty(rig, rig.mmio));
  CHECK(bus_empty(rig, rig.pio));
  // VFIO was told: MSI-X off, and INTx off last.
  const auto msix = rig.accepted_sets(VFIO_PCI_MSIX_IRQ_INDEX);
  REQUIRE_FALSE(msix.empty());
  CHECK(msix.back().flags == (VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER));
  CHECK(rig.fake->irq_sets().back().index == VFIO_PCI_INTX_IRQ_INDEX);
  CHECK(rig.fake->irq_sets().back().flags ==
        (VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER));
  CHECK(rig.fake->irq_sets().back().error == 0);
}

// A guest writing junk everywhere must not crash Keel or make it leak anything.
TEST_CASE("vfio-pci: random config and BAR writes, then teardown leaves nothing behind") {
  const auto seed = GENERATE(1U, 2U, 3U, 4U);
  const log::Level saved = log::level();
  log::set_level(log::Level::kError);
  Rig rig(nic());
  {
    auto created = rig.create();
    REQUIRE(created.ok());
    std::shared_ptr<VfioPciDevice> d = *created;
    std::mt19937 rng(seed);
    const std::uint64_t hot[] = {kNicBar0 + 0x10000, kNicBar2 + testing::kMsixTable, kNicBar4};
    for (int i = 0; i < 3000; ++i) {
      const std::uint32_t value = rng();
      const std::size_t size = std::size_t{1} << (rng() % 3);
      if (rng() % 4 == 0) {
        const std::uint64_t at = hot[rng() % 3] + (rng() % 0x100) / size * size;
        (void)rig.mmio_write(at, value, size);
        (void)rig.mmio_read(at, size);
        continue;
      }
      // Mostly the header and the capabilities, with the command register kept decoding.
      const auto offset = static_cast<std::uint16_t>(
          (rng() % 8 == 0 ? rng() % 0x1000 : rng() % 0x100) / size * size);
      Rig::cfg_write(*d, offset, value, size);
      (void)Rig::cfg_read(*d, offset, size);
      if (i % 50 == 0) {
        Rig::cfg_write(*d, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_IO, 2);
      }
    }
    created = Error::invalid("dropped");
  }
  log::set_level(saved);
  // The junk did reach the interesting paths: BARs were mapped and vectors routed.
  CHECK(rig.slots.adds > 0);
  CHECK(rig.router.routes_added > 0);
  CHECK(rig.slots.slots.empty());
  CHECK(rig.router.routes.empty());
  CHECK(rig.router.irqfds.empty());
  CHECK(rig.router.refused == 0);
  CHECK(bus_empty(rig, rig.mmio));
  CHECK(bus_empty(rig, rig.pio));
}

}  // namespace
}  // namespace keel::vfio
