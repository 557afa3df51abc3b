#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include <memory>

#include <catch2/catch.hpp>

#include "devices/vfio/vfio_pci_device.hpp"
#include "tests/unit/vfio/vfio_pci_rig.hpp"

// MSI and MSI-X of a passed-through function against the fake kernel: the emulated capabilities
// and table, KVM routes and irqfds, and what VFIO is told (VFIO_DEVICE_SET_IRQS).
namespace keel::vfio {
namespace {

using testing::FakeFunction;
using testing::FakeIrqSet;
using testing::kMsiCap;
using testing::kMsixCap;
using testing::kNicBar2;
using testing::nic;
using testing::RecordingRouter;
using Rig = testing::PassthroughRig;

constexpr std::uint64_t kTable = kNicBar2 + testing::kMsixTable;
constexpr std::uint16_t kMsiControl = kMsiCap + PCI_MSI_FLAGS;
constexpr std::uint16_t kMsixControl = kMsixCap + PCI_MSIX_FLAGS;
constexpr std::uint32_t kTrigger = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
constexpr std::uint32_t kOff = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
constexpr std::uint32_t kUnmask = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK;

int irqfd_of(const RecordingRouter& router, std::uint32_t gsi) {
  for (const auto& [fd, irqfd] : router.irqfds) {
    if (irqfd.gsi == gsi && irqfd.resample_fd < 0) {
      return fd;
    }
  }
  return -1;
}

int intx_trigger(const RecordingRouter& router) {
  for (const auto& [fd, irqfd] : router.irqfds) {
    if (irqfd.resample_fd >= 0) {
      return fd;
    }
  }
  return -1;
}

// The GSI routed with `data`, or nullopt.
std::optional<std::uint32_t> gsi_with(const RecordingRouter& router, std::uint32_t data) {
  for (const auto& [gsi, route] : router.routes) {
    if (route.data == data) {
      return gsi;
    }
  }
  return std::nullopt;
}

// Writes one MSI-X table entry through the MMIO bus, dword by dword as Linux does.
void program(Rig& rig, int vector, std::uint64_t address, std::uint32_t data,
             std::uint32_t control) {
  const std::uint64_t entry = kTable + 16 * static_cast<std::uint64_t>(vector);
  REQUIRE(rig.mmio_write(entry, address & 0xffffffff));
  REQUIRE(rig.mmio_write(entry + 4, address >> 32));
  REQUIRE(rig.mmio_write(entry + 8, data));
  REQUIRE(rig.mmio_write(entry + 12, control));
}

// VFIO went back to INTx after `mark`: its trigger, then its resample eventfd, last.
void check_intx_restored(const Rig& rig, std::size_t mark) {
  const int trigger = intx_trigger(rig.router);
  REQUIRE(trigger >= 0);
  const auto intx = rig.accepted_sets(VFIO_PCI_INTX_IRQ_INDEX, mark);
  REQUIRE(intx.size() >= 2);
  const FakeIrqSet& on = intx[intx.size() - 2];
  CHECK(on.flags == kTrigger);
  CHECK(on.fds == std::vector<std::int32_t>{trigger});
  CHECK(intx.back().flags == kUnmask);
  CHECK(intx.back().fds == std::vector<std::int32_t>{rig.router.irqfds.at(trigger).resample_fd});
  CHECK(rig.fake->active_irq(rig.bdf) == VFIO_PCI_INTX_IRQ_INDEX);
}

TEST_CASE("vfio-pci MSI-X: the table traps and is emulated; the PBA reads the device") {
  Rig rig(nic());
  auto created = rig.create();
  REQUIRE(created.ok());
  VfioPciDevice& d = **created;
  Rig::cfg_write(d, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);

  // No slot covers the table or PBA pages.
  for (const auto& [id, slot] : rig.slots.slots) {
    CHECK((slot.gpa + slot.size <= kTable || slot.gpa >= kTable + 0x2000));
  }
  for (std::uint64_t v = 0; v < 4; ++v) {
    CHECK(rig.mmio_read(kTable + 16 * v + 12) == 1);  // masked at reset
    CHECK(rig.mmio_read(kTable + 16 * v, 8) == 0);
  }
  program(rig, 1, 0xfee0'1000, 0x4041, 0);
  CHECK(rig.mmio_read(kTable + 16) == 0xfee0'1000);
  CHECK(rig.mmio_read(kTable + 20) == 0);
  CHECK(rig.mmio_read(kTable + 24) == 0x4041);
  CHECK(rig.mmio_read(kTable + 28) == 0);
  CHECK(rig.mmio_write(kTable + 48, 0x1'fee0'3000, 8));
  CHECK(rig.mmio_read(kTable + 48, 8) == 0x1'fee0'3000);
  CHECK(rig.mmio_read(kTable + 52) == 1);
  CHECK(rig.mmio_write(kTable + 60, 0xfffffffe));  // reserved control bits read 0
  CHECK(rig.mmio_read(kTable + 60) == 0);
  // Odd accesses inside the table are survived.
  CHECK(rig.mmio_write(kTable + 25, 0xff, 1));
  CHECK(rig.mmio_write(kTable + 26, 0xffff, 2));
  CHECK(rig.mmio_write(kTable + 56, ~0ULL, 8));
  CHECK(rig.mmio_read(kTable + 56, 8) == 0x1'ffff'ffff);
  (void)rig.mmio_read(kTable + 61, 2);
  // The table lives in Keel: nothing reached the device, and nothing is routed while disabled.
  CHECK(rig.fake->region_bytes(rig.bdf, VFIO_PCI_BAR2_REGION_INDEX, testing::kMsixTable, 64) ==
        std::vector<std::uint8_t>(64, 0));
  CHECK(rig.router.routes.empty());
  // The PBA is the device's.
  rig.fake->set_region_bytes(rig.bdf, VFIO_PCI_BAR2_REGION_INDEX, testing::kMsixPba, {0x05});
  CHECK(rig.mmio_read(kNicBar2 + testing::kMsixPba, 8) == 0x05);
  (void)rig.mmio_read(kTable + 62, 4);  // across the table's end: the device's business

  // The capability: the table size is the device's; only enable and function mask are writable.
  CHECK(Rig::cfg_read(d, kMsixControl, 2) == 0x0003);
  CHECK(Rig::cfg_read(d, kMsixCap + PCI_MSIX_TABLE) == (testing::kMsixTable | 2));
  Rig::cfg_write(d, kMsixCap + PCI_MSIX_TABLE, 0);
  CHECK(Rig::cfg_read(d, kMsixCap + PCI_MSIX_TABLE) == (testing::kMsixTable | 2));
}

TEST_CASE("vfio-pci MSI-X: enable wires unmasked vectors; mask, retarget and disable follow") {
  Rig rig(nic());
  auto created = rig.create();
  REQUIRE(created.ok());
  VfioPciDevice& d = **created;
  Rig::cfg_write(d, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
  program(rig, 0, 0xfee0'0000, 0x4021, 0);
  program(rig, 2, 0xfee0'2000, 0x4022, 1);
  CHECK(rig.router.routes.empty());

  std::size_t mark = rig.fake->irq_sets().size();
  Rig::cfg_write(d, kMsixControl, PCI_MSIX_FLAGS_ENABLE, 2);
  CHECK(Rig::cfg_read(d, kMsixControl, 2) == 0x8003);
  REQUIRE(rig.router.routes.size() == 1);
  const auto [gsi0, route0] = *rig.router.routes.begin();
  CHECK(route0.address == 0xfee0'0000);
  CHECK(route0.data == 0x4021);
  const int fd0 = irqfd_of(rig.router, gsi0);
  REQUIRE(fd0 >= 0);
  {
    const auto& sets = rig.fake->irq_sets();
    REQUIRE(sets.size() == mark + 2);
    // INTx off first (vfio-pci takes one type at a time), then every vector of the table.
    CHECK(sets[mark].index == VFIO_PCI_INTX_IRQ_INDEX);
    CHECK(sets[mark].flags == kOff);
    CHECK(sets[mark].error == 0);
    CHECK(sets[mark + 1].index == VFIO_PCI_MSIX_IRQ_INDEX);
    CHECK(sets[mark + 1].flags == kTrigger);
    CHECK(sets[mark + 1].start == 0);
    CHECK(sets[mark + 1].count == 4);
    CHECK(sets[mark + 1].fds == std::vector<std::int32_t>{fd0, -1, -1, -1});
    CHECK(sets[mark + 1].error == 0);
  }
  CHECK(rig.fake->active_irq(rig.bdf) == VFIO_PCI_MSIX_IRQ_INDEX);
  CHECK(d.counters().msix_enables == 1);

  // Unmasking vector 2 routes it and hands its eventfd over.
  CHECK(rig.mmio_write(kTable + 32 + 12, 0));
  REQUIRE(rig.router.routes.size() == 2);
  const auto gsi2 = gsi_with(rig.router, 0x4022);
  REQUIRE(gsi2.has_value());
  CHECK(rig.router.routes.at(*gsi2).address == 0xfee0'2000);
  const int fd2 = irqfd_of(rig.router, *gsi2);
  REQUIRE(fd2 >= 0);
  CHECK(rig.fake->irq_sets().back().fds == std::vector<std::int32_t>{fd0, -1, fd2, -1});

  // Masking vector 0 takes its eventfd back from VFIO.
  CHECK(rig.mmio_write(kTable + 12, 1));
  CHECK(rig.fake->irq_sets().back().index == VFIO_PCI_MSIX_IRQ_INDEX);
  CHECK(rig.fake->irq_sets().back().fds == std::vector<std::int32_t>{-1, -1, fd2, -1});
  CHECK(rig.fake->irq_sets().back().error == 0);

  // A new message for a live vector retargets its route in place.
  CHECK(rig.mmio_write(kTable + 32 + 8, 0x4023));
  CHECK(rig.router.routes.at(*gsi2).data == 0x4023);
  CHECK(rig.router.routes.size() == 2);

  // The function mask silences every vector; clearing it brings back the unmasked one.
  Rig::cfg_write(d, kMsixControl, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL, 2);
  CHECK(Rig::cfg_read(d, kMsixControl, 2) == 0xc003);
  CHECK(rig.fake->irq_sets().back().fds == std::vector<std::int32_t>{-1, -1, -1, -1});
  Rig::cfg_write(d, kMsixControl, PCI_MSIX_FLAGS_ENABLE, 2);
  CHECK(rig.fake->irq_sets().back().fds == std::vector<std::int32_t>{-1, -1, fd2, -1});
  CHECK(rig.fake->active_irq(rig.bdf) == VFIO_PCI_MSIX_IRQ_INDEX);

  // Disable: VFIO's MSI-X off, every route and irqfd gone, INTx back.
  mark = rig.fake->irq_sets().size();
  Rig::cfg_write(d, kMsixControl, 0, 2);
  CHECK(Rig::cfg_read(d, kMsixControl, 2) == 0x0003);
  REQUIRE(rig.fake->irq_sets().size() > mark);
  const FakeIrqSet& off = rig.fake->irq_sets()[mark];
  CHECK(off.index == VFIO_PCI_MSIX_IRQ_INDEX);
  CHECK(off.flags == kOff);
  CHECK(off.count == 0);
  CHECK(off.error == 0);
  CHECK(rig.router.routes.empty());
  CHECK(rig.router.irqfds.size() == 1);
  check_intx_restored(rig, mark);

  // Enabling again starts from the table as it is now.
  Rig::cfg_write(d, kMsixControl, PCI_MSIX_FLAGS_ENABLE, 2);
  REQUIRE(rig.router.routes.size() == 1);
  CHECK(rig.router.routes.begin()->second.data == 0x4023);
  CHECK(rig.fake->active_irq(rig.bdf) == VFIO_PCI_MSIX_IRQ_INDEX);
  CHECK(d.counters().msix_enables == 2);
  CHECK(rig.router.refused == 0);
}

TEST_CASE("vfio-pci MSI-X: a failed SET_IRQS on enable is retried by the next table change") {
  Rig rig(nic());
  auto created = rig.create();
  REQUIRE(created.ok());
  VfioPciDevice& d = **created;
  Rig::cfg_write(d, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
  program(rig, 0, 0xfee0'0000, 0x4021, 0);
  // The INTx-off call is the next SET_IRQS; the MSI-X one after it fails.
  rig.fake->inject(VFIO_DEVICE_SET_IRQS, rig.fake->calls(VFIO_DEVICE_SET_IRQS) + 2, EIO);
  Rig::cfg_write(d, kMsixControl, PCI_MSIX_FLAGS_ENABLE, 2);
  CHECK(rig.fake->active_irq(rig.bdf) == -1);
  program(rig, 1, 0xfee0'1000, 0x4041, 0);
  CHECK(rig.fake->active_irq(rig.bdf) == VFIO_PCI_MSIX_IRQ_INDEX);
  REQUIRE(rig.router.routes.size() == 2);
  const auto& last = rig.fake->irq_sets().back();
  CHECK(last.fds[0] == irqfd_of(rig.router, *gsi_with(rig.router, 0x4021)));
  CHECK(last.fds[1] == irqfd_of(rig.router, *gsi_with(rig.router, 0x4041)));
  const std::size_t mark = rig.fake->irq_sets().size();
  Rig::cfg_write(d, kMsixControl, 0, 2);
  CHECK(rig.router.routes.empty());
  check_intx_restored(rig, mark);
  CHECK(rig.router.refused == 0);
}

// Offsets of the MSI capability's registers for each of its four layouts.
struct MsiLayout {
  bool is_64bit, masking;
  std::uint16_t data() const { return kMsiCap + (is_64bit ? 12 : 8); }
  std::uint16_t mask() const { return static_cast<std::uint16_t>(data() + 4); }
  std::uint16_t flags() const {
    return static_cast<std::uint16_t>((is_64bit ? PCI_MSI_FLAGS_64BIT : 0) |
                                      (masking ? PCI_MSI_FLAGS_MASKBIT : 0));
  }
};

FakeFunction with_msi(const MsiLayout& layout) {
  FakeFunction f = nic();
  f.config.set16(kMsiControl, layout.flags() | (2U << 1) | PCI_MSI_FLAGS_ENABLE);  // MMC 4, on
  return f;
}

TEST_CASE(
    "vfio-pci MSI: one vector; enable routes the message, retarget updates, disable unwires") {
  const MsiLayout layout{GENERATE(true, false), GENERATE(true, false)};
  CAPTURE(layout.is_64bit, layout.masking);
  Rig rig(with_msi(layout));
  auto created = rig.create();
  REQUIRE(created.ok());
  VfioPciDevice& d = **created;

  // Multiple Message Capable reads 0 (one vector), the host's enable bit is not shown, and
  // Multiple Message Enable cannot be set.
  CHECK(Rig::cfg_read(d, kMsiControl, 2) == layout.flags());
  Rig::cfg_write(d, kMsiControl, PCI_MSI_FLAGS_QSIZE, 2);
  CHECK(Rig::cfg_read(d, kMsiControl, 2) == layout.flags());
  CHECK(Rig::cfg_read(d, kMsiCap, 1) == PCI_CAP_ID_MSI);

  const std::size_t created_sets = rig.fake->irq_sets().size();
  Rig::cfg_write(d, kMsiCap + PCI_MSI_ADDRESS_LO, 0xfee0'1007);
  CHECK(Rig::cfg_read(d, kMsiCap + PCI_MSI_ADDRESS_LO) == 0xfee0'1004);
  std::uint64_t address = 0xfee0'1004;
  if (layout.is_64bit) {
    Rig::cfg_write(d, kMsiCap + PCI_MSI_ADDRESS_HI, 0x1);
    CHECK(Rig::cfg_read(d, kMsiCap + PCI_MSI_ADDRESS_HI) == 0x1);
    address |= 0x1'0000'0000;
  }
  Rig::cfg_write(d, layout.data(), 0x4031, 2);
  CHECK(Rig::cfg_read(d, layout.data(), 2) == 0x4031);
  if (layout.masking) {
    Rig::cfg_write(d, layout.mask(), 0xffffffff);
    CHECK(Rig::cfg_read(d, layout.mask()) == 0x1);
  }
  CHECK(rig.router.routes.empty());
  CHECK(rig.fake->irq_sets().size() == created_sets);
  CHECK(rig.device_config(kMsiCap + PCI_MSI_ADDRESS_LO) == 0);  // programming stays virtual

  const std::size_t mark = rig.fake->irq_sets().size();
  Rig::cfg_write(d, kMsiControl, PCI_MSI_FLAGS_ENABLE, 2);
  CHECK(Rig::cfg_read(d, kMsiControl, 2) == (layout.flags() | PCI_MSI_FLAGS_ENABLE));
  REQUIRE(rig.router.routes.size() == 1);
  const auto [gsi, route] = *rig.router.routes.begin();
  CHECK(route.address == address);
  CHECK(route.data == 0x4031);
  const int fd = irqfd_of(rig.router, gsi);
  REQUIRE(fd >= 0);
  {
    const auto& sets = rig.fake->irq_sets();
    REQUIRE(sets.size() == mark + 2);
    CHECK(sets[mark].index == VFIO_PCI_INTX_IRQ_INDEX);
    CHECK(sets[mark].flags == kOff);
    CHECK(sets[mark + 1].index == VFIO_PCI_MSI_IRQ_INDEX);
    CHECK(sets[mark + 1].flags == kTrigger);
    CHECK(sets[mark + 1].start == 0);
    CHECK(sets[mark + 1].fds == std::vector<std::int32_t>{fd});
    CHECK(sets[mark + 1].error == 0);
  }
  CHECK(rig.fake->active_irq(rig.bdf) == VFIO_PCI_MSI_IRQ_INDEX);
  CHECK(d.counters().msi_enables == 1);

  // New data or address while enabled: the same route, retargeted; VFIO is not involved.
  Rig::cfg_write(d, layout.data(), 0x4032, 2);
  CHECK(rig.router.routes.at(gsi).data == 0x4032);
  Rig::cfg_write(d, kMsiCap + PCI_MSI_ADDRESS_LO, 0xfee0'2000);
  CHECK((rig.router.routes.at(gsi).address & 0xffffffff) == 0xfee0'2000);
  CHECK(rig.router.routes.size() == 1);
  CHECK(rig.router.route_updates >= 2);
  CHECK(rig.fake->irq_sets().size() == mark + 2);

  const std::size_t before_off = rig.fake->irq_sets().size();
  Rig::cfg_write(d, kMsiControl, 0, 2);
  REQUIRE(rig.fake->irq_sets().size() > before_off);
  CHECK(rig.fake->irq_sets()[before_off].index == VFIO_PCI_MSI_IRQ_INDEX);
  CHECK(rig.fake->irq_sets()[before_off].flags == kOff);
  CHECK(rig.fake->irq_sets()[before_off].error == 0);
  CHECK(rig.router.routes.empty());
  CHECK(rig.router.irqfds.size() == 1);
  check_intx_restored(rig, before_off);
  CHECK(rig.router.refused == 0);
}

TEST_CASE("vfio-pci MSI: a failed enable falls back to INTx and can be retried") {
  Rig rig(nic());
  auto created = rig.create();
  REQUIRE(created.ok());
  VfioPciDevice& d = **created;
  Rig::cfg_write(d, kMsiCap + PCI_MSI_ADDRESS_LO, 0xfee0'1000);
  Rig::cfg_write(d, kMsiCap + PCI_MSI_DATA_64, 0x4031, 2);

  SECTION("VFIO refuses the MSI trigger") {
    // The INTx-off call is the next SET_IRQS; the MSI one after it fails.
    rig.fake->inject(VFIO_DEVICE_SET_IRQS, rig.fake->calls(VFIO_DEVICE_SET_IRQS) + 2, EIO);
    const std::size_t mark = rig.fake->irq_sets().size();
    Rig::cfg_write(d, kMsiControl, PCI_MSI_FLAGS_ENABLE, 2);
    // Nothing is left half-wired: no route, no irqfd but INTx's, and VFIO on INTx again.
    CHECK(rig.router.routes.empty());
    CHECK(rig.router.irqfds.size() == 1);
    check_intx_restored(rig, mark);
  }
  SECTION("KVM has no route left") {
    rig.router.fail_add_route = ENOSPC;
    const std::size_t mark = rig.fake->irq_sets().size();
    Rig::cfg_write(d, kMsiControl, PCI_MSI_FLAGS_ENABLE, 2);
    CHECK(rig.router.routes.empty());
    CHECK(rig.router.irqfds.size() == 1);
    CHECK(rig.fake->irq_sets().size() == mark);  // INTx was never touched
    CHECK(rig.fake->active_irq(rig.bdf) == VFIO_PCI_INTX_IRQ_INDEX);
    rig.router.fail_add_route.reset();
  }
  CHECK(rig.router.refused == 0);
  // The guest writing the enable bit again gets MSI.
  Rig::cfg_write(d, kMsiControl, PCI_MSI_FLAGS_ENABLE, 2);
  REQUIRE(rig.router.routes.size() == 1);
  CHECK(rig.router.routes.begin()->second.data == 0x4031);
  CHECK(rig.fake->active_irq(rig.bdf) == VFIO_PCI_MSI_IRQ_INDEX);
  Rig::cfg_write(d, kMsiControl, 0, 2);
  CHECK(rig.router.routes.empty());
  CHECK(rig.fake->active_irq(rig.bdf) == VFIO_PCI_INTX_IRQ_INDEX);
}

TEST_CASE("vfio-pci: a guest turning MSI and MSI-X on together gets no crash and no leak") {
  Rig rig(nic());
  auto created = rig.create();
  REQUIRE(created.ok());
  VfioPciDevice& d = **created;
  Rig::cfg_write(d, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
  Rig::cfg_write(d, kMsiCap + PCI_MSI_ADDRESS_LO, 0xfee0'1000);
  Rig::cfg_write(d, kMsiControl, PCI_MSI_FLAGS_ENABLE, 2);
  program(rig, 0, 0xfee0'0000, 0x4021, 0);
  Rig::cfg_write(d, kMsixControl, PCI_MSIX_FLAGS_ENABLE, 2);
  CHECK(rig.fake->active_irq(rig.bdf) == VFIO_PCI_MSI_IRQ_INDEX);  // vfio-pci refused MSI-X
  Rig::cfg_write(d, kMsiControl, 0, 2);
  program(rig, 1, 0xfee0'1000, 0x4041, 0);
  Rig::cfg_write(d, kMsixControl, 0, 2);
  CHECK(rig.router.routes.empty());
  CHECK(rig.router.irqfds.size() == 1);
  CHECK(rig.router.refused == 0);
  // Turned on one at a time, each works again.
  Rig::cfg_write(d, kMsixControl, PCI_MSIX_FLAGS_ENABLE, 2);
  CHECK(rig.fake->active_irq(rig.bdf) == VFIO_PCI_MSIX_IRQ_INDEX);
  CHECK(rig.router.routes.size() == 2);
}

TEST_CASE("vfio-pci MSI: a capability right after a short MSI capability reaches the device") {
  FakeFunction f = nic();
  std::uint16_t next = 0;
  SECTION("64-bit without masking (16 bytes), then power management") {
    f.config.set16(kMsiControl, PCI_MSI_FLAGS_64BIT);
    next = kMsiCap + 16;
    f.config.set8(next, PCI_CAP_ID_PM);
  }
  SECTION("32-bit without masking (12 bytes), then a vendor capability") {
    f.config.set16(kMsiControl, 0);
    next = kMsiCap + 12;
    f.config.set8(next, PCI_CAP_ID_VNDR);
  }
  SECTION("32-bit with masking (20 bytes), then a vendor capability") {
    f.config.set16(kMsiControl, PCI_MSI_FLAGS_MASKBIT);
    next = kMsiCap + 20;
    f.config.set8(next, PCI_CAP_ID_VNDR);
  }
  f.config.set8(kMsiCap + PCI_CAP_LIST_NEXT, static_cast<std::uint8_t>(next));
  f.config.set8(next + PCI_CAP_LIST_NEXT, kMsixCap);
  Rig rig(f);
  auto created = rig.create();
  REQUIRE(created.ok());
  VfioPciDevice& d = **created;

  Rig::cfg_write(d, next + 4, 0x8003, 2);  // e.g. PMCSR: D3hot
  CHECK(rig.device_config(next + 4, 2) == 0x8003);
  Rig::cfg_write(d, next + 2, 0x1234, 2);
  CHECK(rig.device_config(next + 2, 2) == 0x1234);
  rig.fake->set_region_bytes(rig.bdf, VFIO_PCI_CONFIG_REGION_INDEX, next + 2, {0x00, 0x01});
  CHECK(Rig::cfg_read(d, next + 2, 2) == 0x0100);
  CHECK(Rig::cfg_read(d, next, 2) == (kMsixCap << 8 | f.config.bytes()[next]));
  // The MSI capability itself stays emulated.
  Rig::cfg_write(d, kMsiCap + PCI_MSI_ADDRESS_LO, 0xfee0'1000);
  CHECK(rig.device_config(kMsiCap + PCI_MSI_ADDRESS_LO) == 0);
  CHECK(Rig::cfg_read(d, kMsiCap + PCI_MSI_ADDRESS_LO) == 0xfee0'1000);
}

}  // namespace
}  // namespace keel::vfio
