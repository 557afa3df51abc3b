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
#include "devices/pci/config_space.hpp"
#include "devices/pci/msi_route.hpp"
#include "devices/pci/msix.hpp"
#include "devices/pci/pci_device.hpp"
#include "devices/pci/platform.hpp"
#include "devices/vfio/device_fd.hpp"

namespace keel::vfio {

// A PCI function of the host passed through to the guest with VFIO. Configuration space is
// virtualised: BARs (sizing and relocation), the expansion ROM (hidden), the interrupt line and
// the MSI / MSI-X capabilities are emulated; everything else reaches the device. BARs are
// mmapped into the guest as KVM memory slots, except the pages holding the MSI-X table and PBA,
// which are emulated. INTx goes through a KVM irqfd with resample, MSI/MSI-X through KVM MSI
// routes and irqfds: no interrupt passes through the VMM.
class VfioPciDevice : public pci::PciDevice,
                      public std::enable_shared_from_this<VfioPciDevice> {
 public:
  // Takes the device (its fd) over; reads its regions and interrupts and assigns its BARs from
  // the platform. `slot`: where the caller will plug it on bus 0 (with the INTx pin it picks the
  // IOAPIC line). The platform outlives the device.
  static Result<std::shared_ptr<VfioPciDevice>> create(DeviceFd device, pci::Platform& platform,
                                                       std::uint8_t slot);
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
    std::uint64_t assigned = 0;  // where Keel put it (given back to the allocator at the end)
    pci::BarSpace space = pci::BarSpace::kMmio32;
    std::vector<std::pair<std::uint64_t, Mapping>> host;  // mmapped areas, by offset in the BAR
    std::vector<std::uint32_t> kvm_slots;
    std::vector<std::uint64_t> trapped;  // bus bases registered for this BAR
    bool mapped = false;
  };
  struct Msi {
    std::uint16_t cap = 0;  // offset of the capability, 0 = absent
    bool is_64bit = false, per_vector_mask = false;
    bool enabled = false;
  };
  struct Msix {
    std::uint16_t cap = 0;
    int table_bar = -1, pba_bar = -1;
    std::uint64_t table_offset = 0, pba_offset = 0;
    std::optional<pci::MsixTable> table;  // with the capability
    bool irqs_stale = false;  // the last VFIO_DEVICE_SET_IRQS failed: send again at the next change
  };

  VfioPciDevice(DeviceFd device, pci::Platform& platform, std::uint8_t slot)
      : device_(std::move(device)), platform_(platform), slot_(slot), msi_route_(platform.router()) {}
  Status init();
  Status init_regions();
  Status init_bars();
  Status init_capabilities();
  Status init_intx();

  bool emulated(std::uint16_t dword_offset) const;
  Status device_config_read(std::uint16_t offset, std::span<std::uint8_t> data);
  Status device_config_write(std::uint16_t offset, std::span<const std::uint8_t> data);

  bool in_msix_table(int index, std::uint64_t offset, std::size_t size) const;
  void write_bar_register(int index, std::uint16_t offset, std::span<const std::uint8_t> data);
  void update_bar_mappings();
  Status map_bar(int index);
  void unmap_bar(int index);

  pci::MsiMessage msi_message() const;
  void msi_config_written();
  Status msi_enable();
  void msi_disable();
  void msix_config_written();
  Status msix_send_irqs();
  void msix_disable();
  Status set_intx_enabled(bool enabled);
  Status set_irqs(std::uint32_t index, std::uint32_t flags, std::uint32_t start,
                  const std::vector<std::int32_t>& fds);

  DeviceFd device_;
  pci::Platform& platform_;
  std::uint8_t slot_;
  std::array<RegionInfo, 6> bar_regions_;
  RegionInfo config_region_;
  std::uint32_t intx_count_ = 0, msi_count_ = 0, msix_count_ = 0;
  std::uint32_t intx_gsi_ = 0;
  mutable std::mutex mutex_;
  pci::PciConfigSpace shadow_;  // the emulated registers
  std::array<Bar, 6> bars_;
  Msi msi_;
  pci::MsiRoute msi_route_;
  Msix msix_;
  bool memory_enabled_ = false, io_enabled_ = false;
  bool intx_enabled_ = false;
  std::optional<EventFd> intx_trigger_, intx_resample_;
  Counters counters_;
};

}  // namespace keel::vfio
