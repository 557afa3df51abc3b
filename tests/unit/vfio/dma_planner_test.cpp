#include "devices/vfio/dma_planner.hpp"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "base/size.hpp"
#include "memory/layout.hpp"

namespace keel::vfio {
namespace {

constexpr std::uint64_t kHost = 0x7f00'0000'0000;
const std::vector<IovaRange> kX86Ranges = {{0x0, 0xfedfffff}, {0xfef00000, 0x7fffffffff}};

struct Layout {
  const char* name;
  std::vector<RamSpan> ram;
  std::uint64_t entries;  // of the eager plan
  std::uint64_t pinned;
};

// The layouts the planner must get right, with what each must produce.
std::vector<Layout> layouts() {
  return {
      {"512 MiB", {{0, 512 * kMiB, kHost}}, 1, 512 * kMiB},
      // Contiguous in host memory, split in GPA around the 32-bit hole.
      {"3 GiB + 1 GiB around the 32-bit hole",
       {{0, 3 * kGiB, kHost}, {memory::layout::kRam64Start, 1 * kGiB, kHost + 3 * kGiB}},
       2,
       4 * kGiB},
      // Contiguous in GPA, not in host memory: two entries.
      {"contiguous in GPA only",
       {{0, 256 * kMiB, kHost}, {256 * kMiB, 256 * kMiB, kHost + 1 * kGiB}},
       2,
       512 * kMiB},
  };
}

enum class BudgetCase { kPlenty, kExact, kOneShort, kAbsent, kUnlimited };
enum class MemlockCase { kEnough, kTooLow, kCapIpcLock };

DmaBudget budget_for(BudgetCase c, std::uint64_t needed) {
  switch (c) {
    case BudgetCase::kPlenty:
      return {AvailSource::kCapability, 65535};
    case BudgetCase::kExact:
      return {AvailSource::kCapability, static_cast<std::uint32_t>(needed)};
    case BudgetCase::kOneShort:
      return {AvailSource::kCapability, static_cast<std::uint32_t>(needed - 1)};
    case BudgetCase::kAbsent:
      return DmaBudget::from_cap(std::nullopt);
    case BudgetCase::kUnlimited:
      return DmaBudget::from_cap(kAvailUnlimited);
  }
  return {};
}

MemlockLimit memlock_for(MemlockCase c, std::uint64_t pinned) {
  switch (c) {
    case MemlockCase::kEnough:
      return {pinned, false};
    case MemlockCase::kTooLow:
      return {pinned - 4 * kKiB, false};
    case MemlockCase::kCapIpcLock:
      return {64 * kMiB, true};
  }
  return {};
}

TEST_CASE("planner: layouts x budgets x modes x memlock") {
  for (const Layout& layout : layouts()) {
    for (auto budget_case : {BudgetCase::kPlenty, BudgetCase::kExact, BudgetCase::kOneShort,
                             BudgetCase::kAbsent, BudgetCase::kUnlimited}) {
      for (auto mode : {MappingMode::kAuto, MappingMode::kEager, MappingMode::kLazy}) {
        for (auto memlock_case :
             {MemlockCase::kEnough, MemlockCase::kTooLow, MemlockCase::kCapIpcLock}) {
          PlanInput input;
          input.ram = layout.ram;
          input.iova_ranges = kX86Ranges;
          input.iova_pgsizes = 0x40201000;
          input.budget = budget_for(budget_case, layout.entries);
          input.memlock = memlock_for(memlock_case, layout.pinned);
          input.requested = mode;
          INFO("layout " << layout.name << ", budget " << static_cast<int>(budget_case) << " ("
                         << input.budget.describe() << "), mode " << to_string(mode) << ", memlock "
                         << static_cast<int>(memlock_case));
          auto plan = plan_dma(input);
          REQUIRE(plan.ok());
          INFO("reason: " << plan->reason);

          CHECK(plan->ram_entries == layout.entries);
          CHECK(plan->entries.size() == layout.entries);
          CHECK(plan->planned_entries == layout.entries);
          CHECK(plan->pinned_bytes == layout.pinned);
          const bool entries_ok = budget_case != BudgetCase::kOneShort;
          const bool memlock_ok = memlock_case != MemlockCase::kTooLow;
          CHECK(plan->entries_fit == entries_ok);
          CHECK(plan->memlock_fits == memlock_ok);
          const bool eager = mode != MappingMode::kLazy && entries_ok && memlock_ok;
          CHECK(plan->decision == (eager ? Decision::kEager : Decision::kRefuse));
          CHECK(plan->requested == mode);

          const std::string& reason = plan->reason;
          CHECK_THAT(reason,
                     Catch::Contains(std::to_string(layout.entries) +
                                     (layout.entries == 1 ? " DMA entry (" : " DMA entries (")));
          if (mode == MappingMode::kLazy) {
            CHECK_THAT(reason, Catch::Contains("lazy mapping needs the device behind the virtual "
                                               "IOMMU (add iommu=on to its --device)"));
          }
          if (budget_case == BudgetCase::kOneShort && mode != MappingMode::kLazy) {
            CHECK_THAT(reason, Catch::Contains("but only " + std::to_string(layout.entries - 1) +
                                               " available"));
            CHECK_THAT(reason, Catch::Contains("raise vfio_iommu_type1.dma_entry_limit to at "
                                               "least " +
                                               std::to_string(layout.entries)));
            CHECK_THAT(reason, Catch::Contains("echo " + std::to_string(layout.entries) +
                                               " > /sys/module/vfio_iommu_type1/parameters/"
                                               "dma_entry_limit"));
          }
          if (budget_case == BudgetCase::kExact || budget_case == BudgetCase::kPlenty) {
            CHECK_THAT(reason, Catch::Contains(std::to_string(input.budget.avail) + " available"));
          }
          if (budget_case == BudgetCase::kAbsent) {
            CHECK_THAT(reason, Catch::Contains("unknown"));
          }
          if (budget_case == BudgetCase::kUnlimited) {
            CHECK_THAT(reason, Catch::Contains("no entry limit"));
          }
          CHECK_THAT(reason, Catch::Contains(format_size(layout.pinned)));
          if (memlock_case == MemlockCase::kTooLow && mode != MappingMode::kLazy) {
            CHECK_THAT(reason, Catch::Contains("RLIMIT_MEMLOCK of " +
                                               format_size(layout.pinned - 4 * kKiB)));
            CHECK_THAT(reason,
                       Catch::Contains("ulimit -l " + std::to_string(layout.pinned / kKiB)));
            CHECK_THAT(reason, Catch::Contains("LimitMEMLOCK=" + std::to_string(layout.pinned)));
          }
          if (memlock_case == MemlockCase::kCapIpcLock) {
            CHECK_THAT(reason, Catch::Contains("CAP_IPC_LOCK"));
          }
          if (!eager && mode != MappingMode::kLazy) {
            CHECK_THAT(reason, Catch::Contains("put the device behind the virtual IOMMU (iommu=on)"));
          }
          if (!eager && mode == MappingMode::kAuto) {
            CHECK_THAT(reason, Catch::Contains("needs the device behind the virtual IOMMU"));
          }
          if (entries_ok) {
            CHECK_THAT(reason, !Catch::Contains("raise vfio_iommu_type1.dma_entry_limit"));
          }
          if (memlock_ok) {
            CHECK_THAT(reason, !Catch::Contains("ulimit -l"));
          }
        }
      }
    }
  }
}

TEST_CASE("planner: RAM in an IOVA hole is an error naming the range") {
  PlanInput input;
  // 32 MiB at 0xfe000000 covers the MSI window 0xfee00000-0xfeefffff.
  input.ram = {{0xfe000000, 32 * kMiB, kHost}};
  input.iova_ranges = kX86Ranges;
  for (auto mode : {MappingMode::kAuto, MappingMode::kEager, MappingMode::kLazy}) {
    input.requested = mode;
    auto plan = plan_dma(input);
    REQUIRE_FALSE(plan.ok());
    CHECK_THAT(plan.error().message(), Catch::Contains("guest RAM 0xfe000000-0xffffffff"));
    CHECK_THAT(plan.error().message(), Catch::Contains("0xfee00000-0xfeefffff"));
  }
  // RAM past the last valid IOVA: the hole runs to the end of the RAM.
  input.ram = {{0x7fffe00000, 4 * kMiB, kHost}};
  auto plan = plan_dma(input);
  REQUIRE_FALSE(plan.ok());
  CHECK_THAT(plan.error().message(), Catch::Contains("0x8000000000-0x80001fffff"));
}

TEST_CASE("planner: entries name their guest range and keep IOVA = GPA") {
  auto entries = eager_entries(
      {{memory::layout::kRam64Start, 1 * kGiB, kHost + 3 * kGiB}, {0, 3 * kGiB, kHost}}, kX86Ranges,
      0x1000);
  REQUIRE(entries.ok());
  REQUIRE(entries->size() == 2);
  CHECK((*entries)[0].iova == 0);
  CHECK((*entries)[0].host == kHost);
  CHECK((*entries)[0].purpose == "guest RAM 0x0-0xbfffffff");
  CHECK((*entries)[1].iova == memory::layout::kRam64Start);
  CHECK((*entries)[1].host == kHost + 3 * kGiB);
  CHECK((*entries)[1].purpose == "guest RAM 0x100000000-0x13fffffff");
}

TEST_CASE("planner: regions contiguous in GPA and host are merged") {
  auto entries = eager_entries(
      {{256 * kMiB, 256 * kMiB, kHost + 256 * kMiB}, {0, 256 * kMiB, kHost}}, kX86Ranges, 0x1000);
  REQUIRE(entries.ok());
  REQUIRE(entries->size() == 1);
  CHECK((*entries)[0].size == 512 * kMiB);
  CHECK((*entries)[0].host == kHost);
}

TEST_CASE("planner: RAM across adjacent IOVA ranges is split at the boundary") {
  const std::vector<IovaRange> adjacent = {{0x0, 0xfffffff}, {0x10000000, 0xffffffff}};
  auto entries = eager_entries({{0, 512 * kMiB, kHost}}, adjacent, 0x1000);
  REQUIRE(entries.ok());
  REQUIRE(entries->size() == 2);
  CHECK((*entries)[0].size == 256 * kMiB);
  CHECK((*entries)[1].iova == 256 * kMiB);
  CHECK((*entries)[1].host == kHost + 256 * kMiB);
}

TEST_CASE("planner: without IOVA ranges every IOVA is valid") {
  auto entries = eager_entries({{0xfe000000, 32 * kMiB, kHost}}, {}, 0);
  REQUIRE(entries.ok());
  CHECK(entries->size() == 1);
}

TEST_CASE("planner: bad layouts") {
  auto overlap = eager_entries({{0, 2 * kMiB, kHost}, {1 * kMiB, 2 * kMiB, kHost + 8 * kMiB}},
                               kX86Ranges, 0x1000);
  REQUIRE_FALSE(overlap.ok());
  CHECK_THAT(overlap.error().message(), Catch::Contains("overlaps 0x0-0x1fffff"));
  auto misaligned = eager_entries({{0x800, 2 * kMiB, kHost}}, kX86Ranges, 0x40201000);
  REQUIRE_FALSE(misaligned.ok());
  CHECK_THAT(misaligned.error().message(), Catch::Contains("4 KiB pages"));
  auto empty = eager_entries({{0, 0, kHost}}, kX86Ranges, 0x1000);
  REQUIRE_FALSE(empty.ok());
}

TEST_CASE("planner: peer-to-peer BARs take entries, not pinned bytes; the hotplug reserve too") {
  PlanInput input;
  input.ram = {{0, 512 * kMiB, kHost}};
  input.iova_ranges = kX86Ranges;
  input.memlock = {512 * kMiB, false};
  input.p2p_entries = 2;
  input.budget = {AvailSource::kCapability, 3};
  auto plan = plan_dma(input);
  REQUIRE(plan.ok());
  CHECK(plan->planned_entries == 3);
  CHECK(plan->pinned_bytes == 512 * kMiB);
  CHECK(plan->decision == Decision::kEager);
  CHECK_THAT(plan->reason, Catch::Contains("(1 guest RAM, 2 peer-to-peer BAR, 0 hotplug reserve)"));

  input.hotplug_reserve = 1;
  plan = plan_dma(input);
  REQUIRE(plan.ok());
  CHECK(plan->planned_entries == 3);
  CHECK(plan->decision == Decision::kRefuse);
  CHECK_THAT(plan->reason, Catch::Contains("4 DMA entries"));
  CHECK_THAT(plan->reason, Catch::Contains("dma_entry_limit to at least 4"));
}

TEST_CASE("planner: behind a virtual IOMMU, auto falls back to lazy and lazy is allowed") {
  PlanInput input;
  input.ram = {{0, 512 * kMiB, kHost}};
  input.budget = {AvailSource::kCapability, 0};
  input.behind_viommu = true;
  input.requested = MappingMode::kAuto;
  auto plan = plan_dma(input);
  REQUIRE(plan.ok());
  CHECK(plan->decision == Decision::kLazy);
  input.requested = MappingMode::kLazy;
  plan = plan_dma(input);
  REQUIRE(plan.ok());
  CHECK(plan->decision == Decision::kLazy);
  input.requested = MappingMode::kEager;
  plan = plan_dma(input);
  REQUIRE(plan.ok());
  CHECK(plan->decision == Decision::kRefuse);
}

TEST_CASE("planner: mapping modes parse") {
  CHECK(*parse_mapping_mode("auto") == MappingMode::kAuto);
  CHECK(*parse_mapping_mode("eager") == MappingMode::kEager);
  CHECK(*parse_mapping_mode("lazy") == MappingMode::kLazy);
  auto bad = parse_mapping_mode("sometimes");
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.error().message(), Catch::Contains("'sometimes' is not a DMA mapping mode; give auto, eager or lazy"));
}

TEST_CASE("planner: ram_spans reads guest memory") {
  auto memory = memory::GuestMemory::create(64 * kMiB);
  REQUIRE(memory.ok());
  auto spans = ram_spans(*memory);
  REQUIRE(spans.size() == memory->regions().size());
  CHECK(spans[0].gpa == 0);
  CHECK(spans[0].size == 64 * kMiB);
  CHECK(spans[0].host == reinterpret_cast<std::uintptr_t>(memory->regions()[0].host()));
}

}  // namespace
}  // namespace keel::vfio
