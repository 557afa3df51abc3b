#include "tests/unit/vfio/vfio_pci_rig.hpp"

#include <linux/pci_regs.h>

#include <cstring>

#include <stdexcept>

namespace keel::vfio::testing {

void ConfigBytes::set16(std::size_t at, std::uint16_t v) {
  set8(at, static_cast<std::uint8_t>(v));
  set8(at + 1, static_cast<std::uint8_t>(v >> 8));
}

void ConfigBytes::set32(std::size_t at, std::uint32_t v) {
  set16(at, static_cast<std::uint16_t>(v));
  set16(at + 2, static_cast<std::uint16_t>(v >> 16));
}

void ConfigBytes::add_cap(std::uint8_t id, std::uint8_t at) {
  set16(PCI_STATUS, static_cast<std::uint16_t>(bytes_[PCI_STATUS] | PCI_STATUS_CAP_LIST));
  set8(last_cap_ == 0 ? PCI_CAPABILITY_LIST : last_cap_ + 1U, at);
  set8(at, id);
  set8(at + 1U, 0);
  last_cap_ = at;
}

FakeDevice FakeFunction::build() const {
  FakeDevice device;
  device.bdf = bdf;
  ConfigBytes cfg = config;
  for (std::size_t i = 0; i < bars.size(); ++i) {
    const FakeBar& bar = bars[i];
    FakeRegion region;
    region.index = VFIO_PCI_BAR0_REGION_INDEX + static_cast<std::uint32_t>(i);
    region.size = bar.size;
    if (bar.size != 0) {
      region.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE |
                     (bar.mmappable ? VFIO_REGION_INFO_FLAG_MMAP : 0U);
      region.sparse = bar.sparse;
      region.msix_mappable = bar.msix_mappable;
      // The host's firmware put the BAR somewhere; the guest must never see that address.
      cfg.set32(PCI_BASE_ADDRESS_0 + 4 * i, 0xf700'0000U | bar.type_bits);
    }
    device.regions.push_back(region);
  }
  FakeRegion config_region;
  config_region.index = VFIO_PCI_CONFIG_REGION_INDEX;
  config_region.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
  config_region.size = config_size;
  config_region.contents = cfg.bytes();
  device.regions.push_back(config_region);
  device.irqs = {{VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE, intx},
                 {VFIO_PCI_MSI_IRQ_INDEX, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, msi},
                 {VFIO_PCI_MSIX_IRQ_INDEX, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, msix}};
  return device;
}

FakeFunction nic() {
  FakeFunction f;
  ConfigBytes& c = f.config;
  c.set16(PCI_VENDOR_ID, 0x8086);
  c.set16(PCI_DEVICE_ID, 0x10d3);
  c.set8(PCI_REVISION_ID, 0x03);
  c.set8(PCI_CLASS_PROG, 0x00);
  c.set16(PCI_CLASS_DEVICE, 0x0200);
  c.set16(PCI_SUBSYSTEM_VENDOR_ID, 0x8086);
  c.set16(PCI_SUBSYSTEM_ID, 0xa01f);
  c.set32(PCI_ROM_ADDRESS, 0xfebc'0001);
  c.set8(PCI_INTERRUPT_LINE, 0x0b);
  c.set8(PCI_INTERRUPT_PIN, 1);
  c.add_cap(PCI_CAP_ID_MSI, kMsiCap);
  c.set16(kMsiCap + PCI_MSI_FLAGS,
          PCI_MSI_FLAGS_64BIT | PCI_MSI_FLAGS_MASKBIT | (2U << 1));  // MMC: 4 vectors
  c.add_cap(PCI_CAP_ID_MSIX, kMsixCap);
  c.set16(kMsixCap + PCI_MSIX_FLAGS, 4 - 1);
  c.set32(kMsixCap + PCI_MSIX_TABLE, static_cast<std::uint32_t>(kMsixTable) | 2);
  c.set32(kMsixCap + PCI_MSIX_PBA, static_cast<std::uint32_t>(kMsixPba) | 2);
  f.bars[0] = {0x20000, PCI_BASE_ADDRESS_SPACE_MEMORY, true,
               std::vector<SparseMmapArea>{{0x0, 0x10000}, {0x18000, 0x8000}}, false};
  f.bars[1] = {32, PCI_BASE_ADDRESS_SPACE_IO, false, std::nullopt, false};
  f.bars[2] = {0x10000, PCI_BASE_ADDRESS_MEM_TYPE_64 | PCI_BASE_ADDRESS_MEM_PREFETCH, true,
               std::nullopt, true};
  f.bars[4] = {0x1000, PCI_BASE_ADDRESS_SPACE_MEMORY, false, std::nullopt, false};
  f.msi = 4;
  f.msix = 4;
  return f;
}

namespace {

// The rig serves the unit tests and the passthrough fuzzer: a broken fixture throws (a failed
// test case there, a crash the fuzzer reports here) instead of depending on Catch.
void expect(bool ok, const char* what) {
  if (!ok) {
    throw std::logic_error(std::string("passthrough rig: ") + what);
  }
}

}  // namespace

PassthroughRig::PassthroughRig(const FakeFunction& function, std::uint8_t slot)
    : bdf(function.bdf), pci_slot(slot) {
  fake->add_group(7, {function.build()});
  auto c = ContainerFd::open(fake);
  expect(c.ok(), "ContainerFd::open");
  container.emplace(std::move(*c));
  auto g = Group::open(fake, 7, "/nonexistent");
  expect(g.ok(), "Group::open");
  group.emplace(std::move(*g));
  expect(container->attach(*group).ok(), "attach");
  auto p = pci::Platform::create(pio, mmio, router, slots,
                                 {{kMmio32Start, kMmio32End}, {kMmio64Start, kMmio64End}, {kIoStart, kIoEnd}});
  expect(p.ok(), "Platform::create");
  platform = std::move(p).value();
}

Result<std::shared_ptr<VfioPciDevice>> PassthroughRig::create() {
  auto device = DeviceFd::open(fake, *group, bdf);
  if (!device.ok()) {
    return device.error();
  }
  return VfioPciDevice::create(std::move(device).value(), *platform, pci_slot);
}

std::uint32_t PassthroughRig::cfg_read(VfioPciDevice& d, std::uint16_t offset, std::size_t size) {
  std::array<std::uint8_t, 4> bytes{};
  d.read_config(offset, std::span(bytes.data(), size));
  std::uint32_t v = 0;
  std::memcpy(&v, bytes.data(), size);
  return v;
}

void PassthroughRig::cfg_write(VfioPciDevice& d, std::uint16_t offset, std::uint32_t value,
                               std::size_t size) {
  std::array<std::uint8_t, 4> bytes{};
  std::memcpy(bytes.data(), &value, sizeof(value));
  d.write_config(offset, std::span<const std::uint8_t>(bytes.data(), size));
}

std::optional<std::uint64_t> PassthroughRig::mmio_read(std::uint64_t addr, std::size_t size) const {
  std::array<std::uint8_t, 8> bytes{};
  if (!mmio.read(addr, std::span(bytes.data(), size))) {
    return std::nullopt;
  }
  std::uint64_t v = 0;
  std::memcpy(&v, bytes.data(), size);
  return v;
}

bool PassthroughRig::mmio_write(std::uint64_t addr, std::uint64_t value, std::size_t size) {
  std::array<std::uint8_t, 8> bytes{};
  std::memcpy(bytes.data(), &value, sizeof(value));
  return mmio.write(addr, std::span<const std::uint8_t>(bytes.data(), size));
}

std::optional<std::uint64_t> PassthroughRig::pio_read(std::uint64_t addr, std::size_t size) const {
  std::array<std::uint8_t, 8> bytes{};
  if (!pio.read(addr, std::span(bytes.data(), size))) {
    return std::nullopt;
  }
  std::uint64_t v = 0;
  std::memcpy(&v, bytes.data(), size);
  return v;
}

std::uint32_t PassthroughRig::device_config(std::uint16_t offset, std::size_t size) const {
  const auto bytes = fake->region_bytes(bdf, VFIO_PCI_CONFIG_REGION_INDEX, offset, size);
  expect(bytes.size() == size, "device config read");
  std::uint32_t v = 0;
  std::memcpy(&v, bytes.data(), size);
  return v;
}

std::vector<FakeIrqSet> PassthroughRig::accepted_sets(std::uint32_t index, std::size_t from) const {
  std::vector<FakeIrqSet> out;
  const auto& all = fake->irq_sets();
  for (std::size_t i = from; i < all.size(); ++i) {
    if (all[i].index == index && all[i].error == 0) {
      out.push_back(all[i]);
    }
  }
  return out;
}

}  // namespace keel::vfio::testing
