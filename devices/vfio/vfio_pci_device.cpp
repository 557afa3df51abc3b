#include "devices/vfio/vfio_pci_device.hpp"

#include <linux/vfio.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>

#include "base/hex.hpp"
#include "base/log.hpp"
#include "memory/layout.hpp"

namespace keel::vfio {
namespace {

constexpr std::uint64_t kPage = 4096;
constexpr std::uint16_t kCommandIo = 0x1;
constexpr std::uint16_t kCommandMemory = 0x2;
constexpr std::uint16_t kStatusCapList = 0x10;
constexpr std::uint16_t kRomBar = 0x30;
constexpr std::uint8_t kCapIdMsi = 0x05;
constexpr int kCapHopLimit = 48;  // 256 bytes of config space hold at most 48 capabilities

// MSI capability layout.
constexpr std::uint16_t kMsiControl = 2;
constexpr std::uint16_t kMsiEnable = 0x1;
constexpr std::uint16_t kMsi64Bit = 0x80;
constexpr std::uint16_t kMsiPerVectorMask = 0x100;
// MSI-X capability layout.
constexpr std::uint16_t kMsixControl = 2;
constexpr std::uint16_t kMsixTable = 4;
constexpr std::uint16_t kMsixPba = 8;

// Bytes of an MSI capability: 12 with a 32-bit address, 16 with a 64-bit one, plus the mask and
// pending registers with per-vector masking. The next capability may start right after it.
std::uint16_t msi_cap_size(bool is_64bit, bool per_vector_mask) {
  return static_cast<std::uint16_t>((is_64bit ? 16 : 12) + (per_vector_mask ? 8 : 0));
}

std::uint64_t align_down(std::uint64_t v, std::uint64_t a) { return v / a * a; }
std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

using Interval = std::pair<std::uint64_t, std::uint64_t>;  // [first, second)

// `from` minus `cut`, both lists of disjoint intervals.
std::vector<Interval> subtract(std::vector<Interval> from, const std::vector<Interval>& cut) {
  for (const Interval& c : cut) {
    std::vector<Interval> next;
    for (const Interval& f : from) {
      if (c.second <= f.first || c.first >= f.second) {
        next.push_back(f);
        continue;
      }
      if (f.first < c.first) {
        next.emplace_back(f.first, c.first);
      }
      if (c.second < f.second) {
        next.emplace_back(c.second, f.second);
      }
    }
    from = std::move(next);
  }
  return from;
}

// Forwards accesses to one trapped range of a BAR to the device (emulated MSI-X, or the
// region's pread/pwrite). Holds the device weakly: a late access after removal does nothing.
class BarTrap : public devices::BusDevice {
 public:
  BarTrap(std::weak_ptr<VfioPciDevice> device, int bar, std::uint64_t bar_offset)
      : device_(std::move(device)), bar_(bar), bar_offset_(bar_offset) {}
  void read(std::uint64_t offset, std::span<std::uint8_t> data) override {
    if (auto d = device_.lock()) {
      d->bar_read(bar_, bar_offset_ + offset, data);
    } else {
      std::fill(data.begin(), data.end(), 0xff);
    }
  }
  void write(std::uint64_t offset, std::span<const std::uint8_t> data) override {
    if (auto d = device_.lock()) {
      d->bar_write(bar_, bar_offset_ + offset, data);
    }
  }

