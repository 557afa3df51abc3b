#pragma once

#include <cstdint>

namespace keel::virtio {

// A virtio-iommu request's answer (VIRTIO_IOMMU_S_* in linux/virtio_iommu.h).
enum class IommuStatus : std::uint8_t {
  kOk = 0,
  kIoErr = 1,
  kUnsupported = 2,
  kDevErr = 3,
  kInvalid = 4,
  kRange = 5,
  kNoEntry = 6,
  kFault = 7,
  kNoMemory = 8,  // also: the host's DMA budget for the endpoint is spent
};

// One mapping of a guest IOMMU domain: [iova, iova + size) -> guest-physical gpa.
struct IommuMapping {
  std::uint64_t iova = 0;
  std::uint64_t size = 0;  // bytes, > 0
  std::uint64_t gpa = 0;
  std::uint32_t flags = 0;  // VIRTIO_IOMMU_MAP_F_READ | _WRITE (| _MMIO)
};

// What the virtio-iommu device asks of the host for the endpoints behind it. The device keeps
// the guest's domains, their mappings and which endpoint is attached where; it calls the
// backend once per (endpoint, mapping) that must start or stop working on the host, so it does
// the fan-out to a domain's endpoints, the replay on ATTACH and the release on DETACH, and rolls
// back the endpoints it already mapped when one fails. The backend (the lazy engine in vmm/)
// turns the calls into VFIO MAP/UNMAP on the endpoint's container, within its DMA budget.
// Endpoint ids are the PCI requester ids the VIOT table gives the guest (bus << 8 | devfn).
// Calls come from the thread that processes the request queue.
class IommuBackend {
 public:
  virtual ~IommuBackend() = default;

  // Whether `endpoint` is a device behind this IOMMU (ATTACH to any other is S_NOENT).
  virtual bool has_endpoint(std::uint32_t endpoint) const = 0;
  // Make `mapping` work for `endpoint`'s DMA. Anything but kOk means nothing was mapped.
  virtual IommuStatus map(std::uint32_t endpoint, const IommuMapping& mapping) = 0;
  // Stop `mapping` (exactly as mapped before) for `endpoint`.
  virtual IommuStatus unmap(std::uint32_t endpoint, const IommuMapping& mapping) = 0;
};

}  // namespace keel::virtio
