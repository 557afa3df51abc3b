#pragma once

#include <linux/virtio_iommu.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "devices/dma_mapping.hpp"

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


// An inclusive address range [start, end]: the form virtio-iommu uses everywhere, so the full
// 64-bit space is expressible.
struct AddressRange {
  std::uint64_t start = 0;
  std::uint64_t end = 0;
};

// A reserved IOVA region reported by PROBE (VIRTIO_IOMMU_PROBE_T_RESV_MEM); `end` inclusive.
struct ReservedRegion {
  std::uint64_t start = 0;
  std::uint64_t end = 0;
  std::uint8_t subtype = VIRTIO_IOMMU_RESV_MEM_T_RESERVED;  // or VIRTIO_IOMMU_RESV_MEM_T_MSI
};

// The x86 MSI doorbell window: the guest's interrupt writes, never remapped by a MAP.
inline constexpr ReservedRegion kX86MsiWindow{0xfee00000, 0xfeefffff, VIRTIO_IOMMU_RESV_MEM_T_MSI};

// The holes between the host's valid IOVA ranges (VFIO's IOVA_RANGE capability), over the whole
// 64-bit space, as RESV_MEM_T_RESERVED regions. Ranges may come unsorted and may touch.
std::vector<ReservedRegion> iova_holes(std::span<const AddressRange> valid);

struct VirtioIommuConfig {
  // The least significant bit is the mapping granule (4 KiB by default).
  std::uint64_t page_size_mask = 0xfffffffffffff000;
  // IOVAs the guest may map (F_INPUT_RANGE); set it to what the host IOMMU translates.
  AddressRange input_range{0, ~std::uint64_t{0}};
  // Domain ids the guest may use (F_DOMAIN_RANGE).
  std::uint32_t domain_first = 0;
  std::uint32_t domain_last = ~std::uint32_t{0};
  // Bytes of PROBE properties (config field probe_size); every endpoint's list must fit.
  std::uint32_t probe_size = 512;
  // Reported for every endpoint. At most one MSI region per endpoint; RESERVED regions may
  // overlap each other and the MSI window (they are merged, and the MSI region wins).
  // (Built by count, not from an initializer list: GCC 12 at -O3 warns, falsely, that the list's
  // temporary array may be used uninitialized.)
  std::vector<ReservedRegion> reserved = std::vector<ReservedRegion>(1, kX86MsiWindow);
  // Reported for one endpoint in addition to `reserved` (e.g. its container's IOVA holes).
  std::map<std::uint32_t, std::vector<ReservedRegion>> endpoint_reserved;
};

// What the device did, for vm.counters.
struct VirtioIommuCounters {
  // Requests by type: [0] unknown type or no complete head, [1..5] ATTACH, DETACH, MAP, UNMAP,
  // PROBE (VIRTIO_IOMMU_T_*).
  std::array<std::uint64_t, 6> requests{};
  // Answers by status (VIRTIO_IOMMU_S_*), and requests returned with nothing written.
  std::array<std::uint64_t, 9> answers{};
  std::uint64_t unanswered = 0;
  std::uint64_t backend_map_failures = 0;    // backend.map refused (the status went to the guest)
  std::uint64_t backend_unmap_failures = 0;  // backend.unmap failed (the host may still map it)
  std::uint64_t rollbacks = 0;               // backend.unmap calls undoing part of a failed request
};

// The virtio-iommu device (virtio 1.2 §5.13) without its transport: feature bits, config space
// and the request queue's requests, turned into calls on an devices::DmaMappingBackend for each endpoint.
//
// Offers INPUT_RANGE, DOMAIN_RANGE, MAP_UNMAP and PROBE. It does not offer BYPASS (superseded)
// nor BYPASS_CONFIG: an endpoint attached to no domain is not in bypass, and the device asks the
// backend for nothing on its behalf (its container holds no guest mapping for it; only an eager
// plan the lazy engine has not yet given back still reaches guest RAM). ATTACH_F_BYPASS is
// rejected with S_INVAL as an unknown flag. Linux then builds identity domains from MAP
// requests, which the lazy engine serves from its eager entries. Nor MMIO: MAP_F_MMIO is
// rejected with S_INVAL; the MSI window is reported as a RESV_MEM_T_MSI region instead, so the
// guest never maps a doorbell.
//
// Answers beyond the obvious ones: ATTACH to a domain outside domain_range is S_RANGE, and to a
// domain holding a mapping inside the endpoint's reserved regions S_UNSUPP. MAP: unknown flags
// S_INVAL, no such domain S_NOENT, virt_start > virt_end S_INVAL, misaligned to the granule,
// outside input_range, 2^64 bytes, a physical end past 2^64 or on a reserved region of an
// attached endpoint S_RANGE, overlapping a mapping of the domain S_INVAL; then the backend's
// answer for each endpoint, rolled back on the others when one refuses. UNMAP: nonzero reserved
// S_INVAL, a mapping only partly inside the range S_RANGE (nothing removed). DETACH of an
// endpoint not attached to that domain S_INVAL. A backend unmap that fails is counted and
// logged; UNMAP and DETACH then answer S_DEVERR, the mapping forgotten all the same.
//
// Domains: created by the first ATTACH to them; a domain whose last endpoint leaves (DETACH, or
// ATTACH elsewhere) ceases to exist with its mappings, as the spec says and as Linux expects:
// its driver keeps the mappings and replays them when it attaches the domain again. ATTACH of an
// endpoint already attached (even to the same domain) is a DETACH followed by the ATTACH.
//
// Not thread-safe: one request queue, whose requests one thread handles at a time; counters and
// state are read from that thread too (Keel's VMM thread).
class VirtioIommu {
 public:
  static constexpr std::size_t kConfigSize = sizeof(virtio_iommu_config);

