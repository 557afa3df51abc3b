#include "devices/vfio/dma_planner.hpp"

#include <algorithm>
#include <limits>

#include "base/hex.hpp"
#include "base/size.hpp"

namespace keel::vfio {
namespace {

constexpr const char* kNoViommu =
    "lazy mapping needs the device behind the virtual IOMMU (add iommu=on to its --device)";

std::string ram_range(std::uint64_t start, std::uint64_t size) {
  return hex(start) + "-" + hex(start + size - 1);
}

std::string entries_text(const DmaPlan& plan) {
  const std::uint64_t needed = plan.planned_entries + plan.hotplug_reserve;
  return std::to_string(needed) + (needed == 1 ? " DMA entry (" : " DMA entries (") +
         std::to_string(plan.ram_entries) + " guest RAM, " + std::to_string(plan.p2p_entries) +
         " peer-to-peer BAR, " + std::to_string(plan.hotplug_reserve) + " hotplug reserve)";
}

std::string budget_text(const DmaBudget& budget) {
  switch (budget.source) {
    case AvailSource::kCapability:
      return std::to_string(budget.avail) + " available in the container";
    case AvailSource::kAbsent:
      return "an unknown budget: the kernel does not report DMA_AVAIL (Linux < 5.10), so the "
             "limit (vfio_iommu_type1.dma_entry_limit, 65535 by default) cannot be checked";
    case AvailSource::kUnlimited:
      return "no entry limit (DMA_AVAIL reads 4294967295: iommufd compatibility)";
    case AvailSource::kIommufd:
      return "no entry limit (iommufd counts no entries; pinned memory is what binds)";
  }
  return "an unknown budget";
}

std::string memlock_text(const DmaPlan& plan, const PlanInput& input) {
  const MemlockLimit& memlock = input.memlock;
  const std::string pinned = "pins " + format_size(plan.pinned_bytes) + " of guest RAM";
  if (memlock.cap_ipc_lock) {
    return pinned + " (CAP_IPC_LOCK: RLIMIT_MEMLOCK does not apply)";
  }
  if (memlock.limit_bytes == kMemlockUnlimited) {
    return pinned + " (RLIMIT_MEMLOCK unlimited)";
  }
  return pinned + (plan.memlock_fits ? " within" : " but") + " the RLIMIT_MEMLOCK of " +
         format_size(memlock.limit_bytes) + (plan.memlock_fits ? "" : " is lower") +
         (input.charged_per_process ? "" : " (" + std::string(kUserChargeNote) + ")");
}

// The limit the plan comes closest to, as a share of each.
std::string binding_limit(const DmaPlan& plan, const PlanInput& input) {
  double entries = 0, memlock = 0;
  if (input.budget.source == AvailSource::kCapability) {
    const double needed = static_cast<double>(plan.planned_entries + plan.hotplug_reserve);
    entries = input.budget.avail == 0 ? 1e18 : needed / input.budget.avail;
  }
  if (!input.memlock.cap_ipc_lock && input.memlock.limit_bytes != kMemlockUnlimited) {
    memlock = input.memlock.limit_bytes == 0
                  ? 1e18
                  : static_cast<double>(plan.pinned_bytes) / input.memlock.limit_bytes;
  }
  if (entries == 0 && memlock == 0) {
    return input.budget.source == AvailSource::kAbsent ? "unknown" : "none";
  }
  return entries >= memlock ? "dma_entries" : "memlock";
}

std::string eager_summary(const DmaPlan& plan, const PlanInput& input) {
  std::string text = entries_text(plan);
  if (input.budget.source == AvailSource::kCapability) {
    text += (plan.entries_fit ? " of " : " but only ") + budget_text(input.budget);
  } else {
    text += " against " + budget_text(input.budget);
  }
  return text + "; " + memlock_text(plan, input);
}

std::string fixes(const DmaPlan& plan, const PlanInput& input) {
  const std::uint64_t needed = plan.planned_entries + plan.hotplug_reserve;
  std::string text = "fixes:";
  if (!plan.entries_fit) {
    text += " raise vfio_iommu_type1.dma_entry_limit to at least " + std::to_string(needed) +
            " (echo " + std::to_string(needed) +
            " > /sys/module/vfio_iommu_type1/parameters/dma_entry_limit before Keel opens the "
            "container, or vfio_iommu_type1.dma_entry_limit=" +
            std::to_string(needed) + " on the host kernel command line);";
    if (input.backend == BackendKind::kType1) {
      text += " or use backend=iommufd, which counts no entries (a host kernel with "
              "CONFIG_IOMMUFD and CONFIG_VFIO_DEVICE_CDEV);";
    }
  }
  if (!plan.memlock_fits) {
    const std::uint64_t kib = (plan.pinned_bytes + kKiB - 1) / kKiB;
    text += " raise the memlock limit to at least " + format_size(plan.pinned_bytes) +
            " (ulimit -l " + std::to_string(kib) +
            ", or LimitMEMLOCK=" + std::to_string(plan.pinned_bytes) +
            " in the systemd unit) or give Keel CAP_IPC_LOCK;";
  }
  return text + " or put the device behind the virtual IOMMU (iommu=on) to map lazily";
}

}  // namespace

std::string_view to_string(Decision decision) {
  switch (decision) {
    case Decision::kEager:
      return "eager";
    case Decision::kLazy:
      return "lazy";
    case Decision::kRefuse:
      return "refused";
  }
  return "unknown";
}

std::vector<RamSpan> ram_spans(const memory::GuestMemory& memory) {
  std::vector<RamSpan> spans;
  for (const auto& region : memory.regions()) {
    spans.push_back({region.gpa(), region.size(), reinterpret_cast<std::uintptr_t>(region.host())});
  }
  return spans;
}

Result<std::vector<PlannedEntry>> eager_entries(const std::vector<RamSpan>& ram,
                                                const std::vector<IovaRange>& iova_ranges,
                                                std::uint64_t iova_pgsizes) {
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  std::vector<RamSpan> sorted = ram;
  std::sort(sorted.begin(), sorted.end(),
            [](const RamSpan& a, const RamSpan& b) { return a.gpa < b.gpa; });
  const std::uint64_t page = iova_pgsizes & (~iova_pgsizes + 1);  // the smallest page size
  std::vector<RamSpan> merged;
  for (const RamSpan& span : sorted) {
    if (span.size == 0 || span.gpa > kMax - (span.size - 1) || span.host > kMax - (span.size - 1)) {
      return Error::invalid("guest RAM at " + hex(span.gpa) + " of " + hex(span.size) +
                            " bytes is empty or wraps around the address space");
    }
    if (page != 0 && (span.gpa % page != 0 || span.size % page != 0 || span.host % page != 0)) {
      return Error::invalid("guest RAM " + ram_range(span.gpa, span.size) + " (host " +
                            hex(span.host) + ") is not aligned to the IOMMU's " +
                            format_size(page) + " pages");
    }
    if (!merged.empty()) {
      RamSpan& last = merged.back();
      if (span.gpa - last.gpa < last.size) {
        return Error::invalid("guest RAM " + ram_range(span.gpa, span.size) + " overlaps " +
                              ram_range(last.gpa, last.size));
      }
      if (last.gpa + last.size == span.gpa && last.host + last.size == span.host) {
        last.size += span.size;
        continue;
      }
    }
    merged.push_back(span);
  }
  std::vector<PlannedEntry> entries;
  for (const RamSpan& span : merged) {
    const std::uint64_t last = span.gpa + (span.size - 1);
    if (iova_ranges.empty()) {
      entries.push_back(
          {span.gpa, span.size, span.host, "guest RAM " + ram_range(span.gpa, span.size)});
      continue;
    }
    std::uint64_t cur = span.gpa;
    while (true) {
      auto range = std::find_if(iova_ranges.begin(), iova_ranges.end(), [cur](const IovaRange& r) {
        return r.start <= cur && cur <= r.last;
      });
      if (range == iova_ranges.end()) {
        auto next = std::find_if(iova_ranges.begin(), iova_ranges.end(),
                                 [cur](const IovaRange& r) { return r.start > cur; });
        const std::uint64_t hole_last =
            next == iova_ranges.end() ? last : std::min(last, next->start - 1);
        return Error::invalid("guest RAM " + ram_range(span.gpa, span.size) + " covers " +
                              hex(cur) + "-" + hex(hole_last) +
                              ", which is outside the IOMMU's valid IOVA ranges (a reserved "
                              "hole such as the MSI window); with IOVA = guest-physical address "
                              "it cannot be mapped: keep guest RAM out of the hole");
      }
      const std::uint64_t piece_last = std::min(last, range->last);
      const std::uint64_t size = piece_last - cur + 1;
      entries.push_back(
          {cur, size, span.host + (cur - span.gpa), "guest RAM " + ram_range(cur, size)});
      if (piece_last == last) {
        break;
      }
      cur = piece_last + 1;
    }
  }
  return entries;
}

Result<DmaPlan> plan_dma(const PlanInput& input) {
  KEEL_TRY(auto entries, eager_entries(input.ram, input.iova_ranges, input.iova_pgsizes));
  DmaPlan plan;
  plan.requested = input.requested;
  plan.entries = std::move(entries);
  plan.ram_entries = plan.entries.size();
  plan.p2p_entries = input.p2p_entries;
  plan.hotplug_reserve = input.hotplug_reserve;
  plan.planned_entries = plan.ram_entries + plan.p2p_entries;
  for (const auto& entry : plan.entries) {
    plan.pinned_bytes += entry.size;
  }
  plan.entries_fit = input.budget.fits(plan.planned_entries + plan.hotplug_reserve);
  plan.memlock_fits = input.memlock.allows(plan.pinned_bytes);
  const bool eager_fits = plan.entries_fit && plan.memlock_fits;
  plan.binding_limit = binding_limit(plan, input);
  const std::string summary = eager_summary(plan, input);

  switch (input.requested) {
    case MappingMode::kEager:
      if (eager_fits) {
        plan.decision = Decision::kEager;
        plan.reason = "eager (requested): " + summary;
      } else {
        plan.decision = Decision::kRefuse;
        plan.reason = "eager mapping (requested) does not fit: " + summary + "; " + fixes(plan, input);
      }
      break;
    case MappingMode::kAuto:
      if (eager_fits) {
        plan.decision = Decision::kEager;
        plan.reason = "eager (auto): " + summary;
      } else if (input.behind_viommu) {
        plan.decision = Decision::kLazy;
        plan.reason = "lazy (auto): eager does not fit: " + summary +
                      "; the device is behind the virtual IOMMU, so the guest's mappings are "
                      "mapped on demand";
      } else {
        plan.decision = Decision::kRefuse;
        plan.reason =
            "auto: eager mapping does not fit: " + summary + "; " + kNoViommu + "; " + fixes(plan, input);
      }
      break;
    case MappingMode::kLazy:
      if (input.behind_viommu) {
        plan.decision = Decision::kLazy;
        plan.reason = "lazy (requested): the device is behind the virtual IOMMU";
      } else {
        plan.decision = Decision::kRefuse;
        plan.reason = std::string("lazy (requested): ") + kNoViommu +
                      "; use mode eager or auto (eager " +
                      (eager_fits ? "fits: " : "does not fit: ") + summary + ")";
      }
      break;
  }
  if (input.budget.source == AvailSource::kAbsent && plan.decision == Decision::kEager) {
    plan.reason += " (budget unknown: a MAP may still fail with ENOSPC)";
  }
  return plan;
}

}  // namespace keel::vfio
