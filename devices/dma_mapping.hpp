#pragma once

#include <cstdint>

namespace keel::devices {

// How a request to make a guest mapping work on the host (or to stop it) ended.
enum class DmaStatus {
  kOk,
  kInvalid,      // not guest RAM, misaligned, no access, or clashing with a held mapping
  kUnsupported,  // a kind of mapping the host side does not make (device MMIO)
  kRange,        // outside the IOVA space the host's IOMMU translates
  kNoEntry,      // no such endpoint, or nothing mapped there
  kNoMemory,     // the host's DMA budget (entries or pinned memory) is spent
  kIoError,      // the host failed
};

// What a mapping lets the device do (DmaMapping::access).
inline constexpr std::uint32_t kDmaRead = 1;
inline constexpr std::uint32_t kDmaWrite = 2;
inline constexpr std::uint32_t kDmaMmio = 4;  // the target is device MMIO, not guest RAM

// One mapping of a guest IOMMU domain: [iova, iova + size) -> guest-physical gpa.
struct DmaMapping {
  std::uint64_t iova = 0;
  std::uint64_t size = 0;  // bytes, > 0
  std::uint64_t gpa = 0;
  std::uint32_t access = 0;  // kDmaRead | kDmaWrite (| kDmaMmio)
};

// What an IOMMU emulated for the guest (virtio-iommu) asks of whatever maps for the endpoints
// behind it (the VFIO lazy engine): the IOMMU keeps the guest's domains and which endpoint is
// attached where, and calls the backend once per (endpoint, mapping) that must start or stop
// working on the host; the backend turns the calls into host mappings within its DMA budget.
// Neither side includes the other: both see only this. Endpoint ids are PCI requester ids
// (bus << 8 | devfn). Calls come from the thread that processes the IOMMU's requests.
class DmaMappingBackend {
 public:
  virtual ~DmaMappingBackend() = default;

  // Whether `endpoint` is a device behind the IOMMU (ATTACH to any other is refused).
  virtual bool has_endpoint(std::uint32_t endpoint) const = 0;
  // Make `mapping` work for `endpoint`'s DMA. Anything but kOk means nothing was mapped.
  virtual DmaStatus map(std::uint32_t endpoint, const DmaMapping& mapping) = 0;
  // Stop `mapping` (exactly as mapped before) for `endpoint`.
  virtual DmaStatus unmap(std::uint32_t endpoint, const DmaMapping& mapping) = 0;
};

}  // namespace keel::devices
