#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>

#include "devices/vfio/dma_mapper.hpp"
#include "devices/dma_mapping.hpp"
#include "memory/guest_memory.hpp"

namespace keel::vfio {

// What the lazy engine did with the guest's mappings for one container. Refusals Keel made
// before asking the kernel are counted apart from failures the kernel returned.
struct LazyCounters {
  std::uint64_t maps = 0;             // guest mappings that took a host entry
  std::uint64_t shared_maps = 0;      // the same mapping for another endpoint of the container
  std::uint64_t unmaps = 0;           // guest unmaps that gave a host entry back
  std::uint64_t refused_budget = 0;   // would have eaten into the low-water or progress reserve
  std::uint64_t refused_reserve = 0;  // of those, by the progress reserve (its class held enough)
  std::uint64_t refused_invalid = 0;  // not guest RAM, misaligned, no access, MMIO, or clashing
  std::uint64_t kernel_failures = 0;  // MAP or UNMAP refused by the kernel (DMA_AVAIL re-read)
  std::uint64_t served_by_eager = 0;  // identity mappings the eager plan already covered
};

// The lazy engine for one VFIO container: the guest's own IOMMU driver (through virtio-iommu)
// decides what is mapped, and each guest mapping [iova, iova+size) -> gpa becomes exactly one
// entry of the container at the same IOVA, backed by Keel's host mapping of the guest RAM.
// A guest mapping never spans two RAM regions (they are not contiguous in guest-physical space),
// so one guest request costs one host entry; separate guest mappings are never merged, because
// type1v2 cannot split an entry when the guest later unmaps one of them.
//
// Budget: a MAP that would leave fewer than `low_water` entries free is refused with
// S_NOMEM before the kernel is asked. "Free" is the kernel's count: avail_at_open minus the
// entries Keel holds, or the last DMA_AVAIL re-read when that is lower (another user of the
// container, a changed limit). A kernel ENOSPC that still happens is answered S_NOMEM too; the
// mapper has re-read DMA_AVAIL and reconciled by then, so the next MAP is refused up front. No
// mapping is ever reported to the guest that the kernel does not hold.
//
// Started over an eager plan (the container holds IOVA = GPA entries for all guest RAM), it
// first serves the guest from them: an identity mapping (iova == gpa, as Linux's identity
// domain sends) inside an eager entry needs no host call. The first mapping that is not, the
// guest having attached the device to a translated domain, switches the container to lazy
// mapping: every eager entry is unmapped, and from then on the guest's mappings are the only
// ones. Until that switch the device can reach all guest RAM, as with eager mapping without a
// virtual IOMMU.
//
// Progress: a driver's long-lived mappings must not lock out the short ones it needs to make
// progress. A NIC's driver maps a buffer for every receive descriptor (e1000e: 256) and keeps
// them until packets arrive; with those holding the whole budget, no transmit buffer can be
// mapped, no ARP answer leaves, nothing ever arrives, and the link is dead for good. So the last
// `progress_reserve()` entries (1/8 of the budget, at most 64; none below 32 entries) are held
// back: only a class of mappings that holds fewer than that many may take them. The classes are
// the directions a mapping allows, which is how drivers tell their buffers apart: device-reads
// only (transmit, disk writes), device-writes only (receive, disk reads), both (rings, queues).
//
// Several endpoints of one container share its single IOVA space: the same mapping for a second
// endpoint (the guest put both in one domain) is counted, not mapped twice; a different
// mapping overlapping a held one is refused (S_INVAL): it could not be isolated.
// Not thread-safe: the virtio-iommu request queue calls it from one thread.
class LazyDma {
 public:
  // `over_eager`: the mapper holds the eager plan's entries, which serve identity mappings.
  LazyDma(DmaMapper& mapper, const memory::GuestMemory& memory, std::uint32_t low_water,
          bool over_eager = false)
      : mapper_(mapper), memory_(memory), low_water_(low_water), eager_(over_eager) {}
  LazyDma(const LazyDma&) = delete;
  LazyDma& operator=(const LazyDma&) = delete;

  devices::DmaStatus map(const devices::DmaMapping& mapping);
  devices::DmaStatus unmap(const devices::DmaMapping& mapping);

  // Entries Keel may still take before the reserve; unset when the kernel reports no budget
  // (DMA_AVAIL absent or unlimited): then only a kernel ENOSPC stops a MAP.
  std::optional<std::uint64_t> headroom() const;
  std::uint32_t low_water() const { return low_water_; }
  // The entries held back for classes of mappings that hold fewer than this many (see above).
  std::uint64_t progress_reserve() const;
  // Called (on the mapping thread) when a MAP leaves no headroom above the reserve (true: the
  // low-water mark is reached, further MAPs are refused) and when an UNMAP makes room again.
  using LowWaterListener = std::function<void(bool reached, std::uint64_t entries_used)>;
  void set_low_water_listener(LowWaterListener listener) { on_low_water_ = std::move(listener); }
  const LazyCounters& counters() const { return counters_; }
  std::size_t mappings() const { return held_.size(); }
  // Whether the eager plan still serves the guest (no switch to lazy yet).
  bool eager_active() const { return eager_; }

 private:
  struct Held {
    devices::DmaMapping mapping;
    unsigned users = 0;
    bool by_eager = false;  // served by an eager entry: no host entry of its own
  };
  // A mapping's class for the progress reserve, from its access bits: 0 device-reads only,
  // 1 device-writes only, 2 both.
  static std::size_t access_class(std::uint32_t access);
  // Forgets a held mapping whose host entry is gone.
  void forget(std::map<std::uint64_t, Held>::iterator it);
  // An eager entry covering the identity mapping `m`, if the eager plan is still active.
  bool served_by_eager(const devices::DmaMapping& m) const;
  // Gives the eager entries back so the guest's mappings can be made; false if it cannot.
  devices::DmaStatus switch_to_lazy(const devices::DmaMapping& trigger);
  // The held mapping overlapping [iova, iova + size), if any.
  const Held* overlapping(std::uint64_t iova, std::uint64_t size) const;

  DmaMapper& mapper_;
  const memory::GuestMemory& memory_;
  std::uint32_t low_water_;
  bool eager_;
  std::map<std::uint64_t, Held> held_;  // by IOVA
  std::array<std::uint64_t, 3> class_entries_{};  // host entries held, by access_class
  LazyCounters counters_;
  // Tells the listener when the headroom reaches 0 or leaves it.
  void note_headroom();
  LowWaterListener on_low_water_;
  bool at_low_water_ = false;
};

// The virtio-iommu device's view of the host: each endpoint (PCI requester id) behind the
// virtual IOMMU and the lazy engine of its container.
class LazyIommuBackend final : public devices::DmaMappingBackend {
 public:
  void add_endpoint(std::uint32_t endpoint, LazyDma& dma) { endpoints_[endpoint] = &dma; }

  bool has_endpoint(std::uint32_t endpoint) const override {
    return endpoints_.count(endpoint) != 0;
  }
  devices::DmaStatus map(std::uint32_t endpoint, const devices::DmaMapping& mapping) override;
  devices::DmaStatus unmap(std::uint32_t endpoint, const devices::DmaMapping& mapping) override;

 private:
  std::map<std::uint32_t, LazyDma*> endpoints_;
};

}  // namespace keel::vfio
