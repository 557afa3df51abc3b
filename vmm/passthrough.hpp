#pragma once

#include <cstdint>
#include <memory>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "devices/pci/platform.hpp"
#include "devices/vfio/dma_report.hpp"
#include "devices/vfio/lazy_dma.hpp"
#include "devices/vfio/budgeted_container.hpp"
#include "devices/vfio/vfio_pci_device.hpp"
#include "devices/dma_mapping.hpp"
#include "memory/guest_memory.hpp"
#include "vmm/event_monitor.hpp"
#include "vmm/kvm.hpp"
#include "vmm/vm_config.hpp"

namespace keel::vmm {

// A VM's VFIO passthrough: the devices that are not behind the virtual IOMMU share one
// container, planned and mapped eagerly before the guest runs; each device behind it
// (iommu=on) gets a container of its own, whose plan may hand it to the lazy engine, since the
// guest may put each in a different IOMMU domain. Then the KVM-VFIO device, and one
// VfioPciDevice per host function on the VM's PCI platform. Teardown removes the devices first,
// then each container unmaps every DMA entry. A device hot-added to the running VM gets a
// container of its own, negotiated, planned and mapped like the others before the guest hears of
// it; removing it gives its container back whole.
class Passthrough {
 public:
  // The memory, the KVM VM and the platform outlive it.
  static Result<std::unique_ptr<Passthrough>> create(const std::vector<DeviceConfig>& devices,
                                                     const memory::GuestMemory& memory,
                                                     KvmVm& kvm, pci::Platform& platform);
  ~Passthrough();
  Passthrough(const Passthrough&) = delete;
  Passthrough& operator=(const Passthrough&) = delete;

  struct Passed {
    std::string id;
    std::uint8_t slot;  // where the guest sees it: pci::guest_bdf(slot)
    bool behind_viommu = false;
    std::size_t container = 0;  // index into the containers, as in dma_reports()
    std::shared_ptr<vfio::VfioPciDevice> device;
  };
  const std::vector<Passed>& devices() const { return devices_; }

  // Hot-plug (the VMM thread, the guest running). hot_add: the device in a container of its own,
  // its budget read and planned; on failure nothing is left mapped or attached. Returns its slot.
  Result<std::uint8_t> hot_add(const DeviceConfig& device);
  // The slot of device `id` if it can be removed while the guest runs: it must hold its
  // container alone and not be behind the virtual IOMMU (the guest's VIOT names it).
  Result<std::uint8_t> removable_slot(const std::string& id) const;
  // Takes the device in `slot` off the platform and gives its container back (every entry
  // unmapped, the group detached from KVM and the container).
  Status remove(std::uint8_t slot);

  // Hot-plugged memory (virtio-mem; any thread). Every eagerly mapped container maps a plugged
  // range as one entry; on a refusal (the budget, the kernel) none keeps it. An unplug must cover
  // whole plugged ranges while an eager container holds them: type1 cannot split an entry, and
  // the device must keep what the guest still has. Lazy containers need nothing.
  Status ram_plugged(std::uint64_t gpa, std::uint64_t size);
  Status ram_unplugged(std::uint64_t gpa, std::uint64_t size);
  // Reports to `events` ("dma" "low-water" / "low-water-cleared", with the container's
  // devices and entries) when a lazy container's headroom reaches its reserve or leaves it.
  void watch_low_water(const EventSink& events);
  // How many more entries every eager container can take now (the smallest DMA_AVAIL, re-read),
  // or nullopt when no container maps eagerly.
  Result<std::optional<std::uint64_t>> eager_headroom();

  // One report per container, as last known (no syscall) or re-read from the kernel first.
  std::vector<vfio::DmaReport> dma_reports() const;
  Result<std::vector<vfio::DmaReport>> refresh_dma_reports();

  // What the virtual IOMMU serves: for each device behind it, its guest requester id (bus 0:
  // slot << 3) and what its container's host IOMMU can translate; and the host side of the
  // guest's mappings. Empty without iommu=on.
  struct ViommuEndpoint {
    std::uint16_t requester_id = 0;
    std::vector<vfio::IovaRange> iova_ranges;  // empty: every IOVA
    std::uint64_t iova_pgsizes = 0;            // 0: not reported
  };
  std::vector<ViommuEndpoint> viommu_endpoints() const;
  devices::DmaMappingBackend& iommu_backend() { return backend_; }

 private:
  Passthrough(const memory::GuestMemory& memory, KvmVm& kvm, pci::Platform& platform)
      : memory_(memory), kvm_(kvm), platform_(platform) {}
  // Puts device `d`, the `index`th of container `container`, on the platform.
  Result<std::uint8_t> pass(const DeviceConfig& d, std::size_t container, std::size_t index);
  // Tells KVM about (or forgets) every group of `container`.
  Status set_groups(const vfio::BudgetedContainer& container, bool attached);

  // Serialises the lazy engines (called from the vCPU thread that notifies the virtual IOMMU)
  // with reports (the VMM thread).
  class LockedBackend final : public devices::DmaMappingBackend {
   public:
    explicit LockedBackend(std::mutex& mutex) : mutex_(mutex) {}
    void add_endpoint(std::uint32_t endpoint, vfio::LazyDma& dma) {
      inner_.add_endpoint(endpoint, dma);
    }
    bool has_endpoint(std::uint32_t endpoint) const override;
    devices::DmaStatus map(std::uint32_t endpoint, const devices::DmaMapping& m) override;
    devices::DmaStatus unmap(std::uint32_t endpoint, const devices::DmaMapping& m) override;

   private:
    std::mutex& mutex_;
    vfio::LazyIommuBackend inner_;
  };

  const memory::GuestMemory& memory_;
  KvmVm& kvm_;
  pci::Platform& platform_;
  std::shared_ptr<vfio::VfioSys> sys_;
  mutable std::mutex dma_mutex_;
  std::vector<std::unique_ptr<vfio::BudgetedContainer>> containers_;
  LockedBackend backend_{dma_mutex_};
  UniqueFd kvm_vfio_;
  std::vector<Passed> devices_;
  std::map<std::uint64_t, std::uint64_t> plugged_;  // hot-plugged ranges, gpa -> size (dma_mutex_)
};

}  // namespace keel::vmm
