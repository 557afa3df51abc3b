#include "devices/vfio/lazy_dma.hpp"


#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>

#include "base/hex.hpp"
#include "base/log.hpp"

namespace keel::vfio {
namespace {

using devices::DmaMapping;
using devices::DmaStatus;

constexpr std::uint64_t kPage = 4096;

// What the guest is told when the kernel refused a MAP.
DmaStatus status_for(MapFailure kind) {
  switch (kind) {
    case MapFailure::kBudget:   // ENOSPC: no DMA entries left
    case MapFailure::kMemlock:  // ENOMEM: the pinning limit
      return DmaStatus::kNoMemory;
    case MapFailure::kOverlap:  // EEXIST: another user of the container holds the range
      return DmaStatus::kInvalid;
    case MapFailure::kOutsideIova:  // EINVAL: outside the host's IOVA ranges
      return DmaStatus::kRange;
    case MapFailure::kOther:
      break;
  }
  return DmaStatus::kIoError;
}

std::string describe(const DmaMapping& m) {
  return "iova " + hex(m.iova) + " size " + hex(m.size) + " gpa " + hex(m.gpa);
}

}  // namespace

std::optional<std::uint64_t> LazyDma::headroom() const {
  const DmaBudget& at_open = mapper_.avail_at_open();
  if (at_open.source != AvailSource::kCapability) {
    return std::nullopt;
  }
  const std::uint64_t held = mapper_.entries().size();
  std::uint64_t free = at_open.avail > held ? at_open.avail - held : 0;
  if (const auto& last = mapper_.last_reconciliation();
      last && last->checked && last->now.source == AvailSource::kCapability) {
    // The kernel's own count as last read, moved by what Keel mapped or unmapped since.
    const std::int64_t now = static_cast<std::int64_t>(last->now.avail) +
                             static_cast<std::int64_t>(last->entries_held) -
                             static_cast<std::int64_t>(held);
    free = std::min<std::uint64_t>(free, now > 0 ? static_cast<std::uint64_t>(now) : 0);
  }
  return free > low_water_ ? free - low_water_ : 0;
}

std::uint64_t LazyDma::progress_reserve() const {
  constexpr std::uint64_t kMinBudget = 32, kMaxReserve = 64;
  const DmaBudget& at_open = mapper_.avail_at_open();
  if (at_open.source != AvailSource::kCapability || at_open.avail < kMinBudget) {
    return 0;
  }
  return std::min<std::uint64_t>(kMaxReserve, at_open.avail / 8);
}

std::size_t LazyDma::access_class(std::uint32_t access) {
  const bool reads = (access & devices::kDmaRead) != 0;
  const bool writes = (access & devices::kDmaWrite) != 0;
  return reads && writes ? 2 : writes ? 1 : 0;
}

const LazyDma::Held* LazyDma::overlapping(std::uint64_t iova, std::uint64_t size) const {
  auto it = held_.upper_bound(iova);
  if (it != held_.begin()) {
    const auto& prev = std::prev(it)->second.mapping;
    if (prev.iova + (prev.size - 1) >= iova) {
      return &std::prev(it)->second;
    }
  }
  if (it != held_.end() && it->first <= iova + (size - 1)) {
    return &it->second;
  }
  return nullptr;
}

DmaStatus LazyDma::map(const DmaMapping& m) {
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  const bool reads = (m.access & devices::kDmaRead) != 0;
  const bool writes = (m.access & devices::kDmaWrite) != 0;
  if ((m.access & devices::kDmaMmio) != 0) {
    ++counters_.refused_invalid;
    return DmaStatus::kUnsupported;  // device MMIO (an MSI doorbell): not guest RAM
  }
  if (m.size == 0 || m.iova > kMax - (m.size - 1) || m.gpa > kMax - (m.size - 1) ||
      m.iova % kPage != 0 || m.gpa % kPage != 0 || m.size % kPage != 0 || (!reads && !writes)) {
    ++counters_.refused_invalid;
    return DmaStatus::kInvalid;
  }
  std::uint8_t* host = memory_.translate(m.gpa, m.size);
  if (host == nullptr) {
    ++counters_.refused_invalid;
    log::debug("vfio", "guest mapping is not guest RAM", {{"mapping", describe(m)}});
    return DmaStatus::kInvalid;
  }
  if (eager_) {
    if (served_by_eager(m)) {
      if (const Held* held = overlapping(m.iova, m.size); held != nullptr) {
        const DmaMapping& h = held->mapping;
        if (h.iova != m.iova || h.size != m.size || h.access != m.access) {
          ++counters_.refused_invalid;
          return DmaStatus::kInvalid;
        }
        ++held_[m.iova].users;
        ++counters_.shared_maps;
        return DmaStatus::kOk;
      }
      held_.emplace(m.iova, Held{m, 1, true});
      ++counters_.served_by_eager;
      return DmaStatus::kOk;
    }
    if (DmaStatus st = switch_to_lazy(m); st != DmaStatus::kOk) {
      return st;
    }
  }
  if (const Held* held = overlapping(m.iova, m.size)) {
    const DmaMapping& h = held->mapping;
    if (h.iova == m.iova && h.size == m.size && h.gpa == m.gpa && h.access == m.access) {
      ++held_[m.iova].users;
      ++counters_.shared_maps;
      return DmaStatus::kOk;
    }
    ++counters_.refused_invalid;
    log::debug("vfio", "guest mapping clashes with one held for another endpoint",
               {{"mapping", describe(m)}, {"held", describe(h)}});
    return DmaStatus::kInvalid;
  }
  const std::size_t cls = access_class(m.access);
  if (auto room = headroom(); room) {
    const std::uint64_t reserve = progress_reserve();
    const bool by_reserve = *room != 0 && *room <= reserve && class_entries_[cls] >= reserve;
    if (*room == 0 || by_reserve) {
      ++counters_.refused_budget;
      counters_.refused_reserve += by_reserve ? 1 : 0;
      log::debug("vfio", "guest mapping refused: DMA budget",
                 {{"mapping", describe(m)},
                  {"entries_used", mapper_.entries().size()},
                  {"low_water", low_water_},
                  {"progress_reserve", reserve},
                  {"class_entries", class_entries_[cls]}});
      return DmaStatus::kNoMemory;
    }
  }
  Status st = mapper_.map(m.iova, m.size, reinterpret_cast<std::uint64_t>(host),
                          "guest IOMMU mapping of gpa " + hex(m.gpa), DmaAccess{reads, writes});
  if (!st) {
    ++counters_.kernel_failures;
    log::debug("vfio", "guest mapping failed", {{"error", st.error().message()}});
    return status_for(classify_map_errno(st.error().errno_value()));
  }
  held_.emplace(m.iova, Held{m, 1});
  ++class_entries_[cls];
  ++counters_.maps;
  note_headroom();
  return DmaStatus::kOk;
}

void LazyDma::note_headroom() {
  const auto room = headroom();
  const bool reached = room && *room == 0;
  if (reached != at_low_water_) {
    at_low_water_ = reached;
    if (on_low_water_) {
      on_low_water_(reached, mapper_.entries().size());
    }
  }
}

DmaStatus LazyDma::unmap(const DmaMapping& m) {
  auto it = held_.find(m.iova);
  if (it == held_.end() || it->second.mapping.size != m.size) {
    return DmaStatus::kNoEntry;
  }
  if (it->second.users > 1) {
    --it->second.users;
    return DmaStatus::kOk;
  }
  if (it->second.by_eager) {
    held_.erase(it);  // the eager entry stays for the other identity mappings
    return DmaStatus::kOk;
  }
  if (Status st = mapper_.unmap(m.iova); !st) {
    ++counters_.kernel_failures;
    // The kernel may have unmapped another size than Keel's (another user of the container
    // changed it): the mapper has dropped its entry then, and so does the guest's table.
    const bool gone = mapper_.entries().count(m.iova) == 0;
    log::warn("vfio", gone ? "guest unmap: the kernel unmapped another size; the entry is gone"
                           : "guest unmap failed; the entry stays mapped",
              {{"mapping", describe(m)}, {"error", st.error().message()}});
    if (gone) {
      forget(it);
    }
    return DmaStatus::kIoError;
  }
  forget(it);
  ++counters_.unmaps;
  return DmaStatus::kOk;
}

void LazyDma::forget(std::map<std::uint64_t, Held>::iterator it) {
  --class_entries_[access_class(it->second.mapping.access)];
  held_.erase(it);
  note_headroom();
}

bool LazyDma::served_by_eager(const DmaMapping& m) const {
  if (!eager_ || m.iova != m.gpa) {
    return false;
  }
  const auto& entries = mapper_.entries();
  auto it = entries.upper_bound(m.iova);
  if (it == entries.begin()) {
    return false;
  }
  const DmaEntry& entry = std::prev(it)->second;
  // A read-only request is served by a read/write entry: more access, never less.
  return m.iova + (m.size - 1) <= entry.iova + (entry.size - 1);
}

DmaStatus LazyDma::switch_to_lazy(const DmaMapping& trigger) {
  if (!held_.empty()) {
    // Another endpoint of the container is still served by identity mappings: its domain and
    // this translated one would have to share the container's single IOVA space.
    ++counters_.refused_invalid;
    log::warn("vfio", "translated guest mapping refused: the container still serves identity "
                      "mappings for another endpoint",
              {{"mapping", describe(trigger)}, {"identity_mappings", held_.size()}});
    return DmaStatus::kInvalid;
  }
  if (Status st = mapper_.unmap_all(); !st) {
    ++counters_.kernel_failures;
    log::warn("vfio", "switch to lazy mapping failed", {{"error", st.error().message()}});
    return DmaStatus::kIoError;
  }
  eager_ = false;
  log::info("vfio", "switched to lazy mapping: the guest attached the device to a translated "
                    "IOMMU domain",
            {{"first_mapping", describe(trigger)}});
  return DmaStatus::kOk;
}

DmaStatus LazyIommuBackend::map(std::uint32_t endpoint, const DmaMapping& mapping) {
  auto it = endpoints_.find(endpoint);
  return it == endpoints_.end() ? DmaStatus::kNoEntry : it->second->map(mapping);
}

DmaStatus LazyIommuBackend::unmap(std::uint32_t endpoint, const DmaMapping& mapping) {
  auto it = endpoints_.find(endpoint);
  return it == endpoints_.end() ? DmaStatus::kNoEntry : it->second->unmap(mapping);
}

}  // namespace keel::vfio
