#pragma once

#include <memory>
#include <vector>

#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "devices/bus.hpp"
#include "devices/pci_root.hpp"
#include "devices/vfio/dma_report.hpp"
#include "devices/vfio/vfio_container.hpp"
#include "devices/vfio/vfio_pci_device.hpp"
#include "memory/guest_memory.hpp"
#include "vmm/kvm.hpp"
#include "vmm/kvm_interrupt_router.hpp"
#include "vmm/kvm_memory_slots.hpp"
#include "vmm/vm_config.hpp"

namespace keel::vmm {

// A VM's VFIO passthrough: one container for all its devices (negotiated, planned and mapped
// before the guest runs), the KVM-VFIO device, and one VfioPciDevice per host function on Keel's
// PCI root. Teardown removes the devices first, then the container unmaps every DMA entry.
class Passthrough {
 public:
  struct Vm {
    const memory::GuestMemory& memory;
    KvmVm& kvm;
    devices::PciRoot& pci_root;
    devices::Bus& mmio;
    devices::Bus& pio;
  };
  static Result<std::unique_ptr<Passthrough>> create(const std::vector<DeviceConfig>& devices,
                                                     const Vm& vm);
  ~Passthrough();
  Passthrough(const Passthrough&) = delete;
  Passthrough& operator=(const Passthrough&) = delete;

  vfio::DmaReport dma_report() const { return container_->report(); }
  struct Passed {
    std::string id;
    std::uint8_t slot;
    std::string guest_bdf;  // where the guest sees it on Keel's bus 0: 0000:00:<slot>.0
    std::shared_ptr<vfio::VfioPciDevice> device;
  };
  const std::vector<Passed>& devices() const { return devices_; }
  Result<vfio::DmaReport> refresh_dma_report() { return container_->refresh(); }

 private:
  explicit Passthrough(const Vm& vm);

  devices::PciRoot& pci_root_;
  KvmInterruptRouter router_;
  KvmMemorySlots slots_;
  vfio::BarAllocator bars_;
  std::unique_ptr<vfio::VfioContainer> container_;
  UniqueFd kvm_vfio_;
  std::vector<Passed> devices_;
};

}  // namespace keel::vmm
