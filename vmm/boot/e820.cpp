#include "vmm/boot/e820.hpp"

#include <algorithm>

#include "memory/layout.hpp"

namespace keel::vmm::boot {

namespace layout = memory::layout;

std::vector<E820Entry> build_e820(std::span<const memory::RegionPlan> ram) {
  constexpr std::uint64_t kLegacyStart = layout::kEbdaStart;
  constexpr std::uint64_t kLegacyEnd = layout::kHighMemoryStart;

  std::vector<E820Entry> map;
  auto add_ram = [&map](std::uint64_t start, std::uint64_t end) {
    if (end > start) {
      map.push_back({start, end - start, E820Type::kRam});
    }
  };
  for (const memory::RegionPlan& region : ram) {
    const std::uint64_t end = region.gpa + region.size;
    add_ram(region.gpa, std::min(end, kLegacyStart));
    add_ram(std::max(region.gpa, kLegacyEnd), end);
  }
  map.push_back({kLegacyStart, kLegacyEnd - kLegacyStart, E820Type::kReserved});
  map.push_back({layout::kEcamStart, layout::kEcamAreaSize, E820Type::kReserved});
  std::sort(map.begin(), map.end(),
            [](const E820Entry& a, const E820Entry& b) { return a.addr < b.addr; });
  return map;
}

std::vector<E820Entry> build_e820(const memory::GuestMemory& mem) {
  std::vector<memory::RegionPlan> plan;
  for (const memory::RamRegion& region : mem.regions()) {
    plan.push_back({region.gpa(), region.size()});
  }
  return build_e820(plan);
}

}  // namespace keel::vmm::boot
