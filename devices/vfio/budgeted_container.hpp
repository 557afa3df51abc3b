#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "devices/vfio/container_fd.hpp"
#include "devices/vfio/device_fd.hpp"
#include "devices/vfio/dma_backend.hpp"
#include "devices/vfio/dma_mapper.hpp"
#include "devices/vfio/dma_planner.hpp"
#include "devices/vfio/dma_report.hpp"
#include "devices/vfio/group.hpp"
#include "devices/vfio/iommu_info.hpp"
#include "devices/vfio/iommufd.hpp"
#include "devices/vfio/lazy_dma.hpp"
#include "devices/vfio/memlock.hpp"
#include "devices/vfio/pci_sysfs.hpp"
#include "devices/vfio/vfio_sys.hpp"
#include "memory/guest_memory.hpp"

namespace keel::vfio {

struct BudgetedContainerConfig {
  // /sys/bus/pci/devices/DDDD:BB:DD.F, one per passed-through device.
  std::vector<std::string> device_paths;
  MappingMode mode = MappingMode::kAuto;
  BackendChoice backend = BackendChoice::kAuto;
  // Where IOMMU group members (kernel/iommu_groups/N/devices) and device cdevs
  // (bus/pci/devices/<bdf>/vfio-dev) are looked up; tests fake it.
  std::filesystem::path sysfs_root = kSysfsRoot;
  std::uint32_t p2p_entries = 0;  // BARs the caller will map for peer-to-peer
  std::uint32_t hotplug_reserve = kDefaultHotplugReserve;
  std::optional<MemlockLimit> memlock;  // unset: read from this process
  // The devices sit behind Keel's virtual IOMMU: the plan may decide lazy mapping, and then the
  // guest's IOMMU driver decides what is mapped, keeping `low_water` entries free.
  bool behind_viommu = false;
  std::uint32_t low_water = 0;
};

// A container with its DMA budget negotiated: the VFIO side of the passthrough devices that
// share it, on either backend (type1v2 or iommufd, chosen per config.backend). create() runs the
// setup as phases: locate the devices in sysfs (once), choose the backend, open the container
// and attach the devices (type1: their groups into a container, then the device fds; iommufd:
// each device's cdev bound to one iommufd and attached to a new IO address space), negotiate
// (IOVA ranges, page sizes, the entry budget: DMA_AVAIL, or none on iommufd), plan against guest
// RAM and decide, map eagerly or hand the container to the lazy engine, then account and
// report. Guest memory must outlive it. Destruction unmaps every entry (type1's count returns
// to avail_at_open), then closes the devices that were not taken, the groups and the container.
class BudgetedContainer {
 public:
  // Fails, before anything is mapped, when a device path is wrong, a group is not viable, the
  // plan is refused (the error carries the plan's reason: numbers and fixes) or a MAP fails (then
  // nothing is left mapped). Logs the report line at info on success.
  static Result<std::unique_ptr<BudgetedContainer>> create(const std::shared_ptr<VfioSys>& sys,
                                                       const memory::GuestMemory& memory,
                                                       const BudgetedContainerConfig& config);
  ~BudgetedContainer() = default;
  BudgetedContainer(const BudgetedContainer&) = delete;
  BudgetedContainer& operator=(const BudgetedContainer&) = delete;

  // Hands the opened device of config.device_paths[index] to its owner (the passthrough device).
  // Each only once.
  Result<DeviceFd> take_device(std::size_t index);

  // Where each of config.device_paths is, as sysfs said when the container was set up.
  const std::vector<PciDeviceLocation>& locations() const { return locations_; }
  BackendKind backend() const { return backend_->kind(); }
  // What the KVM-VFIO device is told of (KVM_DEV_VFIO_FILE): the groups' fds on type1, the
  // device cdevs' fds on iommufd (valid while their devices are open).
  const std::vector<int>& kvm_files() const { return kvm_files_; }
  const IommuInfo& iommu_info() const { return info_; }
  const DmaPlan& plan() const { return plan_; }
  // For further entries (BARs mapped for peer-to-peer) and on-request reconciliation.
  DmaMapper& mapper() { return *mapper_; }
  // The lazy engine when the plan decided lazy mapping, or behind the virtual IOMMU (where it
  // starts over the eager plan); else null.
  LazyDma* lazy() { return lazy_ ? &*lazy_ : nullptr; }

  // The numbers as last known (no syscall).
  DmaReport report() const;
  // Re-reads DMA_AVAIL, reconciles, then reports.
  Result<DmaReport> refresh();

 private:
  BudgetedContainer() = default;
  Status open_type1(const std::shared_ptr<VfioSys>& sys, const std::filesystem::path& sysfs_root);
  Status open_iommufd(const std::shared_ptr<VfioSys>& sys, const std::filesystem::path& sysfs_root);

  // Destroyed bottom-up: the entries are unmapped first, then devices close, the backend goes,
  // groups detach, and the container (or the iommufd, with its IO address space) closes last.
  std::optional<ContainerFd> container_;  // type1
  std::vector<Group> groups_;             // type1
  std::optional<Iommufd> iommufd_;        // iommufd
  std::uint32_t ioas_ = 0;                // iommufd
  std::vector<UniqueFd> cdev_dups_;       // iommufd: the device cdevs as KVM knows them
  std::unique_ptr<DmaBackend> backend_;
  std::string backend_reason_;
  std::vector<int> kvm_files_;
  IommuInfo info_;
  std::vector<PciDeviceLocation> locations_;
  std::vector<std::optional<DeviceFd>> devices_;
  DmaPlan plan_;
  MemlockLimit memlock_;
  std::optional<DmaMapper> mapper_;
  std::optional<LazyDma> lazy_;  // before mapper_ in destruction: it borrows the mapper
};

}  // namespace keel::vfio
