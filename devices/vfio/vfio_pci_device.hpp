#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/event_fd.hpp"
#include "base/mapping.hpp"
#include "base/result.hpp"
#include "devices/bus.hpp"
#include "devices/interrupt_router.hpp"
#include "devices/memory_slots.hpp"
#include "devices/pci_config_space.hpp"
#include "devices/pci_device.hpp"
#include "devices/vfio/device.hpp"

namespace keel::vfio {

// Where BARs go in the guest-physical space: Keel assigns them like firmware would.
class BarAllocator {
 public:
  BarAllocator(std::uint64_t mmio32_start, std::uint64_t mmio32_end, std::uint64_t mmio64_start,
               std::uint64_t mmio64_end, std::uint64_t io_start, std::uint64_t io_end)
      : next32_(mmio32_start), end32_(mmio32_end), next64_(mmio64_start), end64_(mmio64_end),
        next_io_(io_start), end_io_(io_end) {}
  // Naturally aligned address for a BAR of `size` (a power of two).
  Result<std::uint64_t> allocate(std::uint64_t size, bool is_io, bool is_64bit);

 private:
  std::uint64_t next32_, end32_, next64_, end64_, next_io_, end_io_;
};

// A PCI function of the host passed through to the guest with VFIO. Configuration space is
// virtualised: BARs (sizing and relocation), the expansion ROM (hidden), the interrupt line and
// the MSI / MSI-X capabilities are emulated; everything else reaches the device. BARs are
// mmapped into the guest as KVM memory slots, except the pages holding the MSI-X table and PBA,
// which are emulated. INTx goes through a KVM irqfd with resample, MSI/MSI-X through KVM MSI
// routes and irqfds: no interrupt passes through the VMM.
class VfioPciDevice : public devices::PciDevice,
                      public std::enable_shared_from_this<VfioPciDevice> {
 public:
  struct Wiring {
    devices::InterruptRouter* router;
    devices::MemorySlots* slots;
    devices::Bus* mmio;
    devices::Bus* pio;
    BarAllocator* bars;
    std::uint8_t slot;  // on Keel's PCI bus 0; with the INTx pin it picks the IOAPIC line
  };

  // Takes the device (its fd) over; reads its regions and interrupts and assigns its BARs.
  static Result<std::shared_ptr<VfioPciDevice>> create(Device device, const Wiring& wiring);
  ~VfioPciDevice() override;

  void read_config(std::uint16_t offset, std::span<std::uint8_t> data) override;
  void write_config(std::uint16_t offset, std::span<const std::uint8_t> data) override;

  // Counters for the API (vm.counters).
  struct Counters {
    std::uint64_t config_reads = 0, config_writes = 0, bar_traps = 0;
    std::uint32_t msi_enables = 0, msix_enables = 0;
  };
  Counters counters() const;
  const std::string& name() const { return device_.name(); }

  // Emulated MSI-X table accesses (the trapped pages of the table's BAR). Public for the bus
  // device that forwards them; offsets are into the BAR.
  void bar_read(int bar, std::uint64_t offset, std::span<std::uint8_t> data);
  void bar_write(int bar, std::uint64_t offset, std::span<const std::uint8_t> data);

 private:
  struct Bar {
    std::uint64_t size = 0;
    bool present = false, is_io = false, is_64bit = false, prefetch = false;
    std::uint64_t address = 0;  // as the guest programmed it
    std::vector<std::pair<std::uint64_t, Mapping>> host;  // mmapped areas, by offset in the BAR
    std::vector<std::uint32_t> kvm_slots;
    std::vector<std::uint64_t> trapped;  // bus bases registered for this BAR
    bool mapped = false;
  };
  struct Msi {
    std::uint16_t cap = 0;  // offset of the capability, 0 = absent
    bool is_64bit = false, per_vector_mask = false;
    bool enabled = false;
    std::optional<std::uint32_t> gsi;
    std::optional<EventFd> trigger;
  };
  struct MsixVector {
    std::uint64_t address = 0;
    std::uint32_t data = 0;
    std::uint32_t control = 1;  // masked at reset
    std::optional<std::uint32_t> gsi;
    std::optional<EventFd> trigger;
  };
  struct Msix {
    std::uint16_t cap = 0;
    std::uint16_t table_size = 0;
    int table_bar = -1, pba_bar = -1;
    std::uint64_t table_offset = 0, pba_offset = 0;
    bool enabled = false, function_masked = false;
    std::vector<MsixVector> vectors;
  };

  VfioPciDevice(Device device, const Wiring& wiring) : device_(std::move(device)), wiring_(wiring) {}
  Status init();
  Status init_regions();
  Status init_bars();
  Status init_capabilities();
  Status init_intx();

  bool emulated(std::uint16_t dword_offset) const;
  Status device_config_read(std::uint16_t offset, std::span<std::uint8_t> data);
  Status device_config_write(std::uint16_t offset, std::span<const std::uint8_t> data);

  void write_bar_register(int index, std::uint16_t offset, std::span<const std::uint8_t> data);
  void update_bar_mappings();
  Status map_bar(int index);
  void unmap_bar(int index);

  void msi_config_written();
  Status msi_enable();
  void msi_disable();
  void msix_config_written();
  Status msix_update();
  void msix_disable();
  Status set_intx_enabled(bool enabled);
  Status set_irqs(std::uint32_t index, std::uint32_t flags, std::uint32_t start,
                  const std::vector<std::int32_t>& fds);

  Device device_;
  Wiring wiring_;
  std::array<RegionInfo, 6> bar_regions_;
  RegionInfo config_region_;
  std::uint32_t intx_count_ = 0, msi_count_ = 0, msix_count_ = 0;
  std::uint32_t intx_gsi_ = 0;
  mutable std::mutex mutex_;
  devices::PciConfigSpace shadow_;  // the emulated registers
  std::array<Bar, 6> bars_;
  Msi msi_;
  Msix msix_;
  bool memory_enabled_ = false, io_enabled_ = false;
  bool intx_enabled_ = false;
  std::optional<EventFd> intx_trigger_, intx_resample_;
  Counters counters_;
};

}  // namespace keel::vfio
