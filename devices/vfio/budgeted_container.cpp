#include "devices/vfio/budgeted_container.hpp"

#include <algorithm>

namespace keel::vfio {

namespace {

// Phase 1: each device path resolved through sysfs, once (address, IOMMU group, driver).
Result<std::vector<PciDeviceLocation>> locate(const std::vector<std::string>& paths) {
  if (paths.empty()) {
    return Error::invalid("VFIO container: no devices to pass through");
  }
  std::vector<PciDeviceLocation> locations;
  for (const auto& path : paths) {
    KEEL_TRY(PciDeviceLocation location, resolve_pci_device(path));
    for (const PciDeviceLocation& seen : locations) {
      if (seen.bdf == location.bdf) {
        return Error::invalid("PCI device " + location.bdf + " is named twice");
      }
    }
    locations.push_back(std::move(location));
  }
  return locations;
}

std::string describe(const std::vector<PciDeviceLocation>& locations) {
  std::string list;
  for (const auto& location : locations) {
    list += (list.empty() ? "" : ", ") + location.bdf;
  }
  return "VFIO container for " + list;
}

Group& group_of(std::vector<Group>& groups, std::uint32_t number) {
  return *std::find_if(groups.begin(), groups.end(), [&](const Group& g) { return g.number() == number; });
}

// Phase 2: the container opened and every device's group attached to it (each group once).
Result<std::vector<Group>> attach_groups(const std::shared_ptr<VfioSys>& sys, ContainerFd& container,
                                         const std::vector<PciDeviceLocation>& locations,
                                         const std::filesystem::path& sysfs_root) {
  std::vector<Group> groups;
  for (const auto& location : locations) {
    const bool known = std::any_of(groups.begin(), groups.end(), [&](const Group& group) {
      return group.number() == location.group;
    });
    if (known) {
      continue;
    }
    KEEL_TRY_WRAP(Group group, Group::open(sys, location.group, sysfs_root), "PCI device " + location.bdf);
    KEEL_TRY_STATUS(container.attach(group));
    groups.push_back(std::move(group));
  }
  return groups;
}

// Phase 4: what the plan needs, from guest RAM, the container and the process.
Result<PlanInput> plan_input(const memory::GuestMemory& memory, const IommuInfo& info,
                             const BudgetedContainerConfig& config) {
  PlanInput input;
  input.ram = ram_spans(memory);
  input.iova_ranges = info.iova_ranges;
  input.iova_pgsizes = info.iova_pgsizes;
  input.budget = info.budget;
  input.requested = config.mode;
  input.p2p_entries = config.p2p_entries;
  input.hotplug_reserve = config.hotplug_reserve;
  input.behind_viommu = config.behind_viommu;
  if (config.memlock) {
    input.memlock = *config.memlock;
  } else {
    KEEL_TRY(input.memlock, read_memlock_limit());
  }
  return input;
}

}  // namespace

Result<std::unique_ptr<BudgetedContainer>> BudgetedContainer::create(
    const std::shared_ptr<VfioSys>& sys, const memory::GuestMemory& memory,
    const BudgetedContainerConfig& config) {
  KEEL_TRY(std::vector<PciDeviceLocation> locations, locate(config.device_paths));
  const std::string what = describe(locations);
  KEEL_TRY(ContainerFd container, ContainerFd::open(sys));
  KEEL_TRY(std::vector<Group> groups, attach_groups(sys, container, locations, config.sysfs_root));
  // Phase 3: negotiate: what the container offers (IOVA ranges, page sizes, DMA_AVAIL).
  KEEL_TRY_WRAP(IommuInfo info, read_iommu_info(*sys, container.fd()), what);
  std::unique_ptr<BudgetedContainer> self(
      new BudgetedContainer(std::move(container), std::move(groups), std::move(info)));
  for (const auto& location : locations) {
    KEEL_TRY(DeviceFd device, DeviceFd::open(sys, group_of(self->groups_, location.group), location.bdf));
    self->devices_.emplace_back(std::move(device));
  }
  self->locations_ = std::move(locations);
  // Phases 4 and 5: plan against guest RAM and the budget, decide.
  KEEL_TRY_WRAP(PlanInput input, plan_input(memory, self->info_, config), what);
  KEEL_TRY_WRAP(self->plan_, plan_dma(input), what);
  if (self->plan_.decision == Decision::kRefuse) {
    return Error::invalid(what + ": " + self->plan_.reason);
  }
  // Phase 6: map eagerly, or hand the container to the lazy engine.
  self->mapper_.emplace(sys, self->container_.fd(), self->info_.budget,
                        self->container_.unmap_all_supported());
  if (self->plan_.decision == Decision::kLazy) {
    self->lazy_.emplace(*self->mapper_, memory, config.low_water);
  } else {
    Status mapped = self->mapper_->map_plan(self->plan_);
    if (!mapped.ok()) {
      return mapped.error().wrap(what);
    }
    if (config.behind_viommu) {  // the eager entries serve identity domains until translated
      self->lazy_.emplace(*self->mapper_, memory, config.low_water, /*over_eager=*/true);
    }
  }
  // Phase 7: account and report. A mismatch is logged and shown in the report; it does not stop
  // the VM.
  [[maybe_unused]] auto reconciled = self->mapper_->reconcile();
  log_dma_report(self->report());
  return self;
}

Result<DeviceFd> BudgetedContainer::take_device(std::size_t index) {
  if (index >= devices_.size()) {
    return Error::invalid("VFIO container: no device number " + std::to_string(index));
  }
  if (!devices_[index]) {
    return Error::invalid("VFIO device " + locations_[index].bdf + " was already taken");
  }
  DeviceFd device = std::move(*devices_[index]);
  devices_[index].reset();
  return device;
}

DmaReport BudgetedContainer::report() const {
  DmaReport r;
  for (const PciDeviceLocation& location : locations_) {
    r.devices.push_back(location.bdf);
  }
  r.avail_at_open = info_.budget;
  r.mode = plan_.decision;
  r.requested_mode = plan_.requested;
  r.reason = plan_.reason;
  if (lazy_ && plan_.decision == Decision::kEager && !lazy_->eager_active()) {
    r.mode = Decision::kLazy;
    r.reason += "; switched to lazy when the guest attached the device to a translated IOMMU "
                "domain";
  }
  r.planned_entries = plan_.planned_entries;
  r.iova_ranges = info_.iova_ranges;
  r.iova_pgsizes = info_.iova_pgsizes;
  r.unmap_all_supported = container_.unmap_all_supported();
  if (lazy_) {
    r.lazy = LazyReport{lazy_->low_water(), lazy_->mappings(), lazy_->counters()};
  }
  if (mapper_) {
    r.entries_used = mapper_->entries().size();
    r.mapped_bytes = mapper_->mapped_bytes();
    r.peak_entries = mapper_->peak_entries();
    r.failed_maps = mapper_->failed_maps();
    if (const auto& last = mapper_->last_reconciliation(); last) {
      r.avail_now = last->now;
      if (last->checked) {
        r.consistent = last->consistent;
      }
    }
  }
  return r;
}

Result<DmaReport> BudgetedContainer::refresh() {
  KEEL_TRY_STATUS(mapper_->reconcile());
  return report();
}

}  // namespace keel::vfio
