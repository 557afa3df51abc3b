#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.hpp"
#include "devices/vfio/dma_backend.hpp"
#include "devices/vfio/dma_planner.hpp"
#include "devices/vfio/iommu_info.hpp"
#include "devices/vfio/vfio_sys.hpp"

namespace keel::vfio {

// Why the kernel refused a MAP (type1's vfio_dma_do_map checks, in its order; iommufd answers
// with the same errnos, and never ENOSPC).
enum class MapFailure {
  kOverlap,      // EEXIST: overlaps a mapping in the container
  kBudget,       // ENOSPC: no DMA entries left (dma_entry_limit)
  kOutsideIova,  // EINVAL: IOVA outside the valid ranges (or misaligned)
  kMemlock,      // ENOMEM: pinning would exceed RLIMIT_MEMLOCK
  kOther,
};
MapFailure classify_map_errno(int err);
std::string_view to_string(MapFailure kind);  // "eexist", "enospc", "einval", "enomem", "other"

struct FailedMaps {
  std::uint64_t overlap = 0;
  std::uint64_t budget = 0;
  std::uint64_t outside_iova = 0;
  std::uint64_t memlock = 0;
  std::uint64_t other = 0;

  std::uint64_t total() const { return overlap + budget + outside_iova + memlock + other; }
  std::uint64_t& operator[](MapFailure kind);
};

// One entry Keel holds in the container.
struct DmaEntry {
  std::uint64_t iova = 0;
  std::uint64_t size = 0;
  std::uint64_t host = 0;
  std::string purpose;  // "guest RAM 0x0-0x1fffffff", "BAR0 of 0000:00:01.0 for peer-to-peer"
  DmaAccess access;
};

// Keel's count against the kernel's: avail_at_open - avail_now must equal the entries held.
struct Reconciliation {
  DmaBudget at_open;
  DmaBudget now;
  std::uint64_t entries_held = 0;
  // Both readings come from the DMA_AVAIL capability; otherwise nothing can be compared.
  bool checked = false;
  bool consistent = false;
  std::int64_t kernel_entries = 0;  // at_open.avail - now.avail, when checked
};

// The table of DMA entries held in one container (a type1 container or an iommufd IOAS, behind
// DmaBackend), and the only code that maps or unmaps them. Borrows the backend (it must outlive
// the mapper); unmaps everything on destruction. Not copyable or movable: the table's identity
// is the container's. Not thread-safe: use it from one thread (the VMM thread).
class DmaMapper {
 public:
  DmaMapper(DmaBackend& backend, DmaBudget at_open) : backend_(backend), at_open_(at_open) {}
  ~DmaMapper();
  DmaMapper(const DmaMapper&) = delete;
  DmaMapper& operator=(const DmaMapper&) = delete;

  // Maps [iova, iova+size) to host memory at `host` (read/write unless `access` says less). On
  // failure the Error keeps the errno (classify it with classify_map_errno), says what it means
  // and the fix, and the failure is counted by kind; the budget is then re-read and reconciled.
  Status map(std::uint64_t iova, std::uint64_t size, std::uint64_t host, std::string purpose,
             DmaAccess access = {});
  // Unmaps exactly the entry that starts at `iova` (neither backend splits one).
  Status unmap(std::uint64_t iova);
  // Maps every entry of an eager plan; on any failure unmaps what it mapped, so nothing is left,
  // and returns the failing MAP's error with the numbers.
  Status map_plan(const DmaPlan& plan);
  // Unmaps every entry: one call when the backend can (type1's VFIO_UNMAP_ALL, iommufd), else
  // one unmap per entry. The table is empty afterwards unless an unmap failed.
  Status unmap_all();

  // Re-reads the budget and compares; a mismatch is logged as a warning and returned, never
  // hidden. Only a type1 DMA_AVAIL capability can be compared (checked).
  Result<Reconciliation> reconcile();

  const std::map<std::uint64_t, DmaEntry>& entries() const { return entries_; }
  const DmaBudget& avail_at_open() const { return at_open_; }
  const DmaBackend& backend() const { return backend_; }
  std::uint64_t mapped_bytes() const { return mapped_bytes_; }
  std::uint64_t peak_entries() const { return peak_entries_; }
  const FailedMaps& failed_maps() const { return failed_; }
  const std::optional<Reconciliation>& last_reconciliation() const { return last_; }

 private:
  std::string explain(MapFailure kind, std::uint64_t iova, std::uint64_t size,
                      const std::optional<Reconciliation>& now) const;
  Status unmap_entries_one_by_one();

  DmaBackend& backend_;
  DmaBudget at_open_;
  std::map<std::uint64_t, DmaEntry> entries_;  // by IOVA
  std::uint64_t mapped_bytes_ = 0;
  std::uint64_t peak_entries_ = 0;
  FailedMaps failed_;
  std::optional<Reconciliation> last_;
};

}  // namespace keel::vfio
