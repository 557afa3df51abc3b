#include "vmm/virtual_iommu.hpp"

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
                                                           pci::Platform& platform) {
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
  KEEL_TRY_WRAP(auto iommu,
                virtio::VirtioIommu::create(std::move(config), passthrough.iommu_backend()),
                "virtual IOMMU");
  KEEL_TRY_WRAP(const std::uint8_t slot, platform.free_slot(), "virtual IOMMU");
  KEEL_TRY_WRAP(
      auto device,
      virtio::VirtioPciDevice::create(std::make_unique<virtio::VirtioIommuDevice>(std::move(iommu)),
                                      memory, platform),
      "virtual IOMMU");
  std::unique_ptr<VirtualIommu> v(new VirtualIommu(platform, slot));
  KEEL_TRY_STATUS(platform.plug(slot, device));
  v->device_ = std::move(device);
  v->viot_.iommu_bdf = pci::requester_id(slot);
  std::string behind;
  for (const auto& e : endpoints) {
    v->viot_.endpoint_bdfs.push_back(e.requester_id);
    behind += (behind.empty() ? "" : ",") + pci::guest_bdf(static_cast<std::uint8_t>(e.requester_id >> 3));
  }
  log::info("viommu", "virtual IOMMU",
            {{"guest_bdf", v->guest_bdf()}, {"bar", hex(v->device_->bar_address())}, {"endpoints", behind}});
  return v;
}

VirtualIommu::~VirtualIommu() { (void)platform_.unplug(slot_); }

std::string VirtualIommu::guest_bdf() const { return pci::guest_bdf(slot_); }

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
