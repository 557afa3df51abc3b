#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"
#include "devices/vfio/dma_backend.hpp"
#include "devices/vfio/iommu_info.hpp"
#include "devices/vfio/mapping_mode.hpp"
#include "devices/vfio/memlock.hpp"
#include "memory/guest_memory.hpp"

// The mapping planner: pure, no syscalls. From guest RAM, what the container offers and the
// process's memlock limit, it builds the eager plan (the MAP calls that cover guest RAM at
// IOVA = GPA) and decides, per container, how guest memory is mapped for the device.
namespace keel::vfio {

enum class Decision { kEager, kLazy, kRefuse };
std::string_view to_string(Decision decision);  // "eager", "lazy", "refused"

// Entries kept free for hotplug. 0: Keel has no memory hotplug yet, and a reserve would refuse
// configurations that fit exactly for no present benefit. Whatever adds hotplug (virtio-mem, a
// device hotplug that maps BARs for peer-to-peer) should pass the entries it may need.
inline constexpr std::uint32_t kDefaultHotplugReserve = 0;

// One contiguous piece of guest RAM and the host memory behind it.
struct RamSpan {
  std::uint64_t gpa = 0;
  std::uint64_t size = 0;
  std::uint64_t host = 0;  // host virtual address
};
std::vector<RamSpan> ram_spans(const memory::GuestMemory& memory);

struct PlanInput {
  std::vector<RamSpan> ram;
  std::vector<IovaRange> iova_ranges;  // empty: the kernel reported none, every IOVA is valid
  std::uint64_t iova_pgsizes = 0;      // 0: alignment not checked
  DmaBudget budget;                    // at container open
  BackendKind backend = BackendKind::kType1;
  MemlockLimit memlock;
  // Whether pinned memory is charged to this process (type1; iommufd with RLIMIT_MODE 1) or to
  // its user's locked memory, which the user's other processes share (iommufd's default).
  bool charged_per_process = true;
  MappingMode requested = MappingMode::kAuto;
  bool behind_viommu = false;     // the device is behind the virtual IOMMU (iommu=on)
  std::uint32_t p2p_entries = 0;  // BARs mapped for peer-to-peer: entries, not pinned bytes
  std::uint32_t hotplug_reserve = kDefaultHotplugReserve;
};

// One VFIO_IOMMU_MAP_DMA call of the eager plan.
struct PlannedEntry {
  std::uint64_t iova = 0;
  std::uint64_t size = 0;
  std::uint64_t host = 0;
  std::string purpose;  // "guest RAM 0x0-0x1fffffff"
};

struct DmaPlan {
  MappingMode requested = MappingMode::kAuto;
  Decision decision = Decision::kRefuse;
  // The guest RAM entries of the eager plan (IOVA = GPA); filled whatever the decision, so a
  // refusal can show what eager would have needed. Only mapped when decision is kEager.
  std::vector<PlannedEntry> entries;
  std::uint64_t ram_entries = 0;
  std::uint64_t p2p_entries = 0;
  std::uint64_t hotplug_reserve = 0;
  std::uint64_t planned_entries = 0;  // ram_entries + p2p_entries
  std::uint64_t pinned_bytes = 0;     // all guest RAM, for eager
  bool entries_fit = false;           // planned + reserve <= avail (unknown/unlimited: true)
  bool memlock_fits = false;          // pinned <= RLIMIT_MEMLOCK, or CAP_IPC_LOCK
  // Which limit the eager plan comes closest to: "dma_entries" (type1's count), "memlock"
  // (pinned bytes against RLIMIT_MEMLOCK, either backend), "none" (neither limits it) or
  // "unknown" (type1 without DMA_AVAIL, and no memlock limit).
  std::string binding_limit = "none";
  std::string reason;                 // for people: the numbers and, on refusal, the fixes
};

// The eager MAP calls for `ram` at IOVA = GPA: regions merged where both GPA and host address
// are contiguous, split at IOVA range boundaries. Errors: overlapping or empty regions, addresses
// not aligned to the smallest IOVA page size, and RAM in an IOVA hole (IOVA = GPA cannot avoid
// it), naming the range.
Result<std::vector<PlannedEntry>> eager_entries(const std::vector<RamSpan>& ram,
                                                const std::vector<IovaRange>& iova_ranges,
                                                std::uint64_t iova_pgsizes);

// Builds the eager plan and decides. Refusal is a decision (with the reason), not an error;
// errors are reserved for a layout that cannot be mapped at all (see eager_entries).
Result<DmaPlan> plan_dma(const PlanInput& input);

}  // namespace keel::vfio
