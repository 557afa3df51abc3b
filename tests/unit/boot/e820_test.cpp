#include "vmm/boot/e820.hpp"

#include <catch2/catch.hpp>

#include "base/size.hpp"
#include "memory/layout.hpp"

namespace keel::vmm::boot {
namespace {

namespace layout = memory::layout;

bool overlaps(const E820Entry& e, std::uint64_t start, std::uint64_t end) {
  return e.addr < end && start < e.end();
}

// Invariants every map must hold, whatever the RAM size.
void check_well_formed(const std::vector<E820Entry>& map, std::uint64_t ram_size) {
  std::uint64_t ram = 0;
  for (std::size_t i = 0; i < map.size(); ++i) {
    CHECK(map[i].size > 0);
    if (i > 0) {
      CHECK(map[i - 1].end() <= map[i].addr);  // sorted, no overlap
    }
    if (map[i].type == E820Type::kRam) {
      ram += map[i].size;
      CHECK_FALSE(overlaps(map[i], layout::kEbdaStart, layout::kHighMemoryStart));
      CHECK_FALSE(overlaps(map[i], layout::kRam32End, layout::kRam64Start));
    }
  }
  CHECK(ram == ram_size - (layout::kHighMemoryStart - layout::kEbdaStart));
}

const E820Entry* find_covering(const std::vector<E820Entry>& map, std::uint64_t addr) {
  for (const E820Entry& e : map) {
    if (addr >= e.addr && addr < e.end()) {
      return &e;
    }
  }
  return nullptr;
}

TEST_CASE("e820 for a 512 MiB guest: low RAM, legacy hole, RAM from 1 MiB, ECAM") {
  const auto plan = memory::plan_ram(512 * kMiB);
  const auto map = build_e820(plan);
  check_well_formed(map, 512 * kMiB);
  REQUIRE(map.size() == 4);
  CHECK(map[0].addr == 0);
  CHECK(map[0].end() == layout::kEbdaStart);
  CHECK(map[0].type == E820Type::kRam);
  CHECK(map[1].addr == layout::kEbdaStart);
  CHECK(map[1].end() == layout::kHighMemoryStart);
  CHECK(map[1].type == E820Type::kReserved);
  CHECK(map[2].addr == layout::kHighMemoryStart);
  CHECK(map[2].end() == 512 * kMiB);
  CHECK(map[2].type == E820Type::kRam);
  CHECK(map[3].addr == layout::kEcamStart);
  CHECK(map[3].size == layout::kEcamAreaSize);
  CHECK(map[3].type == E820Type::kReserved);

  // The ACPI tables are in RAM that the map keeps out of the kernel's hands.
  const E820Entry* acpi = find_covering(map, layout::kAcpiStart);
  REQUIRE(acpi != nullptr);
  CHECK(acpi->type != E820Type::kRam);
  CHECK(acpi->end() >= layout::kAcpiStart + layout::kAcpiMaxSize);
}

TEST_CASE("e820 for a 6 GiB guest adds RAM above 4 GiB and none in the hole") {
  const auto plan = memory::plan_ram(6 * kGiB);
  const auto map = build_e820(plan);
  check_well_formed(map, 6 * kGiB);
  REQUIRE(map.size() == 5);
  CHECK(map[2].addr == layout::kHighMemoryStart);
  CHECK(map[2].end() == layout::kRam32End);
  CHECK(map[3].addr == layout::kEcamStart);
  CHECK(map[4].addr == layout::kRam64Start);
  CHECK(map[4].size == 6 * kGiB - layout::kRam32End);
  CHECK(map[4].type == E820Type::kRam);
  CHECK(find_covering(map, layout::kMmio32Start) == nullptr);
  CHECK(find_covering(map, layout::kIoapicStart) == nullptr);
}

TEST_CASE("e820 from GuestMemory matches the plan it was made from") {
  auto mem = memory::GuestMemory::create(64 * kMiB);
  REQUIRE(mem.ok());
  const auto from_mem = build_e820(*mem);
  const auto from_plan = build_e820(memory::plan_ram(64 * kMiB));
  REQUIRE(from_mem.size() == from_plan.size());
  for (std::size_t i = 0; i < from_mem.size(); ++i) {
    CHECK(from_mem[i].addr == from_plan[i].addr);
    CHECK(from_mem[i].size == from_plan[i].size);
    CHECK(from_mem[i].type == from_plan[i].type);
  }
}

}  // namespace
}  // namespace keel::vmm::boot
