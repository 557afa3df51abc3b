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
#include "devices/vfio/dma_mapper.hpp"
#include "devices/vfio/dma_planner.hpp"
#include "devices/vfio/dma_report.hpp"
#include "devices/vfio/group.hpp"
#include "devices/vfio/iommu_info.hpp"
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
  // Where IOMMU group members are looked up (kernel/iommu_groups/N/devices); tests fake it.
  std::filesystem::path sysfs_root = kSysfsRoot;
  std::uint32_t p2p_entries = 0;  // BARs the caller will map for peer-to-peer
  std::uint32_t hotplug_reserve = kDefaultHotplugReserve;
  std::optional<MemlockLimit> memlock;  // unset: read from this process
  // The devices sit behind Keel's virtual IOMMU: the plan may decide lazy mapping, and then the
  // guest's IOMMU driver decides what is mapped, keeping `low_water` entries free.
  bool behind_viommu = false;
  std::uint32_t low_water = 0;
};

// A type1v2 container with its DMA budget negotiated: the VFIO side of the passthrough devices
// that share it. create() runs the setup as phases: locate the devices in sysfs (once), open the
// container and attach their groups, negotiate (GET_INFO: IOVA ranges, page sizes, DMA_AVAIL),
// open the device fds, plan against guest RAM and decide, map eagerly or hand the container to
// the lazy engine, then account and report. Guest memory must outlive it. Destruction unmaps
// every entry (the kernel's count returns to avail_at_open), then detaches the groups and closes.
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
  const ContainerFd& container() const { return container_; }
  // The attached groups (the KVM-VFIO device needs their fds).
  const std::vector<Group>& groups() const { return groups_; }
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
  BudgetedContainer(ContainerFd container, std::vector<Group> groups, IommuInfo info)
      : container_(std::move(container)), groups_(std::move(groups)), info_(std::move(info)) {}

  // Destroyed bottom-up: the entries are unmapped first, then devices close, groups detach, and
  // the container closes last.
  ContainerFd container_;
  std::vector<Group> groups_;
  IommuInfo info_;
  std::vector<PciDeviceLocation> locations_;
  std::vector<std::optional<DeviceFd>> devices_;
  DmaPlan plan_;
  std::optional<DmaMapper> mapper_;
  std::optional<LazyDma> lazy_;  // before mapper_ in destruction: it borrows the mapper
};

}  // namespace keel::vfio
