#include "devices/vfio/budgeted_container.hpp"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>

#include "base/log.hpp"

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

// Phase 2: which backend, and why (for the report). Auto takes iommufd when /dev/iommu opens
// and every device has its cdev; a backend asked for by name is used or fails with its fix.
struct BackendPick {
  BackendKind kind = BackendKind::kType1;
  std::string reason;
};

Result<BackendPick> pick_backend(VfioSys& sys, const BudgetedContainerConfig& config,
                                 const std::vector<PciDeviceLocation>& locations) {
  switch (config.backend) {
    case BackendChoice::kType1:
      return BackendPick{BackendKind::kType1, "type1 (requested)"};
    case BackendChoice::kIommufd:
      return BackendPick{BackendKind::kIommufd, "iommufd (requested)"};
    case BackendChoice::kAuto:
      break;
  }
  if (auto dev = sys.open(kIommufdPath); !dev) {
    return BackendPick{BackendKind::kType1,
                       dev.error().errno_value() == ENOENT
                           ? "type1 (auto: the host has no " + std::string(kIommufdPath) + ")"
                           : "type1 (auto: " + dev.error().message() + ")"};
  }
  for (const auto& location : locations) {
    auto cdev = find_device_cdev(config.sysfs_root, location.bdf);
    if (!cdev) {
      return BackendPick{BackendKind::kType1, "type1 (auto: " + cdev.error().message() + ")"};
    }
    if (auto opened = sys.open(cdev->string()); !opened) {  // e.g. only the group is Keel's
      return BackendPick{BackendKind::kType1, "type1 (auto: device " + location.bdf + ": " +
                                                  opened.error().message() + ")"};
    }
  }
  return BackendPick{BackendKind::kIommufd,
                     "iommufd (auto: the host has " + std::string(kIommufdPath) +
                         " and every device its cdev)"};
}

// Phase 4: what the plan needs, from guest RAM, the container and the process.
Result<PlanInput> plan_input(const memory::GuestMemory& memory, const IommuInfo& info,
                             const DmaBackend& backend, const BudgetedContainerConfig& config) {
  PlanInput input;
  input.ram = ram_spans(memory);
  input.iova_ranges = info.iova_ranges;
  input.iova_pgsizes = info.iova_pgsizes;
  input.budget = info.budget;
  input.requested = config.mode;
  input.backend = backend.kind();
  input.charged_per_process = backend.charged_per_process();
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

// Type1: the container opened, every device's group attached to it (each group once), the
// budget read (GET_INFO: IOVA ranges, page sizes, DMA_AVAIL), then the device fds.
Status BudgetedContainer::open_type1(const std::shared_ptr<VfioSys>& sys,
                                     const std::filesystem::path& sysfs_root) {
  KEEL_TRY(ContainerFd container, ContainerFd::open(sys));
  container_.emplace(std::move(container));
  for (const auto& location : locations_) {
    const bool known = std::any_of(groups_.begin(), groups_.end(), [&](const Group& group) {
      return group.number() == location.group;
    });
    if (known) {
      continue;
    }
    KEEL_TRY_WRAP(Group group, Group::open(sys, location.group, sysfs_root), "PCI device " + location.bdf);
    KEEL_TRY_STATUS(container_->attach(group));
    groups_.push_back(std::move(group));
    kvm_files_.push_back(groups_.back().fd());
  }
  KEEL_TRY(info_, read_iommu_info(*sys, container_->fd()));
  for (const auto& location : locations_) {
    KEEL_TRY(DeviceFd device, DeviceFd::open(sys, group_of(groups_, location.group), location.bdf));
    devices_.emplace_back(std::move(device));
  }
  backend_ = std::make_unique<Type1DmaBackend>(sys, container_->fd(),
                                               container_->unmap_all_supported());
  return ok_status();
}

// iommufd: /dev/iommu opened and, where Keel may (CAP_SYS_RESOURCE), its pinned memory charged
// to this process as type1 does; a new IO address space; each device's cdev opened, bound and
// attached to it; then the IOVA ranges, which every attached device narrows.
Status BudgetedContainer::open_iommufd(const std::shared_ptr<VfioSys>& sys,
                                       const std::filesystem::path& sysfs_root) {
  KEEL_TRY(Iommufd iommufd, Iommufd::open(sys));
  iommufd_.emplace(std::move(iommufd));
  if (Status per_process = iommufd_->charge_per_process(); !per_process.ok()) {
    log::debug("vfio", "iommufd charges the user's locked memory",
               {{"why", per_process.error().message()}});
  }
  KEEL_TRY(const bool per_process, iommufd_->charged_per_process());
  KEEL_TRY(ioas_, iommufd_->alloc_ioas());
  for (const auto& location : locations_) {
    KEEL_TRY(const std::filesystem::path cdev, find_device_cdev(sysfs_root, location.bdf));
    KEEL_TRY_WRAP(UniqueFd fd, sys->open(cdev.string()), "VFIO device " + location.bdf);
    KEEL_TRY([[maybe_unused]] const std::uint32_t devid,
             bind_device(*sys, fd.get(), *iommufd_, location.bdf));
    KEEL_TRY_STATUS(attach_device(*sys, fd.get(), ioas_, location.bdf));
    // KVM is given a descriptor of the cdev's own: the device's may close first (a hot-add
    // that fails after the device was taken), and KVM must still be told to let it go.
    const int dup = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0);
    if (dup < 0) {
      return Error::from_errno("VFIO device " + location.bdf + ": dup of its cdev for KVM");
    }
    cdev_dups_.emplace_back(dup);
    kvm_files_.push_back(dup);
    KEEL_TRY(DeviceFd device, DeviceFd::adopt(sys, std::move(fd), location.bdf));
    devices_.emplace_back(std::move(device));
  }
  KEEL_TRY(const IoasRanges ranges, iommufd_->iova_ranges(ioas_));
  info_.iova_ranges = ranges.ranges;
  // iommufd maps any length that is a multiple of the alignment: every such page size.
  info_.iova_pgsizes = ranges.alignment == 0 ? 0 : ~(ranges.alignment - 1);
  info_.budget = DmaBudget{AvailSource::kIommufd, 0};
  backend_ = std::make_unique<IommufdDmaBackend>(*iommufd_, ioas_, per_process);
  return ok_status();
}