  // Checks the configuration (a granule, ordered ranges, regions that fit probe_size) and
  // normalizes the reserved regions. The backend must outlive the device.
  static Result<std::unique_ptr<VirtioIommu>> create(VirtioIommuConfig config,
                                                     devices::DmaMappingBackend& backend);
  VirtioIommu(const VirtioIommu&) = delete;
  VirtioIommu& operator=(const VirtioIommu&) = delete;

  // Device-type feature bits (bits 0-23); the transport adds VIRTIO_F_VERSION_1, which Linux
  // requires.
  std::uint64_t device_features() const;

  // struct virtio_iommu_config, little-endian. Bytes past its end read as zero; writes are
  // ignored (the driver may write nothing without BYPASS_CONFIG).
  void read_config(std::uint64_t offset, std::span<std::uint8_t> data) const;
  void write_config(std::uint64_t offset, std::span<const std::uint8_t> data);

  // Handles one request of the request queue: `in` is its device-readable part, `out` its
  // device-writable part. Returns the bytes written from the start of `out` (the used length):
  //   - ATTACH, DETACH, MAP, UNMAP: the tail at out[0..4), 4.
  //   - PROBE: properties (zero-filled) in out[0..probe_size), the tail after them,
  //     probe_size + 4. With room for less: S_INVAL in the last 4 bytes of `out`, zeros before,
  //     out.size().
  //   - `out` too small for the tail, or an unknown type: nothing is done or written, 0 (the
  //     spec's answer; the driver treats a zero used length as a failure).
  //   - fewer than 4 readable bytes (no complete head): S_DEVERR.
  //   - readable part too short for its type: S_INVAL, nothing done. Extra bytes are ignored.
  std::size_t handle(std::span<const std::uint8_t> in, std::span<std::uint8_t> out);

  // Device reset: every endpoint is detached (its mappings released through the backend) and
  // every domain goes. Counters stay.
  void reset();
  // Detaches `endpoint` if attached, releasing its mappings (before it leaves the backend, e.g.
  // on hot-unplug). Its domain goes if it was the last endpoint.
  void detach_endpoint(std::uint32_t endpoint);

  // State, for vm.counters, tests and the fuzzer.
  const VirtioIommuCounters& counters() const { return counters_; }
  std::map<std::uint32_t, std::size_t> mappings_per_domain() const;
  std::map<std::uint32_t, std::uint32_t> attached_endpoints() const;  // endpoint -> domain
  std::vector<devices::DmaMapping> mappings(std::uint32_t domain) const;     // by IOVA; none if unknown
  // The PROBE regions of `endpoint` after normalization (sorted, disjoint).
  const std::vector<ReservedRegion>& reserved_regions(std::uint32_t endpoint) const;
  // counters() and the state as flat named numbers: requests_attach, status_ok, unanswered,
  // domains, mappings, endpoints_attached, domain_<id>_mappings, endpoint_<id>_domain, ...
  std::map<std::string, std::uint64_t> named_counters() const;

 private:
  struct Mapping {
    std::uint64_t last = 0;  // inclusive
    std::uint64_t phys = 0;
    std::uint32_t flags = 0;
  };
  struct Domain {
    std::map<std::uint64_t, Mapping> mappings;  // by first IOVA, disjoint
    std::set<std::uint32_t> endpoints;
  };

  VirtioIommu(VirtioIommuConfig config, devices::DmaMappingBackend& backend,
              std::vector<ReservedRegion> default_regions,
              std::map<std::uint32_t, std::vector<ReservedRegion>> endpoint_regions);

  IommuStatus attach(std::span<const std::uint8_t> in);
  IommuStatus detach(std::span<const std::uint8_t> in);
  IommuStatus map(std::span<const std::uint8_t> in);
  IommuStatus unmap(std::span<const std::uint8_t> in);
  IommuStatus probe(std::span<const std::uint8_t> in, std::span<std::uint8_t> properties);

  // Detaches `endpoint` if attached: unmaps its domain's mappings for it and removes a domain
  // left empty. False if a backend unmap failed.
  bool leave_domain(std::uint32_t endpoint);
  void unmap_for(std::uint32_t endpoint, const devices::DmaMapping& mapping, bool rollback, bool& ok);
  bool overlaps_reserved(std::uint32_t endpoint, std::uint64_t first, std::uint64_t last) const;
  void count_answer(IommuStatus status);

  VirtioIommuConfig config_;
  devices::DmaMappingBackend& backend_;
  std::uint64_t granule_;
  std::vector<ReservedRegion> default_regions_;
  std::map<std::uint32_t, std::vector<ReservedRegion>> endpoint_regions_;
  std::map<std::uint32_t, Domain> domains_;
  std::map<std::uint32_t, std::uint32_t> endpoint_domain_;
  VirtioIommuCounters counters_;
};

}  // namespace keel::virtio
