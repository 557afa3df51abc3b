#pragma once

#include <cstdint>
#include <memory>

#include "base/result.hpp"
#include "devices/bus.hpp"
#include "devices/interrupt_router.hpp"
#include "devices/io_events.hpp"
#include "devices/memory_slots.hpp"
#include "devices/pci/bar_allocator.hpp"
#include "devices/pci/pci_device.hpp"
#include "devices/pci/root.hpp"

namespace keel::pci {

// One VM's PCI platform: bus 0 and its configuration space (mechanism #1 on the port bus, ECAM
// on the MMIO bus), the BAR windows, and what a function needs of the VM to work without the
// VMM in the way: MSI routes and irqfds (the interrupt router), guest-physical mappings of
// host memory (memory slots) and, where the VM has them, eventfds signalled by guest writes
// (I/O events; without them such writes reach the device on the MMIO bus). The VM owns it and hands it to every PCI device it builds, virtio
// and passthrough alike; no device owns another's resources.
class Platform {
 public:
  // Where BARs go.
  struct BarWindows {
    AddressWindow mmio32, mmio64, io;
    // The guest's address map (memory/layout.hpp): the 32-bit hole below the ECAM, the 64-bit
    // window above guest memory ending at `top` (hot-pluggable memory included), the ports above
    // the legacy ones. With several segments, segment `segment` gets its share of the 64-bit
    // window, and only segment 0 the 32-bit window and the ports.
    static BarWindows above_ram(std::uint64_t top, std::uint16_t segment = 0,
                                std::uint16_t segments = 1);
  };
  // Segment 0 answers configuration mechanism #1 (ports 0xcf8) and its ECAM; another segment
  // only its ECAM (layout::ecam_start).
  static Result<std::unique_ptr<Platform>> create(devices::Bus& pio, devices::Bus& mmio,
                                                  devices::InterruptRouter& router,
                                                  devices::MemorySlots& memory_slots,
                                                  const BarWindows& windows,
                                                  devices::IoEvents* io_events = nullptr,
                                                  std::uint16_t segment = 0);
  std::uint16_t segment() const { return segment_; }
  ~Platform();
  Platform(const Platform&) = delete;
  Platform& operator=(const Platform&) = delete;

  // The slot plug() would use next: a device may need it before it exists (its INTx line).
  Result<std::uint8_t> free_slot() const { return root_->free_slot(); }
  Status plug(std::uint8_t slot, std::shared_ptr<PciDevice> device) {
    return root_->add_at(slot, std::move(device));
  }
  Status unplug(std::uint8_t slot) { return root_->remove(slot); }

  PciRoot& root() { return *root_; }
  BarAllocator& bars() { return bars_; }
  devices::InterruptRouter& router() { return router_; }
  devices::MemorySlots& memory_slots() { return memory_slots_; }
  devices::IoEvents* io_events() { return io_events_; }  // null: none
  devices::Bus& mmio() { return mmio_; }
  devices::Bus& pio() { return pio_; }

 private:
  Platform(devices::Bus& pio, devices::Bus& mmio, devices::InterruptRouter& router,
           devices::MemorySlots& memory_slots, const BarWindows& windows,
           devices::IoEvents* io_events, std::uint16_t segment);

  devices::Bus& pio_;
  devices::Bus& mmio_;
  devices::InterruptRouter& router_;
  devices::MemorySlots& memory_slots_;
  devices::IoEvents* io_events_;
  std::shared_ptr<PciRoot> root_;
  BarAllocator bars_;
  std::uint16_t segment_;
  bool config_io_ = false, ecam_ = false;  // registered on the buses
};

}  // namespace keel::pci
