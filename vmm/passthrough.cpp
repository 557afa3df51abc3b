#include "vmm/passthrough.hpp"

#include <cstdio>
#include <string>

#include "base/log.hpp"
#include "devices/vfio/pci_sysfs.hpp"
#include "memory/layout.hpp"

namespace keel::vmm {
namespace {

namespace layout = keel::memory::layout;

constexpr std::uint64_t kPciIoStart = 0xc000;  // above the legacy ports
constexpr std::uint64_t kPciIoEnd = 0x10000;

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

Passthrough::Passthrough(const Vm& vm)
    : pci_root_(vm.pci_root),
      router_(vm.kvm),
      slots_(vm.kvm, static_cast<std::uint32_t>(vm.memory.regions().size())),
      bars_(layout::kMmio32Start, layout::kMmio32Start + layout::kMmio32Size,
            layout::mmio64_start(vm.memory.end()),
            layout::mmio64_start(vm.memory.end()) + layout::kMmio64Size, kPciIoStart, kPciIoEnd) {}

Passthrough::~Passthrough() {
  // Devices leave the bus (and drop their BAR slots and interrupt routes) before the container
  // unmaps guest RAM and closes.
  for (const Passed& passed : devices_) {
    (void)pci_root_.remove(passed.slot);
  }
  devices_.clear();
}

Result<std::unique_ptr<Passthrough>> Passthrough::create(const std::vector<DeviceConfig>& devices,
                                                         const Vm& vm) {
  std::unique_ptr<Passthrough> p(new Passthrough(vm));
  vfio::VfioContainerConfig config;
  config.mode = to_vfio(devices.front().dma_mapping);
  for (const DeviceConfig& d : devices) {
    if (d.dma_mapping != devices.front().dma_mapping) {
      return Error::invalid("--device " + d.id + ": dma_mapping differs from --device " +
                            devices.front().id + "; all devices share one VFIO container, give them the same mode");
    }
    config.device_paths.push_back(d.path);
  }
  std::shared_ptr<vfio::VfioSys> sys = vfio::make_kernel_vfio_sys();
  auto container = vfio::VfioContainer::create(sys, vm.memory, config);
  if (!container.ok()) {
    return container.error();
  }
  p->container_ = std::move(container).value();

  // The KVM-VFIO device tells KVM which groups the VM uses (for coherent DMA and interrupts).
  auto kvm_vfio = vm.kvm.create_vfio_device();
  if (!kvm_vfio.ok()) {
    return kvm_vfio.error();
  }
  p->kvm_vfio_ = std::move(kvm_vfio).value();
  for (const vfio::Group& group : p->container_->groups()) {
    KEEL_TRY_STATUS(vm.kvm.add_vfio_group(p->kvm_vfio_.get(), group.fd()));
  }

  for (const DeviceConfig& d : devices) {
    auto location = vfio::resolve_pci_device(d.path);
    if (!location.ok()) {
      return location.error();
    }
    auto device = p->container_->take_device(location->bdf);
    if (!device.ok()) {
      return device.error();
    }
    auto slot = vm.pci_root.free_slot();
    if (!slot.ok()) {
      return slot.error();
    }
    vfio::VfioPciDevice::Wiring wiring{&p->router_, &p->slots_, &vm.mmio, &vm.pio, &p->bars_, *slot};
    auto pci = vfio::VfioPciDevice::create(std::move(device).value(), wiring);
    if (!pci.ok()) {
      return pci.error().wrap("--device " + d.id);
    }
    KEEL_TRY_STATUS(vm.pci_root.add_at(*slot, *pci));
    char guest_bdf[16];
    std::snprintf(guest_bdf, sizeof guest_bdf, "0000:00:%02x.0", *slot);
    p->devices_.push_back(Passed{d.id, *slot, guest_bdf, std::move(pci).value()});
    log::info("vfio", "device passed through",
              {{"id", d.id}, {"bdf", location->bdf}, {"group", location->group}, {"slot", *slot}});
  }
  return p;
}

}  // namespace keel::vmm
