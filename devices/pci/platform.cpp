#include "devices/pci/platform.hpp"

#include "memory/layout.hpp"

namespace keel::pci {

namespace layout = keel::memory::layout;

Platform::BarWindows Platform::BarWindows::above_ram(std::uint64_t top, std::uint16_t segment,
                                                     std::uint16_t segments) {
  const auto [start, end] = layout::mmio64_window(top, segment, segments);
  if (segment != 0) {
    return {{0, 0}, {start, end}, {0, 0}};
  }
  return {{layout::kMmio32Start, layout::kMmio32Start + layout::kMmio32Size},
          {start, end},
          {layout::kPciIoStart, layout::kPciIoEnd}};
}

Platform::Platform(devices::Bus& pio, devices::Bus& mmio, devices::InterruptRouter& router,
                   devices::MemorySlots& memory_slots, const BarWindows& windows,
                   devices::IoEvents* io_events, std::uint16_t segment)
    : pio_(pio),
      mmio_(mmio),
      router_(router),
      memory_slots_(memory_slots),
      io_events_(io_events),
      root_(std::make_shared<PciRoot>()),
      bars_(windows.mmio32, windows.mmio64, windows.io),
      segment_(segment) {}

Result<std::unique_ptr<Platform>> Platform::create(devices::Bus& pio, devices::Bus& mmio,
                                                   devices::InterruptRouter& router,
                                                   devices::MemorySlots& memory_slots,
                                                   const BarWindows& windows,
                                                   devices::IoEvents* io_events,
                                                   std::uint16_t segment) {
  if (segment >= layout::kMaxPciSegments) {
    return Error::invalid("PCI segment " + std::to_string(segment) + ": Keel has 0 to " +
                          std::to_string(layout::kMaxPciSegments - 1));
  }
  std::unique_ptr<Platform> p(
      new Platform(pio, mmio, router, memory_slots, windows, io_events, segment));
  if (segment == 0) {
    KEEL_TRY_STATUS(pio.insert(std::make_shared<PciConfigIo>(p->root_),
                               layout::kPciConfigAddressPort, PciConfigIo::kSize));
    p->config_io_ = true;
  }
  KEEL_TRY_STATUS(mmio.insert(std::make_shared<PciEcam>(p->root_), layout::ecam_start(segment),
                              layout::kEcamSize));
  p->ecam_ = true;
  return p;
}

Platform::~Platform() {
  if (ecam_) {
    (void)mmio_.remove(layout::ecam_start(segment_));
  }
  if (config_io_) {
    (void)pio_.remove(layout::kPciConfigAddressPort);
  }
}

}  // namespace keel::pci
