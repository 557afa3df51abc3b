#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "devices/vfio/dma_mapper.hpp"
#include "devices/vfio/dma_planner.hpp"
#include "devices/vfio/iommu_info.hpp"
#include "devices/vfio/lazy_dma.hpp"
#include "devices/vfio/memlock.hpp"

namespace keel::vfio {

// Lazy mapping only: the reserve kept free and what became of the guest's requests. Refusals
// Keel made before asking the kernel are here; the kernel's own failures are in failed_maps.
struct LazyReport {
  std::uint32_t low_water = 0;
  std::uint64_t guest_mappings = 0;  // guest mappings held now
  LazyCounters counters;
};

// Everything Keel knows about one container's DMA budget, for vm.info and the log.
struct DmaReport {
  std::vector<std::string> devices;  // PCI addresses
  std::string backend = "vfio-type1v2";  // to_string(BackendKind)
  std::string backend_reason;            // why it was chosen: "iommufd (auto: ...)"
  MemlockLimit memlock;                  // as read when the plan was made
  bool charged_per_process = true;       // false: iommufd charges the user's locked memory
  std::uint64_t pinned_bytes_planned = 0;  // what the eager plan pins (all guest RAM)
  std::string binding_limit = "none";    // "dma_entries", "memlock" or "none" (DmaPlan)
  DmaBudget avail_at_open;             // its source says capability / absent / unlimited
  std::optional<DmaBudget> avail_now;  // the last re-read, if any
  std::uint64_t entries_used = 0;      // entries Keel holds now
  std::optional<bool> consistent;      // unset when it cannot be checked (no capability)
  Decision mode = Decision::kRefuse;
  MappingMode requested_mode = MappingMode::kAuto;
  std::string reason;
  std::uint64_t planned_entries = 0;
  std::uint64_t mapped_bytes = 0;
  std::uint64_t peak_entries = 0;
  FailedMaps failed_maps;
  std::vector<IovaRange> iova_ranges;
  std::uint64_t iova_pgsizes = 0;
  bool unmap_all_supported = false;
  std::optional<LazyReport> lazy;  // set when mode is lazy
};

// The report's one logfmt line (no trailing newline in the fields' order below), e.g.
//   level=info component=vfio msg="DMA budget" devices=0000:00:01.0 backend=vfio-type1v2
//   avail_at_open=24 source=capability binding_limit=dma_entries planned_entries=1 mode=eager requested_mode=auto
//   reason="..." avail_now=23 entries_used=1 consistent=true mapped_bytes=536870912
//   peak_entries=1 failed_maps=0 failed_enospc=0 failed_enomem=0 failed_eexist=0
//   failed_einval=0 low_water=none refused_budget=0 refused_reserve=0 refused_invalid=0
//   iova_ranges=0x0-0xfedfffff,0xfef00000-0x7fffffffff unmap_all=true
//   backend_reason="type1 (auto: the host has no /dev/iommu)"
// avail_at_open and avail_now read "absent", "unlimited" or "iommufd" when the source says so; avail_now
// and consistent read "unknown" when never re-read or not checkable; low_water reads "none"
// unless the mode is lazy.
std::string format_dma_report(const DmaReport& report);
// Writes that line at info level.
void log_dma_report(const DmaReport& report);

// "0x0-0xfedfffff,0xfef00000-0x7fffffffff", or "none".
std::string format_iova_ranges(const std::vector<IovaRange>& ranges);

}  // namespace keel::vfio
