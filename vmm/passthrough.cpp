#include "vmm/passthrough.hpp"

#include <string>

#include "base/log.hpp"
#include "devices/vfio/pci_sysfs.hpp"

namespace keel::vmm {
namespace {

vfio::MappingMode to_vfio(DmaMapping mode) {
  switch (mode) {
    case DmaMapping::kEager:
      return vfio::MappingMode::kEager;
    case DmaMapping::kLazy:
      return vfio::MappingMode::kLazy;
    case DmaMapping::kAuto:
      break;
  }
  return vfio::MappingMode::kAuto;
}

}  // namespace

Passthrough::~Passthrough() {
  // Devices leave the bus (and drop their BAR slots and interrupt routes) before the container
  // unmaps guest RAM and closes.
  for (const Passed& passed : devices_) {
    (void)platform_.unplug(passed.slot);
  }
  devices_.clear();
}

Result<std::unique_ptr<Passthrough>> Passthrough::create(const std::vector<DeviceConfig>& devices,
                                                         const memory::GuestMemory& memory,
                                                         KvmVm& kvm, pci::Platform& platform) {
  std::unique_ptr<Passthrough> p(new Passthrough(platform));
  std::shared_ptr<vfio::VfioSys> sys = vfio::make_kernel_vfio_sys();

  // The shared container first (devices not behind the virtual IOMMU), then one per device
  // behind it; `container_of[i]` is where devices[i] went.
  std::vector<std::size_t> container_of(devices.size());
  vfio::VfioContainerConfig shared;
  const DeviceConfig* first_shared = nullptr;
  for (std::size_t i = 0; i < devices.size(); ++i) {
    const DeviceConfig& d = devices[i];
    if (d.iommu) {
      continue;
    }
    if (first_shared == nullptr) {
      first_shared = &d;
      shared.mode = to_vfio(d.dma_mapping);
    } else if (d.dma_mapping != first_shared->dma_mapping) {
      return Error::invalid("--device " + d.id + ": dma_mapping differs from --device " +
                            first_shared->id +
                            "; devices not behind the virtual IOMMU share one VFIO container, "
                            "give them the same mode (or iommu=on)");
    }
    shared.device_paths.push_back(d.path);
    container_of[i] = 0;
  }
  if (first_shared != nullptr) {
    auto container = vfio::VfioContainer::create(sys, memory, shared);
    if (!container.ok()) {
      return container.error();
    }
    p->containers_.push_back(std::move(container).value());
  }
  for (std::size_t i = 0; i < devices.size(); ++i) {
    const DeviceConfig& d = devices[i];
    if (!d.iommu) {
      continue;
    }
    vfio::VfioContainerConfig own;
    own.mode = to_vfio(d.dma_mapping);
    own.device_paths.push_back(d.path);
    own.behind_viommu = true;
    own.low_water = d.dma_low_water;
    auto container = vfio::VfioContainer::create(sys, memory, own);
    if (!container.ok()) {
      return container.error().wrap("--device " + d.id);
    }
    container_of[i] = p->containers_.size();
    p->containers_.push_back(std::move(container).value());
  }

  // The KVM-VFIO device tells KVM which groups the VM uses (for coherent DMA and interrupts).
  auto kvm_vfio = kvm.create_vfio_device();
  if (!kvm_vfio.ok()) {
    return kvm_vfio.error();
  }
  p->kvm_vfio_ = std::move(kvm_vfio).value();
  for (const auto& container : p->containers_) {
    for (const vfio::Group& group : container->groups()) {
      KEEL_TRY_STATUS(kvm.add_vfio_group(p->kvm_vfio_.get(), group.fd()));
    }
  }

  for (std::size_t i = 0; i < devices.size(); ++i) {
    const DeviceConfig& d = devices[i];
    vfio::VfioContainer& container = *p->containers_[container_of[i]];
    auto location = vfio::resolve_pci_device(d.path);
    if (!location.ok()) {
      return location.error();
    }
    auto device = container.take_device(location->bdf);
    if (!device.ok()) {
      return device.error();
    }
    KEEL_TRY(const std::uint8_t slot, platform.free_slot());
    KEEL_TRY_WRAP(auto pci, vfio::VfioPciDevice::create(std::move(device).value(), platform, slot),
                  "--device " + d.id);
    KEEL_TRY_STATUS(platform.plug(slot, pci));
    if (d.iommu) {  // a container behind the virtual IOMMU always has a lazy engine
      p->backend_.add_endpoint(pci::requester_id(slot), *container.lazy());
    }
    p->devices_.push_back(Passed{d.id, slot, d.iommu, container_of[i], pci});
    log::info("vfio", "device passed through",
              {{"id", d.id},
               {"bdf", location->bdf},
               {"group", location->group},
               {"slot", slot},
               {"iommu", d.iommu}});
  }
  return p;
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
    auto report = container->refresh();
    if (!report.ok()) {
      return report.error();
    }
    reports.push_back(std::move(report).value());
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
