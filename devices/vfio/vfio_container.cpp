#include "devices/vfio/vfio_container.hpp"

#include <algorithm>

namespace keel::vfio {

Result<std::unique_ptr<VfioContainer>> VfioContainer::create(const std::shared_ptr<VfioSys>& sys,
                                                             const memory::GuestMemory& memory,
                                                             const VfioContainerConfig& config) {
  if (config.device_paths.empty()) {
    return Error::invalid("VFIO container: no devices to pass through");
  }
  std::vector<PciDeviceLocation> locations;
  std::vector<std::string> names;
  for (const auto& path : config.device_paths) {
    auto location = resolve_pci_device(path);
    if (!location) {
      return location.error();
    }
    if (std::find(names.begin(), names.end(), location->bdf) != names.end()) {
      return Error::invalid("PCI device " + location->bdf + " is named twice");
    }
    names.push_back(location->bdf);
    locations.push_back(std::move(*location));
  }
  const std::string what = "VFIO container for " + [&names] {
    std::string list;
    for (const auto& name : names) {
      list += (list.empty() ? "" : ", ") + name;
    }
    return list;
  }();

  auto container = Container::open(sys);
  if (!container) {
    return container.error();
  }
  std::vector<Group> groups;
  for (const auto& location : locations) {
    const bool known = std::any_of(groups.begin(), groups.end(), [&](const Group& group) {
      return group.number() == location.group;
    });
    if (known) {
      continue;
    }
    auto group = Group::open(sys, location.group, config.sysfs_root);
    if (!group) {
      return group.error().wrap("PCI device " + location.bdf);
    }
    KEEL_TRY_STATUS(container->attach(*group));
    groups.push_back(std::move(*group));
  }
  auto info = read_iommu_info(*sys, container->fd());
  if (!info) {
    return info.error().wrap(what);
  }
  std::unique_ptr<VfioContainer> self(
      new VfioContainer(std::move(*container), std::move(groups), std::move(*info)));
  self->device_names_ = names;
  for (const auto& location : locations) {
    auto group = std::find_if(self->groups_.begin(), self->groups_.end(),
                              [&](const Group& g) { return g.number() == location.group; });
    auto device = Device::open(sys, *group, location.bdf);
    if (!device) {
      return device.error();
    }
    self->devices_.emplace_back(std::move(*device));
  }

  PlanInput input;
  input.ram = ram_spans(memory);
  input.iova_ranges = self->info_.iova_ranges;
  input.iova_pgsizes = self->info_.iova_pgsizes;
  input.budget = self->info_.budget;
  input.requested = config.mode;
  input.p2p_entries = config.p2p_entries;
  input.hotplug_reserve = config.hotplug_reserve;
  input.behind_viommu = config.behind_viommu;
  if (config.memlock) {
    input.memlock = *config.memlock;
  } else {
    auto memlock = read_memlock_limit();
    if (!memlock) {
      return memlock.error().wrap(what);
    }
    input.memlock = *memlock;
  }
  auto plan = plan_dma(input);
  if (!plan) {
    return plan.error().wrap(what);
  }
  self->plan_ = std::move(*plan);
  if (self->plan_.decision == Decision::kRefuse) {
    return Error::invalid(what + ": " + self->plan_.reason);
  }
  self->mapper_.emplace(sys, self->container_.fd(), self->info_.budget,
                        self->container_.unmap_all_supported());
  if (self->plan_.decision == Decision::kLazy) {
    self->lazy_.emplace(*self->mapper_, memory, config.low_water);
  } else {
    if (auto st = self->mapper_->map_plan(self->plan_); !st) {
      return st.error().wrap(what);
    }
    if (config.behind_viommu) {  // the eager entries serve identity domains until translated
      self->lazy_.emplace(*self->mapper_, memory, config.low_water, /*over_eager=*/true);
    }
  }
  // A mismatch is logged and shown in the report; it does not stop the VM.
  [[maybe_unused]] auto reconciled = self->mapper_->reconcile();
  log_dma_report(self->report());
  return self;
}

Result<Device> VfioContainer::take_device(const std::string& bdf) {
  for (std::size_t i = 0; i < device_names_.size(); ++i) {
    if (device_names_[i] != bdf) {
      continue;
    }
    if (!devices_[i]) {
      return Error::invalid("VFIO device " + bdf + " was already taken");
    }
    Device device = std::move(*devices_[i]);
    devices_[i].reset();
    return device;
  }
  return Error::invalid("VFIO device " + bdf + " is not in this container");
}

DmaReport VfioContainer::report() const {
  DmaReport r;
  r.devices = device_names_;
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

Result<DmaReport> VfioContainer::refresh() {
  auto rec = mapper_->reconcile();
  if (!rec) {
    return rec.error();
  }
  return report();
}

}  // namespace keel::vfio