Result<std::unique_ptr<BudgetedContainer>> BudgetedContainer::create(
    const std::shared_ptr<VfioSys>& sys, const memory::GuestMemory& memory,
    const BudgetedContainerConfig& config) {
  std::unique_ptr<BudgetedContainer> self(new BudgetedContainer());
  KEEL_TRY(self->locations_, locate(config.device_paths));
  const std::string what = describe(self->locations_);
  KEEL_TRY(const BackendPick pick, pick_backend(*sys, config, self->locations_));
  self->backend_reason_ = pick.reason;
  // Phase 3: open and attach, negotiate.
  Status opened = pick.kind == BackendKind::kIommufd ? self->open_iommufd(sys, config.sysfs_root)
                                                     : self->open_type1(sys, config.sysfs_root);
  if (!opened.ok()) {
    return opened.error().wrap(what + ", backend " + pick.reason);
  }
  if (config.low_water != 0 && pick.kind == BackendKind::kIommufd) {
    log::warn("vfio", "dma_low_water has no effect on iommufd: it counts no entries to keep free",
              {{"devices", what}, {"low_water", config.low_water}});
  }
  // Phases 4 and 5: plan against guest RAM and the budget, decide.
  KEEL_TRY_WRAP(PlanInput input, plan_input(memory, self->info_, *self->backend_, config), what);
  self->memlock_ = input.memlock;
  KEEL_TRY_WRAP(self->plan_, plan_dma(input), what);
  if (self->plan_.decision == Decision::kRefuse) {
    return Error::invalid(what + ": " + self->plan_.reason);
  }
  // Phase 6: map eagerly, or hand the container to the lazy engine.
  self->mapper_.emplace(*self->backend_, self->info_.budget);
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
  r.unmap_all_supported = backend_->unmap_all_supported();
  r.backend = std::string(to_string(backend_->kind()));
  r.backend_reason = backend_reason_;
  r.memlock = memlock_;
  r.charged_per_process = backend_->charged_per_process();
  r.pinned_bytes_planned = plan_.pinned_bytes;
  r.binding_limit = plan_.binding_limit;
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
