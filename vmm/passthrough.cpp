#include "vmm/passthrough.hpp"

#include <algorithm>
#include <string>

#include "base/hex.hpp"
#include "base/log.hpp"
#include "base/sole_owner.hpp"
#include "base/size.hpp"
#include "devices/vfio/pci_sysfs.hpp"

namespace keel::vmm {

Passthrough::~Passthrough() {
  // Devices leave the bus (and drop their BAR slots and interrupt routes) before the container
  // unmaps guest RAM and closes.
  for (const Passed& passed : devices_) {
    (void)platform_.unplug(passed.slot);
  }
  devices_.clear();
}

namespace {

// Which container each device goes to: the devices not behind the virtual IOMMU share one per
// mapping mode (usually one; a device hot-added with another mode comes back at the next boot in
// a second), each device behind it (iommu=on) gets its own, since the guest may put each in a
// different IOMMU domain. `where[i]` is devices[i]'s container and its index inside it.
struct ContainerPlan {
  std::vector<vfio::BudgetedContainerConfig> configs;
  std::vector<std::pair<std::size_t, std::size_t>> where;
};

// The container of device `d` alone (behind the virtual IOMMU, or hot-added): what it asks for.
vfio::BudgetedContainerConfig own_container(const DeviceConfig& d) {
  vfio::BudgetedContainerConfig config;
  config.mode = d.dma_mapping;
  config.backend = d.backend;
  config.device_paths = {d.path};
  config.behind_viommu = d.iommu;
  config.low_water = d.dma_low_water;
  return config;
}

Result<ContainerPlan> group_into_containers(const std::vector<DeviceConfig>& devices) {
  ContainerPlan plan;
  plan.where.resize(devices.size());
  for (std::size_t i = 0; i < devices.size(); ++i) {
    const DeviceConfig& d = devices[i];
    if (d.iommu) {
      continue;
    }
    auto shared = std::find_if(plan.configs.begin(), plan.configs.end(),
                               [&d](const vfio::BudgetedContainerConfig& c) {
                                 return c.mode == d.dma_mapping && c.backend == d.backend;
                               });
    if (shared == plan.configs.end()) {
      plan.configs.push_back(own_container(d));
      plan.where[i] = {plan.configs.size() - 1, 0};
      continue;
    }
    plan.where[i] = {static_cast<std::size_t>(shared - plan.configs.begin()), shared->device_paths.size()};
    shared->device_paths.push_back(d.path);
  }
  for (std::size_t i = 0; i < devices.size(); ++i) {
    const DeviceConfig& d = devices[i];
    if (!d.iommu) {
      continue;
    }
    plan.configs.push_back(own_container(d));
    plan.where[i] = {plan.configs.size() - 1, 0};
  }
  return plan;
}

}  // namespace

Result<std::unique_ptr<Passthrough>> Passthrough::create(const std::vector<DeviceConfig>& devices,
                                                         const memory::GuestMemory& memory,
                                                         KvmVm& kvm, pci::Platform& platform) {
  std::unique_ptr<Passthrough> p(new Passthrough(memory, kvm, platform));
  p->sys_ = vfio::make_kernel_vfio_sys();

  // The containers, each negotiated, planned and mapped (or handed to its lazy engine).
  KEEL_TRY(ContainerPlan plan, group_into_containers(devices));
  for (std::size_t c = 0; c < plan.configs.size(); ++c) {
    auto container = vfio::BudgetedContainer::create(p->sys_, memory, plan.configs[c]);
    if (!container.ok()) {
      const bool own = plan.configs[c].behind_viommu;
      const auto at = std::find_if(plan.where.begin(), plan.where.end(),
                                   [c](const auto& w) { return w.first == c; });
      return own ? container.error().wrap("device " + devices[at - plan.where.begin()].id)
                 : container.error();
    }
    p->containers_.push_back(std::move(container).value());
  }

  // The KVM-VFIO device tells KVM which groups or device cdevs the VM uses (for coherent DMA and
  // interrupts).
  KEEL_TRY(p->kvm_vfio_, kvm.create_vfio_device());
  for (const auto& container : p->containers_) {
    KEEL_TRY_STATUS(p->set_groups(*container, true));
  }

  // Each function on the platform, and behind the virtual IOMMU where asked.
  for (std::size_t i = 0; i < devices.size(); ++i) {
    KEEL_TRY_STATUS(p->pass(devices[i], plan.where[i].first, plan.where[i].second));
  }
  return p;
}

Status Passthrough::set_groups(const vfio::BudgetedContainer& container, bool attached) {
  for (const int fd : container.kvm_files()) {
    KEEL_TRY_STATUS(kvm_.set_vfio_file(kvm_vfio_.get(), fd, attached));
  }
  return ok_status();
}

Result<std::uint8_t> Passthrough::pass(const DeviceConfig& d, std::size_t c, std::size_t k) {
  vfio::BudgetedContainer& container = *containers_[c];
  const vfio::PciDeviceLocation& location = container.locations()[k];
  KEEL_TRY(vfio::DeviceFd device, container.take_device(k));
  KEEL_TRY(const std::uint8_t slot, platform_.free_slot());
  KEEL_TRY_WRAP(auto pci, vfio::VfioPciDevice::create(std::move(device), platform_, slot),
                "device " + d.id);
  KEEL_TRY_STATUS(platform_.plug(slot, pci));
  if (d.iommu) {  // a container behind the virtual IOMMU always has a lazy engine
    backend_.add_endpoint(pci::requester_id(slot), *container.lazy());
  }
  devices_.push_back(Passed{d.id, slot, d.iommu, c, pci});
  log::info("vfio", "device passed through",
            {{"id", d.id},
             {"bdf", location.bdf},
             {"group", location.group},
             {"slot", slot},
             {"iommu", d.iommu}});
  return slot;
}

Result<std::uint8_t> Passthrough::hot_add(const DeviceConfig& d) {
  const std::string where = "device " + d.id;
  if (d.iommu) {
    return Error::not_supported(where +
                                ": iommu=on cannot be hot-added; the guest learns the virtual "
                                "IOMMU's endpoints from the VIOT at boot: add it before vm.boot, "
                                "or without iommu=on");
  }
  KEEL_TRY_WRAP(auto container, vfio::BudgetedContainer::create(sys_, memory_, own_container(d)),
                where);
  Status attached = set_groups(*container, true);
  if (!attached.ok()) {
    (void)set_groups(*container, false);
    return attached.error().wrap(where);
  }
  {
    // Memory plugged since boot: the new container maps it as the others did.
    std::lock_guard lock(dma_mutex_);
    if (container->lazy() == nullptr) {
      for (const auto& [gpa, size] : plugged_) {
        Status mapped = container->mapper().map(
            gpa, size, reinterpret_cast<std::uint64_t>(memory_.translate(gpa, size)),
            "hot-plugged RAM");
        if (!mapped.ok()) {
          (void)set_groups(*container, false);
          return mapped.error().wrap(where + ": hot-plugged RAM at " + hex(gpa));
        }
      }
    }
    containers_.push_back(std::move(container));
  }
  auto slot = pass(d, containers_.size() - 1, 0);
  if (!slot.ok()) {
    (void)set_groups(*containers_.back(), false);
    std::lock_guard lock(dma_mutex_);
    containers_.pop_back();  // unmaps what it mapped
  }
  return slot;
}

Result<std::uint8_t> Passthrough::removable_slot(const std::string& id) const {
  const auto it = std::find_if(devices_.begin(), devices_.end(),
                               [&id](const Passed& p) { return p.id == id; });
  if (it == devices_.end()) {
    return Error::not_found("no passed-through device with id " + id);
  }
  if (it->behind_viommu) {
    return Error::not_supported("device " + id +
                                " sits behind the virtual IOMMU (iommu=on), which the guest "
                                "learnt of at boot: it cannot be removed while the VM runs; shut "
                                "the VM down first");
  }
  for (const Passed& other : devices_) {
    if (other.container == it->container && other.id != id) {
      return Error::not_supported("device " + id + " shares its VFIO container with device " +
                                  other.id +
                                  ", which keeps it; remove it after shutting the VM down, or "
                                  "hot-add devices you mean to hot-remove (each gets its own)");
    }
  }
  return it->slot;
}

Status Passthrough::remove(std::uint8_t slot) {
  const auto it = std::find_if(devices_.begin(), devices_.end(),
                               [slot](const Passed& p) { return p.slot == slot; });
  if (it == devices_.end()) {
    return Error::not_found("no passed-through device in slot " + std::to_string(slot));
  }
  const std::size_t c = it->container;
  const std::string id = it->id;
  // A guest may eject any slot itself; a container that serves other devices (or the virtual
  // IOMMU's endpoint) stays, only the function goes.
  const bool alone = removable_slot(id).ok();
  (void)platform_.unplug(slot);
  if (!wait_sole_owner(it->device)) {
    log::warn("vfio", "a vCPU still holds the removed device", {{"id", id}});
  }
  if (alone) {
    Status detached = set_groups(*containers_[c], false);
    if (!detached.ok()) {
      log::warn("vfio", "KVM-VFIO group removal failed",
                {{"id", id}, {"error", detached.error().message()}});
    }
  }
  devices_.erase(it);  // closes the device (its BARs and interrupts go with it)
  if (alone) {
    {
      std::lock_guard lock(dma_mutex_);
      containers_.erase(containers_.begin() + static_cast<std::ptrdiff_t>(c));  // unmaps all
    }
    for (Passed& p : devices_) {
      if (p.container > c) {
        --p.container;
      }
    }
  }
  log::info("vfio", "device removed", {{"id", id}, {"slot", slot}, {"container_released", alone}});
  return ok_status();
}

Status Passthrough::ram_plugged(std::uint64_t gpa, std::uint64_t size) {
  std::lock_guard lock(dma_mutex_);
  const auto host = reinterpret_cast<std::uint64_t>(memory_.translate(gpa, size));
  if (host == 0) {
    return Error::invalid("plugged range " + hex(gpa) + "+" + hex(size) + " is not guest memory");
  }
  std::vector<vfio::BudgetedContainer*> mapped;
  for (const auto& container : containers_) {
    if (container->lazy() != nullptr) {
      continue;
    }
    Status s = container->mapper().map(gpa, size, host, "hot-plugged RAM");
    if (!s.ok()) {
      for (vfio::BudgetedContainer* done : mapped) {
        (void)done->mapper().unmap(gpa);
      }
      const std::vector<std::string>& devs = container->report().devices;
      return s.error().wrap("hot-plugged RAM at " + hex(gpa) + " (" + format_size(size) +
                            ") for the VFIO container of " + (devs.empty() ? "?" : devs.front()));
    }
    mapped.push_back(container.get());
  }
  plugged_[gpa] = size;
  return ok_status();
}

Status Passthrough::ram_unplugged(std::uint64_t gpa, std::uint64_t size) {
  std::lock_guard lock(dma_mutex_);
  const std::uint64_t end = gpa + size;
  const bool eager = std::any_of(containers_.begin(), containers_.end(),
                                 [](const auto& c) { return c->lazy() == nullptr; });
  std::vector<std::uint64_t> whole;
  for (const auto& [start, length] : plugged_) {
    const bool overlaps = start < end && gpa < start + length;
    if (!overlaps) {
      continue;
    }
    if ((start < gpa || start + length > end) && eager) {
      return Error::not_supported("unplug of " + hex(gpa) + "+" + hex(size) + " cuts the range " +
                                  hex(start) + "+" + hex(length) +
                                  " that an eager container maps as one entry (neither type1 "
                                  "nor iommufd splits one); the guest keeps it");
    }
    whole.push_back(start);
  }
  for (std::uint64_t start : whole) {
    for (const auto& container : containers_) {
      if (container->lazy() != nullptr) {
        continue;
      }
      // A failed unmap keeps the range: its memory must not be given back while a device may
      // still reach it.
      KEEL_TRY_STATUS_WRAP(container->mapper().unmap(start),
                           "unplugged RAM at " + hex(start) + " stays mapped");
    }
    const std::uint64_t length = plugged_[start];
    plugged_.erase(start);
    // Without an eager container, a range cut by the unplug keeps its other parts.
    if (start < gpa) {
      plugged_[start] = gpa - start;
    }
    if (start + length > end) {
      plugged_[end] = start + length - end;
    }
  }
  return ok_status();
}

void Passthrough::watch_low_water(const EventSink& events) {
  for (const auto& container : containers_) {
    vfio::LazyDma* lazy = container->lazy();
    if (lazy == nullptr) {
      continue;
    }
    const std::vector<std::string> devices = container->report().devices;
    const std::uint32_t low_water = lazy->low_water();
    lazy->set_low_water_listener([events, devices, low_water](bool reached, std::uint64_t used) {
      events("dma", reached ? "low-water" : "low-water-cleared",
             {{"devices", devices}, {"entries_used", used}, {"low_water", low_water}});
    });
  }
}

Result<std::optional<std::uint64_t>> Passthrough::eager_headroom() {
  std::lock_guard lock(dma_mutex_);
  std::optional<std::uint64_t> headroom;
  for (const auto& container : containers_) {
    if (container->lazy() != nullptr) {
      continue;
    }
    KEEL_TRY(const vfio::DmaReport report, container->refresh());
    const vfio::DmaBudget budget = report.avail_now.value_or(report.avail_at_open);
    if (budget.source != vfio::AvailSource::kCapability) {
      continue;  // no count to run out of
    }
    headroom = std::min<std::uint64_t>(headroom.value_or(budget.avail), budget.avail);
  }
  return headroom;
}

std::vector<vfio::DmaReport> Passthrough::dma_reports() const {
  std::lock_guard lock(dma_mutex_);
  std::vector<vfio::DmaReport> reports;
  for (const auto& container : containers_) {
    reports.push_back(container->report());
  }
  return reports;
}

Result<std::vector<vfio::DmaReport>> Passthrough::refresh_dma_reports() {
  std::lock_guard lock(dma_mutex_);
  std::vector<vfio::DmaReport> reports;
  for (const auto& container : containers_) {
    KEEL_TRY(auto report, container->refresh());
    reports.push_back(std::move(report));
  }
  return reports;
}

std::vector<Passthrough::ViommuEndpoint> Passthrough::viommu_endpoints() const {
  std::lock_guard lock(dma_mutex_);
  std::vector<ViommuEndpoint> endpoints;
  for (const Passed& passed : devices_) {
    if (passed.behind_viommu) {
      const vfio::DmaReport report = containers_[passed.container]->report();
      endpoints.push_back({pci::requester_id(passed.slot), report.iova_ranges, report.iova_pgsizes});
    }
  }
  return endpoints;
}

bool Passthrough::LockedBackend::has_endpoint(std::uint32_t endpoint) const {
  std::lock_guard lock(mutex_);
  return inner_.has_endpoint(endpoint);
}

devices::DmaStatus Passthrough::LockedBackend::map(std::uint32_t endpoint,
                                                    const devices::DmaMapping& m) {
  std::lock_guard lock(mutex_);
  return inner_.map(endpoint, m);
}

devices::DmaStatus Passthrough::LockedBackend::unmap(std::uint32_t endpoint,
                                                      const devices::DmaMapping& m) {
  std::lock_guard lock(mutex_);
  return inner_.unmap(endpoint, m);
}

}  // namespace keel::vmm
