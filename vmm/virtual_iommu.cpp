#include "vmm/virtual_iommu.hpp"

#include <cstdio>

#include "base/hex.hpp"
#include "base/log.hpp"
#include "devices/virtio/virtio_iommu.hpp"
#include "devices/virtio/virtio_iommu_device.hpp"

namespace keel::vmm {
namespace {

constexpr std::uint64_t kGranule = 0x1000;

// The IOVA space the guest may use: from the lowest valid IOVA of any endpoint's host IOMMU to
// the highest (the holes between are reserved per endpoint), all of it when none reported.
virtio::AddressRange input_range(const std::vector<Passthrough::ViommuEndpoint>& endpoints) {
  virtio::AddressRange range{~std::uint64_t{0}, 0};
  for (const auto& e : endpoints) {
    if (e.iova_ranges.empty()) {
      return {0, ~std::uint64_t{0}};
    }
    for (const vfio::IovaRange& r : e.iova_ranges) {
      range.start = std::min(range.start, r.start);
      range.end = std::max(range.end, r.last);
    }
  }
  return range;
}

}  // namespace

Result<std::unique_ptr<VirtualIommu>> VirtualIommu::create(Passthrough& passthrough,
                                                           const memory::GuestMemory& memory,
                                                           devices::PciRoot& pci_root,
                                                           devices::Bus& mmio) {
  const std::vector<Passthrough::ViommuEndpoint> endpoints = passthrough.viommu_endpoints();
  if (endpoints.empty()) {
    return Error::invalid("virtual IOMMU: no device is behind it (iommu=on)");
  }
  virtio::VirtioIommuConfig config;
  config.input_range = input_range(endpoints);
  std::uint64_t pgsizes = ~std::uint64_t{0};
  for (const auto& e : endpoints) {
    pgsizes &= e.iova_pgsizes != 0 ? e.iova_pgsizes : ~(kGranule - 1);
    std::vector<virtio::AddressRange> valid;
    for (const vfio::IovaRange& r : e.iova_ranges) {
      valid.push_back({r.start, r.last});
    }
    if (!valid.empty()) {
      config.endpoint_reserved[e.requester_id] = virtio::iova_holes(valid);
    }
  }
  // The guest maps in units of the smallest page the host IOMMU takes, at least 4 KiB.
  config.page_size_mask = pgsizes & ~(kGranule - 1);
  if (config.page_size_mask == 0) {
    config.page_size_mask = ~(kGranule - 1);
  }
  auto iommu = virtio::VirtioIommu::create(std::move(config), passthrough.iommu_backend());
  if (!iommu.ok()) {
    return iommu.error().wrap("virtual IOMMU");
  }
  auto slot = pci_root.free_slot();
  if (!slot.ok()) {
    return slot.error().wrap("virtual IOMMU");
  }
  auto bar = passthrough.bars().allocate(virtio::pci_layout::kBarSize, false, true);
  if (!bar.ok()) {
    return bar.error().wrap("virtual IOMMU BAR");
  }
  auto device = virtio::VirtioPciDevice::create(
      std::make_unique<virtio::VirtioIommuDevice>(std::move(iommu).value()), memory,
      virtio::VirtioPciDevice::Wiring{&passthrough.router(), &mmio, *bar});
  if (!device.ok()) {
    return device.error().wrap("virtual IOMMU");
  }
  std::unique_ptr<VirtualIommu> v(new VirtualIommu(pci_root, *slot));
  KEEL_TRY_STATUS(pci_root.add_at(*slot, *device));
  v->device_ = std::move(device).value();
  v->viot_.iommu_bdf = static_cast<std::uint16_t>(*slot << 3);
  std::string behind;
  for (const auto& e : endpoints) {
    v->viot_.endpoint_bdfs.push_back(e.requester_id);
    char bdf[16];
    std::snprintf(bdf, sizeof bdf, "00:%02x.%x", e.requester_id >> 3, e.requester_id & 7);
    behind += (behind.empty() ? "" : ",") + std::string(bdf);
  }
  log::info("viommu", "virtual IOMMU",
            {{"guest_bdf", v->guest_bdf()}, {"bar", hex(*bar)}, {"endpoints", behind}});
  return v;
}

VirtualIommu::~VirtualIommu() { (void)pci_root_.remove(slot_); }

std::string VirtualIommu::guest_bdf() const {
  char bdf[16];
  std::snprintf(bdf, sizeof bdf, "0000:00:%02x.0", slot_);
  return bdf;
}

std::map<std::string, std::uint64_t> VirtualIommu::counters() const {
  std::map<std::string, std::uint64_t> all = device_->counters();
  device_->with_device([&](virtio::VirtioDevice& d) {
    for (const auto& [name, value] :
         static_cast<virtio::VirtioIommuDevice&>(d).iommu().named_counters()) {
      all[name] = value;
    }
  });
  return all;
}

}  // namespace keel::vmm
