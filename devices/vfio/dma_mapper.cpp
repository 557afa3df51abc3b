#include "devices/vfio/dma_mapper.hpp"

#include <cerrno>
#include <limits>
#include <vector>

#include "base/hex.hpp"
#include "base/log.hpp"
#include "base/size.hpp"

namespace keel::vfio {
namespace {

std::string range_text(std::uint64_t iova, std::uint64_t size) {
  return "iova " + hex(iova) + " size " + hex(size);
}

}  // namespace

MapFailure classify_map_errno(int err) {
  switch (err) {
    case EEXIST:
      return MapFailure::kOverlap;
    case ENOSPC:
      return MapFailure::kBudget;
    case EINVAL:
      return MapFailure::kOutsideIova;
    case ENOMEM:
      return MapFailure::kMemlock;
    default:
      return MapFailure::kOther;
  }
}

std::string_view to_string(MapFailure kind) {
  switch (kind) {
    case MapFailure::kOverlap:
      return "eexist";
    case MapFailure::kBudget:
      return "enospc";
    case MapFailure::kOutsideIova:
      return "einval";
    case MapFailure::kMemlock:
      return "enomem";
    case MapFailure::kOther:
      return "other";
  }
  return "other";
}

std::uint64_t& FailedMaps::operator[](MapFailure kind) {
  switch (kind) {
    case MapFailure::kOverlap:
      return overlap;
    case MapFailure::kBudget:
      return budget;
    case MapFailure::kOutsideIova:
      return outside_iova;
    case MapFailure::kMemlock:
      return memlock;
    case MapFailure::kOther:
      return other;
  }
  return other;
}

DmaMapper::~DmaMapper() {
  if (auto st = unmap_all(); !st) {
    log::warn("vfio", "DMA entries left mapped at teardown",
              {{"entries", entries_.size()}, {"error", st.error().message()}});
  }
}

std::string DmaMapper::explain(MapFailure kind, std::uint64_t iova, std::uint64_t size,
                               const std::optional<Reconciliation>& now) const {
  const std::string held = std::to_string(entries_.size()) + " entries held by Keel";
  switch (kind) {
    case MapFailure::kBudget: {
      std::string text = "the container has no DMA entries left (" + held + ", avail_at_open " +
                         at_open_.describe();
      if (now) {
        text += ", avail_now " + now->now.describe();
      }
      return text + "): raise vfio_iommu_type1.dma_entry_limit";
    }
    case MapFailure::kMemlock: {
      std::string text = "pinning " + format_size(size) + " more (" + format_size(mapped_bytes_) +
                         " pinned by Keel already) exceeds the memlock limit";
      if (!backend_.charged_per_process()) {
        text += " (" + std::string(kUserChargeNote) + ")";
      }
      return text + ": raise it (ulimit -l, LimitMEMLOCK=) or give Keel CAP_IPC_LOCK";
    }
    case MapFailure::kOverlap: {
      for (const auto& [start, entry] : entries_) {
        if (start < iova + size && iova < start + entry.size) {
          return "overlaps Keel's entry " + range_text(start, entry.size) + " (" + entry.purpose +
                 ")";
        }
      }
      return "overlaps a mapping that is not one of Keel's " + std::to_string(entries_.size()) +
             " entries (another user of the container?)";
    }
    case MapFailure::kOutsideIova:
      return "the range is outside the container's valid IOVA ranges (a reserved range of an "
             "attached device) or not page-aligned";
    case MapFailure::kOther:
      break;
  }
  return "unexpected error";
}

// Assumes the backend is ready (type1: the IOMMU set; iommufd: the devices attached), the
// range is page-aligned and the host memory stays mapped until the entry is unmapped.
Status DmaMapper::map(std::uint64_t iova, std::uint64_t size, std::uint64_t host,
                      std::string purpose, DmaAccess access) {
  const std::string what =
      std::string(backend_.map_call()) + " " + range_text(iova, size) + " (" + purpose + ")";
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  if (size == 0 || iova > kMax - (size - 1) || host > kMax - (size - 1)) {
    return Error::invalid(what + ": empty or wraps around the address space");
  }
  if (!access.device_reads && !access.device_writes) {
    return Error::invalid(what + ": gives the device neither read nor write access");
  }
  auto ret = backend_.map(iova, size, host, access, what);
  if (!ret) {
    const MapFailure kind = classify_map_errno(ret.error().errno_value());
    ++failed_[kind];
    std::optional<Reconciliation> now;
    if (auto rec = reconcile(); rec) {
      now = *rec;
    }
    return Error(ret.error().kind(), ret.error().code(), what + ": " + explain(kind, iova, size, now));
  }
  entries_.emplace(iova, DmaEntry{iova, size, host, std::move(purpose), access});
  mapped_bytes_ += size;
  peak_entries_ = std::max<std::uint64_t>(peak_entries_, entries_.size());
  return ok_status();
}

// One whole entry: the kernel reports the bytes it unmapped, which must be the entry's.
Status DmaMapper::unmap(std::uint64_t iova) {
  auto it = entries_.find(iova);
  if (it == entries_.end()) {
    return Error::from_errno(
        ENOENT, "unmap DMA at iova " + hex(iova) + ": Keel holds no entry that starts there");
  }
  const DmaEntry& entry = it->second;
  const std::string what = std::string(backend_.unmap_call()) + " " +
                           range_text(entry.iova, entry.size) + " (" + entry.purpose + ")";
  KEEL_TRY(const std::uint64_t unmapped, backend_.unmap(entry.iova, entry.size, what));
  const std::uint64_t expected = entry.size;
  mapped_bytes_ -= entry.size;
  entries_.erase(it);
  if (unmapped != expected) {
    return Error::invalid(what + ": the kernel unmapped " + hex(unmapped) + " bytes, not the " +
                          hex(expected) + " Keel mapped there");
  }
  return ok_status();
}

Status DmaMapper::map_plan(const DmaPlan& plan) {
  if (plan.decision != Decision::kEager) {
    return Error::invalid("eager DMA plan: the decision is " +
                          std::string(to_string(plan.decision)) + ", not eager: " + plan.reason);
  }
  std::vector<std::uint64_t> mapped;
  for (std::size_t i = 0; i < plan.entries.size(); ++i) {
    const PlannedEntry& entry = plan.entries[i];
    auto st = map(entry.iova, entry.size, entry.host, entry.purpose);
    if (st) {
      mapped.push_back(entry.iova);
      continue;
    }
    std::string rollback_errors;
    for (auto iova = mapped.rbegin(); iova != mapped.rend(); ++iova) {
      if (auto undo = unmap(*iova); !undo) {
        rollback_errors += "; rollback: " + undo.error().message();
      }
    }
    std::string numbers = "eager DMA plan: entry " + std::to_string(i + 1) + " of " +
                          std::to_string(plan.entries.size()) + " failed, " +
                          std::to_string(mapped.size()) + " rolled back, " +
                          std::to_string(entries_.size()) + " still held (avail_at_open " +
                          at_open_.describe();
    if (auto rec = reconcile(); rec) {
      numbers += ", avail_now " + rec->now.describe();
    }
    numbers += ")" + rollback_errors;
    return st.error().wrap(numbers);
  }
  return ok_status();
}

Status DmaMapper::unmap_entries_one_by_one() {
  std::optional<Error> first;
  std::vector<std::uint64_t> iovas;
  for (const auto& [iova, entry] : entries_) {
    iovas.push_back(iova);
  }
  for (std::uint64_t iova : iovas) {
    if (auto st = unmap(iova); !st && !first) {
      first = st.error();
    }
  }
  if (first) {
    return *first;
  }
  return ok_status();
}

Status DmaMapper::unmap_all() {
  if (entries_.empty()) {
    return ok_status();
  }
  if (!backend_.unmap_all_supported()) {
    return unmap_entries_one_by_one();
  }
  auto unmapped = backend_.unmap_all(std::string(backend_.unmap_call()) + " of all " +
                                     std::to_string(entries_.size()) + " entries");
  if (!unmapped) {
    log::warn("vfio", "unmapping all at once failed, unmapping one entry at a time",
              {{"entries", entries_.size()}, {"error", unmapped.error().message()}});
    return unmap_entries_one_by_one();
  }
  if (*unmapped != mapped_bytes_) {
    log::warn("vfio", "unmapping all unmapped a different amount than Keel held",
              {{"unmapped_bytes", *unmapped},
               {"held_bytes", mapped_bytes_},
               {"entries", entries_.size()}});
  }
  entries_.clear();
  mapped_bytes_ = 0;
  return ok_status();
}

Result<Reconciliation> DmaMapper::reconcile() {
  auto now = backend_.budget();
  if (!now) {
    log::warn("vfio", "cannot re-read DMA_AVAIL", {{"error", now.error().message()}});
    return now.error().wrap("reconcile DMA entries");
  }
  Reconciliation rec;
  rec.at_open = at_open_;
  rec.now = *now;
  rec.entries_held = entries_.size();
  rec.checked =
      at_open_.source == AvailSource::kCapability && now->source == AvailSource::kCapability;
  if (rec.checked) {
    rec.kernel_entries = static_cast<std::int64_t>(at_open_.avail) - now->avail;
    rec.consistent = rec.kernel_entries == static_cast<std::int64_t>(rec.entries_held);
    if (!rec.consistent) {
      log::warn("vfio", "DMA entry accounting mismatch",
                {{"avail_at_open", at_open_.avail},
                 {"avail_now", now->avail},
                 {"kernel_entries", rec.kernel_entries},
                 {"entries_held", rec.entries_held}});
    }
  }
  last_ = rec;
  return rec;
}

}  // namespace keel::vfio