 private:
  std::weak_ptr<VfioPciDevice> device_;
  int bar_;
  std::uint64_t bar_offset_;
};

}  // namespace

Result<std::shared_ptr<VfioPciDevice>> VfioPciDevice::create(DeviceFd device, pci::Platform& platform,
                                                            std::uint8_t slot) {
  const std::string name = device.name();
  std::shared_ptr<VfioPciDevice> pci(new VfioPciDevice(std::move(device), platform, slot));
  Status ready = pci->init();
  if (!ready.ok()) {
    return ready.error().wrap("passthrough device " + name);
  }
  return pci;
}

Status VfioPciDevice::init_regions() {
  if (!device_.info().is_pci()) {
    return Error::invalid("VFIO says it is not a PCI device");
  }
  for (std::uint32_t i = 0; i < 6; ++i) {
    KEEL_TRY(auto region, device_.region_info(VFIO_PCI_BAR0_REGION_INDEX + i));
    bar_regions_[i] = std::move(region);
  }
  KEEL_TRY(auto config, device_.region_info(VFIO_PCI_CONFIG_REGION_INDEX));
  config_region_ = std::move(config);
  std::uint32_t* counts[] = {&intx_count_, &msi_count_, &msix_count_};
  const std::uint32_t indexes[] = {VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX};
  for (int k = 0; k < 3; ++k) {
    KEEL_TRY(auto irq, device_.irq_info(indexes[k]));
    *counts[k] = irq.count;
  }
  return ok_status();
}

VfioPciDevice::~VfioPciDevice() {
  std::lock_guard lock(mutex_);
  msix_disable();
  msi_disable();
  if (intx_enabled_) {
    (void)set_intx_enabled(false);
  }
  if (intx_trigger_) {
    (void)platform_.router().detach_irqfd(intx_trigger_->fd(), intx_gsi_);
  }
  for (int i = 0; i < 6; ++i) {
    unmap_bar(i);
    if (bars_[i].present && bars_[i].assigned != 0) {
      platform_.bars().release(bars_[i].assigned, bars_[i].size, bars_[i].space);
    }
  }
}

Status VfioPciDevice::init() {
  KEEL_TRY_STATUS(init_regions());
  if (config_region_.size < 256) {
    return Error::invalid("config region is " + std::to_string(config_region_.size) +
                          " bytes; a PCI function has at least 256");
  }
  // Snapshot the device's configuration header and capabilities into the shadow.
  std::array<std::uint8_t, 256> header{};
  KEEL_TRY_STATUS(device_config_read(0, header));
  for (std::uint16_t i = 0; i < header.size(); ++i) {
    shadow_.set8(i, header[i]);
  }
  KEEL_TRY_STATUS(init_bars());
  KEEL_TRY_STATUS(init_capabilities());
  // The expansion ROM is hidden: the BAR reads 0 and ignores writes.
  shadow_.set32(kRomBar, 0);
  // The pin is the device's; the line it raises follows from the slot (the DSDT's _PRT says the
  // same). The interrupt line register is the guest's scratch register, preset to that line.
  const std::uint8_t pin = shadow_.get8(pci::kInterruptPin);
  if (pin >= 1 && pin <= 4) {
    intx_gsi_ = memory::layout::pci_intx_gsi(slot_, pin - 1U);
  }
  shadow_.set_writable8(pci::kInterruptLine, 0xff);
  shadow_.set8(pci::kInterruptLine, static_cast<std::uint8_t>(intx_gsi_));
  KEEL_TRY_STATUS(init_intx());
  return ok_status();
}

Status VfioPciDevice::init_bars() {
  for (int i = 0; i < 6; ++i) {
    const RegionInfo& region = bar_regions_[i];
    Bar& bar = bars_[i];
    const std::uint16_t reg = static_cast<std::uint16_t>(pci::kBar0 + 4 * i);
    const std::uint32_t raw = shadow_.get32(reg);
    shadow_.set32(reg, 0);
    shadow_.set_writable32(reg, 0);
    if (region.size == 0) {
      continue;  // absent, or the upper half of a 64-bit BAR (handled with its lower half)
    }
    bar.present = true;
    bar.size = std::max<std::uint64_t>(region.size, (raw & 1) != 0 ? 4 : 16);
    bar.is_io = (raw & 1) != 0;
    bar.is_64bit = !bar.is_io && ((raw >> 1) & 3) == 2;
    bar.prefetch = !bar.is_io && (raw & 8) != 0;
    if (bar.is_64bit && i == 5) {
      return Error::invalid("BAR5 claims to be 64-bit; there is no BAR6 for its upper half");
    }
    const std::uint32_t flags = raw & (bar.is_io ? 0x3U : 0xfU);
    KEEL_TRY_WRAP(auto address,
                  platform_.bars().allocate(bar.size, bar.is_io      ? pci::BarSpace::kIo
                                                      : bar.is_64bit ? pci::BarSpace::kMmio64
                                                                     : pci::BarSpace::kMmio32),
                  "BAR" + std::to_string(i));
    bar.address = address;
    bar.assigned = address;
    bar.space = bar.is_io ? pci::BarSpace::kIo
                : bar.is_64bit ? pci::BarSpace::kMmio64
                               : pci::BarSpace::kMmio32;
    const std::uint64_t mask = ~(bar.size - 1);
    shadow_.set32(reg, static_cast<std::uint32_t>(bar.address) | flags);
    shadow_.set_writable32(reg, static_cast<std::uint32_t>(mask) & (bar.is_io ? ~0x3U : ~0xfU));
    if (bar.is_64bit) {
      const std::uint16_t high = static_cast<std::uint16_t>(reg + 4);
      shadow_.set32(high, static_cast<std::uint32_t>(bar.address >> 32));
      shadow_.set_writable32(high, static_cast<std::uint32_t>(mask >> 32));
      ++i;  // the next register is this BAR's upper half
      bars_[i] = Bar{};
    }
    if (!bar.is_io && region.mmappable()) {
      std::vector<SparseMmapArea> areas = region.sparse_areas.value_or(
          std::vector<SparseMmapArea>{SparseMmapArea{0, region.size}});
      for (const SparseMmapArea& area : areas) {
        if (area.size == 0) {
          continue;
        }
        auto host = device_.mmap(region, area.offset, area.size, PROT_READ | PROT_WRITE);
        if (host.ok()) {
          bar.host.emplace_back(area.offset, std::move(host).value());
        } else {
          log::warn("vfio", "BAR area not mmappable; its accesses will trap",
                    {{"device", name()}, {"bar", i}, {"offset", hex(area.offset)},
                     {"error", host.error().message()}});
        }
      }
    }
  }
  return ok_status();
}

Status VfioPciDevice::init_capabilities() {
  if ((shadow_.get16(pci::kStatus) & kStatusCapList) == 0) {
    return ok_status();
  }
  std::uint8_t at = shadow_.get8(pci::kCapabilitiesPointer) & 0xfc;
  for (int hops = 0; at >= 0x40 && hops < kCapHopLimit; ++hops) {
    const std::uint8_t id = shadow_.get8(at);
    if (id == kCapIdMsi && msi_count_ > 0) {
      msi_.cap = at;
      const std::uint16_t control = shadow_.get16(at + kMsiControl);
      msi_.is_64bit = (control & kMsi64Bit) != 0;
      msi_.per_vector_mask = (control & kMsiPerVectorMask) != 0;
      // One vector: Multiple Message Capable reads 0, so the guest enables exactly one.
      shadow_.set16(at + kMsiControl, control & (kMsi64Bit | kMsiPerVectorMask));
      shadow_.set_writable16(at + kMsiControl, kMsiEnable);
      shadow_.set_writable32(at + 4, 0xfffffffc);
      const std::uint16_t data_at = msi_.is_64bit ? at + 12 : at + 8;
      if (msi_.is_64bit) {
        shadow_.set_writable32(at + 8, 0xffffffff);
      }
      shadow_.set_writable16(data_at, 0xffff);
      if (msi_.per_vector_mask) {
        shadow_.set_writable32(data_at + 4, 0x1);
      }
    } else if (id == pci::kCapIdMsix && msix_count_ > 0) {
      msix_.cap = at;
      const std::uint16_t control = shadow_.get16(at + kMsixControl);
      const auto table_size = static_cast<std::uint16_t>((control & pci::kMsixTableSizeMask) + 1);
      const std::uint32_t table = shadow_.get32(at + kMsixTable);
      const std::uint32_t pba = shadow_.get32(at + kMsixPba);
      msix_.table_bar = static_cast<int>(table & 7);
      msix_.table_offset = table & ~7U;
      msix_.pba_bar = static_cast<int>(pba & 7);
      msix_.pba_offset = pba & ~7U;
      if (msix_.table_bar > 5 || msix_.pba_bar > 5 || !bars_[msix_.table_bar].present ||
          msix_.table_offset + table_size * pci::kMsixEntrySize > bars_[msix_.table_bar].size) {
        return Error::invalid("MSI-X table (BAR" + std::to_string(msix_.table_bar) + " offset " +
                              hex(msix_.table_offset) + ", " + std::to_string(table_size) +
                              " vectors) lies outside its BAR");
      }
      msix_.table.emplace(platform_.router(), table_size);
      shadow_.set16(at + kMsixControl, control & pci::kMsixTableSizeMask);
      shadow_.set_writable16(at + kMsixControl, pci::kMsixEnable | pci::kMsixFunctionMask);
    }
    at = shadow_.get8(at + 1) & 0xfc;
  }
  return ok_status();
}

Status VfioPciDevice::init_intx() {
  if (intx_gsi_ == 0 || intx_count_ == 0) {
    return ok_status();
  }
  auto trigger = EventFd::create(EFD_NONBLOCK);
  auto resample = EventFd::create(EFD_NONBLOCK);
  if (!trigger.ok()) {
    return trigger.error();
  }
  if (!resample.ok()) {
    return resample.error();
  }
  intx_trigger_ = std::move(trigger).value();
  intx_resample_ = std::move(resample).value();
  KEEL_TRY_STATUS(platform_.router().attach_level_irqfd(intx_trigger_->fd(), intx_resample_->fd(),
                                                     intx_gsi_));
  return set_intx_enabled(true);
}

// ---- configuration space ----

bool VfioPciDevice::emulated(std::uint16_t dword) const {
  if (dword >= pci::kBar0 && dword < pci::kBar0 + 24) {
    return true;
  }
  if (dword == kRomBar || dword == pci::kInterruptLine) {
    return true;
  }
  if (msi_.cap != 0 && dword >= msi_.cap &&
      dword < msi_.cap + msi_cap_size(msi_.is_64bit, msi_.per_vector_mask)) {
    return true;
  }
  return msix_.cap != 0 && dword >= msix_.cap && dword < msix_.cap + 12;
}

Status VfioPciDevice::device_config_read(std::uint16_t offset, std::span<std::uint8_t> data) {
  return device_.read(config_region_, offset, data.data(), data.size());
}

Status VfioPciDevice::device_config_write(std::uint16_t offset, std::span<const std::uint8_t> data) {
  return device_.write(config_region_, offset, data.data(), data.size());
}

void VfioPciDevice::read_config(std::uint16_t offset, std::span<std::uint8_t> data) {
  std::lock_guard lock(mutex_);
  ++counters_.config_reads;
  const std::uint16_t dword = offset & ~3U;
  if (emulated(dword) || offset >= config_region_.size) {
    shadow_.read(offset, data);
    return;
  }
  Status read = device_config_read(offset, data);
  if (!read.ok()) {
    std::fill(data.begin(), data.end(), 0xff);
    log::warn("vfio", "config read failed", {{"device", name()}, {"error", read.error().message()}});
    return;
  }
  // The command register's INTx-disable bit is virtualised by vfio-pci itself (it masks the
  // line in the host): reading it back through VFIO is what a guest's INTx-masking probe needs.
}

void VfioPciDevice::write_config(std::uint16_t offset, std::span<const std::uint8_t> data) {
  std::lock_guard lock(mutex_);
  ++counters_.config_writes;
  const std::uint16_t dword = offset & ~3U;
  if (dword >= pci::kBar0 && dword < pci::kBar0 + 24) {
    write_bar_register((dword - pci::kBar0) / 4, offset, data);
    return;
  }
  if (dword == kRomBar || offset >= config_region_.size) {
    return;
  }
  if (dword == pci::kInterruptLine || emulated(dword)) {
    shadow_.write(offset, data);
    if (msi_.cap != 0 && dword >= msi_.cap &&
        dword < msi_.cap + msi_cap_size(msi_.is_64bit, msi_.per_vector_mask)) {
      msi_config_written();
    } else if (msix_.cap != 0 && dword >= msix_.cap && dword < msix_.cap + 12) {
      msix_config_written();
    }
    return;
  }
  Status written = device_config_write(offset, data);
  if (!written.ok()) {
    log::warn("vfio", "config write failed", {{"device", name()}, {"error", written.error().message()}});
    return;
  }
  if (dword == pci::kCommand) {
    std::array<std::uint8_t, 2> command{};
    if (device_config_read(pci::kCommand, command).ok()) {
      const std::uint16_t value = static_cast<std::uint16_t>(command[0] | (command[1] << 8));
      memory_enabled_ = (value & kCommandMemory) != 0;
      io_enabled_ = (value & kCommandIo) != 0;
      update_bar_mappings();
    }
  }
}

void VfioPciDevice::write_bar_register(int index, std::uint16_t offset,
                                       std::span<const std::uint8_t> data) {
  shadow_.write(offset, data);
  // The BAR this register belongs to: itself, or the lower half of a 64-bit BAR.
  const int owner = (index > 0 && bars_[index - 1].present && bars_[index - 1].is_64bit) ? index - 1 : index;
  Bar& bar = bars_[owner];
  if (!bar.present) {
    return;
  }
  const std::uint16_t reg = static_cast<std::uint16_t>(pci::kBar0 + 4 * owner);
  std::uint64_t address = shadow_.get32(reg) & (bar.is_io ? ~0x3U : ~0xfU);
  if (bar.is_64bit) {
    address |= static_cast<std::uint64_t>(shadow_.get32(reg + 4)) << 32;
  }
  if (address != bar.address) {
    if (bar.mapped) {
      unmap_bar(owner);
    }
    bar.address = address;
    update_bar_mappings();
  }
}

// ---- BAR mappings ----

void VfioPciDevice::update_bar_mappings() {
  for (int i = 0; i < 6; ++i) {
    Bar& bar = bars_[i];
    if (!bar.present) {
      continue;
    }
    const bool decode = bar.is_io ? io_enabled_ : memory_enabled_;
    // A BAR being sized reads back as its size mask: never map that.
    const bool sizing = bar.address == (~(bar.size - 1) & (bar.is_64bit ? ~0ULL : 0xffffffffULL) &
                                        (bar.is_io ? ~0x3ULL : ~0xfULL));
    const bool want = decode && bar.address != 0 && !sizing;
    if (bar.mapped && !want) {
      unmap_bar(i);
    } else if (!bar.mapped && want) {
      Status mapped = map_bar(i);
      if (!mapped.ok()) {
        log::warn("vfio", "BAR not mapped",
                  {{"device", name()}, {"bar", i}, {"address", hex(bar.address)},
                   {"error", mapped.error().message()}});
        unmap_bar(i);
      }
    }
  }
}

Status VfioPciDevice::map_bar(int index) {
  Bar& bar = bars_[index];
  bar.mapped = true;
  // Each mmapped area, minus the MSI-X pages, in whole pages, becomes a KVM slot.
  struct Direct {
    Interval range;
    std::uint8_t* host;
  };
  std::vector<Direct> direct;
  for (const auto& [area_offset, mapping] : bar.host) {
    std::vector<Interval> msix_pages;
    std::vector<Interval> area = {{area_offset, area_offset + mapping.size()}};
    if (msix_.cap != 0 && msix_.table_bar == index) {
      msix_pages.emplace_back(align_down(msix_.table_offset, kPage),
                              align_up(msix_.table_offset + msix_.table->table_bytes(), kPage));
    }
    if (msix_.cap != 0 && msix_.pba_bar == index) {
      msix_pages.emplace_back(align_down(msix_.pba_offset, kPage),
                              align_up(msix_.pba_offset + msix_.table->pba_bytes(), kPage));
    }
    for (const Interval& d : subtract(area, msix_pages)) {
      const std::uint64_t first = align_up(d.first, kPage);
      const std::uint64_t last = align_down(d.second, kPage);
      if (first < last) {
        direct.push_back({{first, last}, mapping.data() + (first - area_offset)});
      }
    }
  }
  std::vector<Interval> direct_ranges;
  for (const Direct& d : direct) {
    KEEL_TRY(auto slot, platform_.memory_slots().add(bar.address + d.range.first,
                                                     d.range.second - d.range.first, d.host));
    bar.kvm_slots.push_back(slot);
    direct_ranges.push_back(d.range);
  }
  // Everything not mapped directly traps to the VMM.
  devices::Bus* bus = bar.is_io ? &platform_.pio() : &platform_.mmio();
  for (const Interval& t : subtract({{0, bar.size}}, direct_ranges)) {
    auto trap = std::make_shared<BarTrap>(std::weak_ptr<VfioPciDevice>(shared_from_this()), index, t.first);
    KEEL_TRY_STATUS(bus->insert(trap, bar.address + t.first, t.second - t.first));
    bar.trapped.push_back(bar.address + t.first);
  }
  log::debug("vfio", "BAR mapped", {{"device", name()}, {"bar", index}, {"address", hex(bar.address)},
                                     {"direct", direct_ranges.size()}, {"trapped", bar.trapped.size()}});
  return ok_status();
}

void VfioPciDevice::unmap_bar(int index) {
  Bar& bar = bars_[index];
  for (std::uint32_t slot : bar.kvm_slots) {
    (void)platform_.memory_slots().remove(slot);
  }
  devices::Bus* bus = bar.is_io ? &platform_.pio() : &platform_.mmio();
  for (std::uint64_t base : bar.trapped) {
    (void)bus->remove(base);
  }
  bar.kvm_slots.clear();
  bar.trapped.clear();
  bar.mapped = false;
}

bool VfioPciDevice::in_msix_table(int index, std::uint64_t offset, std::size_t size) const {
  return msix_.table && index == msix_.table_bar && offset >= msix_.table_offset &&
         offset - msix_.table_offset < msix_.table->table_bytes() &&
         size <= msix_.table->table_bytes() - (offset - msix_.table_offset);
}

void VfioPciDevice::bar_read(int index, std::uint64_t offset, std::span<std::uint8_t> data) {
  std::lock_guard lock(mutex_);
  ++counters_.bar_traps;
  if (in_msix_table(index, offset, data.size())) {
    (void)msix_.table->read_table(offset - msix_.table_offset, data);  // odd accesses read zero
    return;
  }
  if (!device_.read(bar_regions_[index], offset, data.data(), data.size()).ok()) {
    std::fill(data.begin(), data.end(), 0xff);
  }
}

void VfioPciDevice::bar_write(int index, std::uint64_t offset, std::span<const std::uint8_t> data) {
  std::lock_guard lock(mutex_);
  ++counters_.bar_traps;
  if (in_msix_table(index, offset, data.size())) {
    // Never reaches the device's own table: Keel programs that through VFIO_DEVICE_SET_IRQS.
    const pci::MsixTable::Change change = msix_.table->write_table(offset - msix_.table_offset, data);
    Status s = change.routing;
    if (msix_.table->enabled() && (change.eventfds_changed || msix_.irqs_stale)) {
      Status sent = msix_send_irqs();
      if (s.ok()) {
        s = sent;
      }
    }
    if (!s.ok()) {
      log::warn("vfio", "MSI-X update failed", {{"device", name()}, {"error", s.error().message()}});
    }
    return;
  }
  (void)device_.write(bar_regions_[index], offset, data.data(), data.size());
}

// ---- interrupts ----

Status VfioPciDevice::set_irqs(std::uint32_t index, std::uint32_t flags, std::uint32_t start,
                               const std::vector<std::int32_t>& fds) {
  std::vector<std::uint8_t> buf(sizeof(vfio_irq_set) + fds.size() * sizeof(std::int32_t), 0);
  vfio_irq_set header{};
  header.argsz = static_cast<std::uint32_t>(buf.size());
  header.flags = flags;
  header.index = index;
  header.start = start;
  header.count = static_cast<std::uint32_t>(fds.size());
  std::memcpy(buf.data(), &header, sizeof header);
  if (!fds.empty()) {
    std::memcpy(buf.data() + sizeof header, fds.data(), fds.size() * sizeof(std::int32_t));
  }
  // VFIO_DEVICE_SET_IRQS: vfio_irq_set followed by `count` eventfds (none with DATA_NONE).
  KEEL_TRY_STATUS(device_.sys().ioctl(device_.fd(), VFIO_DEVICE_SET_IRQS, buf.data(),
                                      "VFIO_DEVICE_SET_IRQS index " + std::to_string(index) +
                                          " count " + std::to_string(fds.size())));
  return ok_status();
}

Status VfioPciDevice::set_intx_enabled(bool enabled) {
  if (!intx_trigger_ || enabled == intx_enabled_) {
    return ok_status();
  }
  if (!enabled) {
    intx_enabled_ = false;
    return set_irqs(VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, {});
  }
  KEEL_TRY_STATUS(set_irqs(VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
                           0, {intx_trigger_->fd()}));
  KEEL_TRY_STATUS(set_irqs(VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK,
                           0, {intx_resample_->fd()}));
  intx_enabled_ = true;
  return ok_status();
}

pci::MsiMessage VfioPciDevice::msi_message() const {
  const std::uint64_t high =
      msi_.is_64bit ? static_cast<std::uint64_t>(shadow_.get32(msi_.cap + 8)) << 32 : 0;
  return {shadow_.get32(msi_.cap + 4) | high,
          shadow_.get16(msi_.is_64bit ? msi_.cap + 12 : msi_.cap + 8)};
}

void VfioPciDevice::msi_config_written() {
  const bool enable = (shadow_.get16(msi_.cap + kMsiControl) & kMsiEnable) != 0;
  Status s = ok_status();
  if (enable && !msi_.enabled) {
    s = msi_enable();
    if (!s.ok()) {
      // Nothing half-wired: back to INTx without a route; the guest's next write of the enable
      // bit tries again.
      msi_disable();
    }
  } else if (!enable && msi_.enabled) {
    msi_disable();
  } else if (enable) {
    s = msi_route_.set(msi_message());  // address or data changed while enabled: retarget
  }
  if (!s.ok()) {
    log::warn("vfio", "MSI update failed", {{"device", name()}, {"error", s.error().message()}});
  }
}

Status VfioPciDevice::msi_enable() {
  KEEL_TRY_STATUS(msi_route_.set(msi_message()));
  msi_.enabled = true;
  ++counters_.msi_enables;
  // vfio-pci takes one interrupt type at a time: INTx off before MSI on.
  KEEL_TRY_STATUS(set_intx_enabled(false));
  return set_irqs(VFIO_PCI_MSI_IRQ_INDEX, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0,
                  {msi_route_.eventfd()});
}

void VfioPciDevice::msi_disable() {
  if (!msi_.enabled && !msi_route_.live()) {
    return;
  }
  if (msi_.enabled) {
    (void)set_irqs(VFIO_PCI_MSI_IRQ_INDEX, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, {});
  }
  msi_route_.release();
  msi_.enabled = false;
  (void)set_intx_enabled(true);
}

void VfioPciDevice::msix_config_written() {
  pci::MsixTable& table = *msix_.table;
  const std::uint16_t control = shadow_.get16(msix_.cap + kMsixControl);
  const bool was_enabled = table.enabled();
  if (was_enabled && (control & pci::kMsixEnable) == 0) {
    msix_disable();
    return;
  }
  const pci::MsixTable::Change change = table.set_control(control);
  Status s = change.routing;
  if (!was_enabled && table.enabled()) {
    ++counters_.msix_enables;
    // vfio-pci takes one interrupt type at a time: INTx off before MSI-X on.
    Status intx = set_intx_enabled(false);
    msix_.irqs_stale = !intx.ok();  // VFIO not told yet: the next change tries again
    s = intx.ok() ? msix_send_irqs() : intx;
  } else if (table.enabled() && (change.eventfds_changed || msix_.irqs_stale)) {
    Status sent = msix_send_irqs();
    if (s.ok()) {
      s = sent;
    }
  }
  if (!s.ok()) {
    log::warn("vfio", "MSI-X update failed", {{"device", name()}, {"error", s.error().message()}});
  }
}

// Hands VFIO the table's eventfds: a deliverable vector's route, -1 for the others (their
// interrupts are dropped while masked rather than left pending in the PBA).
Status VfioPciDevice::msix_send_irqs() {
  Status s = set_irqs(VFIO_PCI_MSIX_IRQ_INDEX, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
                      0, msix_.table->eventfds());
  msix_.irqs_stale = !s.ok();
  return s;
}

void VfioPciDevice::msix_disable() {
  if (!msix_.table || !msix_.table->enabled()) {
    return;
  }
  (void)set_irqs(VFIO_PCI_MSIX_IRQ_INDEX, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, {});
  // The table keeps its entries and function mask; only the routes go.
  (void)msix_.table->set_control(static_cast<std::uint16_t>(
      shadow_.get16(msix_.cap + kMsixControl) & ~pci::kMsixEnable));
  msix_.irqs_stale = false;
  (void)set_intx_enabled(true);
}

VfioPciDevice::Counters VfioPciDevice::counters() const {
  std::lock_guard lock(mutex_);
  return counters_;
}

}  // namespace keel::vfio
