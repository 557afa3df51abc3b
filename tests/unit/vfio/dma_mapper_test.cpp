#include "devices/vfio/dma_mapper.hpp"

#include <linux/vfio.h>

#include <memory>
#include <optional>

#include <catch2/catch.hpp>

#include "base/size.hpp"
#include "devices/vfio/container_fd.hpp"
#include "devices/vfio/group.hpp"
#include "devices/vfio/iommu_info.hpp"
#include "tests/unit/vfio/fake_vfio_sys.hpp"
#include "tests/unit/vfio/mapper_rig.hpp"

namespace keel::vfio {
namespace {

using testing::FakeKernelConfig;
using testing::FakeVfioSys;
using testing::MapperRig;

constexpr std::uint64_t kHost = 0x7f00'0000'0000;

FakeKernelConfig with_limit(std::uint32_t limit) {
  FakeKernelConfig config;
  config.dma_entry_limit = limit;
  return config;
}

// Four guest RAM regions, none contiguous with another: four entries.
DmaPlan four_entry_plan(const DmaBudget& budget) {
  PlanInput input;
  for (std::uint64_t i = 0; i < 4; ++i) {
    input.ram.push_back({i * 2 * kMiB, 1 * kMiB, kHost + i * 2 * kMiB});
  }
  input.budget = budget;
  auto plan = plan_dma(input);
  REQUIRE(plan.ok());
  REQUIRE(plan->decision == Decision::kEager);
  REQUIRE(plan->entries.size() == 4);
  return *plan;
}

TEST_CASE("mapper: map and unmap keep Keel's table and the kernel's count together") {
  MapperRig rig(with_limit(24));
  DmaMapper& mapper = *rig.mapper;
  REQUIRE(mapper.map(0x0, 1 * kMiB, kHost, "a").ok());
  REQUIRE(mapper.map(0x200000, 2 * kMiB, kHost + 2 * kMiB, "b").ok());
  REQUIRE(mapper.map(0x800000, 4 * kMiB, kHost + 8 * kMiB, "c").ok());
  CHECK(rig.fake->avail() == 21);
  CHECK(rig.fake->mappings().size() == 3);
  CHECK(mapper.entries().size() == 3);
  CHECK(mapper.mapped_bytes() == 7 * kMiB);
  CHECK(mapper.peak_entries() == 3);
  CHECK(mapper.entries().at(0x200000).purpose == "b");
  CHECK(mapper.entries().at(0x200000).host == kHost + 2 * kMiB);

  auto rec = mapper.reconcile();
  REQUIRE(rec.ok());
  CHECK(rec->checked);
  CHECK(rec->consistent);
  CHECK(rec->kernel_entries == 3);
  CHECK(rec->now.avail == 21);

  REQUIRE(mapper.unmap(0x200000).ok());
  CHECK(rig.fake->avail() == 22);
  CHECK(rig.fake->mappings().count(0x200000) == 0);
  CHECK(mapper.entries().size() == 2);
  CHECK(mapper.mapped_bytes() == 5 * kMiB);
  CHECK(mapper.peak_entries() == 3);

  auto missing = mapper.unmap(0x200000);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().errno_value() == ENOENT);
  CHECK(mapper.failed_maps().total() == 0);
}

TEST_CASE("mapper: ENOSPC, ENOMEM, EEXIST and EINVAL are kept apart") {
  FakeKernelConfig config = with_limit(3);
  config.memlock_bytes = 8 * kMiB;
  MapperRig rig(config);
  DmaMapper& mapper = *rig.mapper;
  REQUIRE(mapper.map(0x0, 4 * kMiB, kHost, "guest RAM low").ok());

  auto overlap = mapper.map(0x100000, 1 * kMiB, kHost, "overlapping");
  REQUIRE_FALSE(overlap.ok());
  CHECK(overlap.error().errno_value() == EEXIST);
  CHECK(classify_map_errno(overlap.error().errno_value()) == MapFailure::kOverlap);
  CHECK_THAT(overlap.error().message(), Catch::Contains("overlaps Keel's entry iova 0x0"));
  CHECK_THAT(overlap.error().message(), Catch::Contains("guest RAM low"));

  auto hole = mapper.map(0xfee00000, 1 * kMiB, kHost, "in the MSI window");
  REQUIRE_FALSE(hole.ok());
  CHECK(hole.error().errno_value() == EINVAL);
  CHECK_THAT(hole.error().message(), Catch::Contains("valid IOVA ranges"));

  auto pinned = mapper.map(0x1000000, 8 * kMiB, kHost, "too much to pin");
  REQUIRE_FALSE(pinned.ok());
  CHECK(pinned.error().errno_value() == ENOMEM);
  CHECK_THAT(pinned.error().message(), Catch::Contains("memlock"));

  REQUIRE(mapper.map(0x2000000, 1 * kMiB, kHost, "second").ok());
  REQUIRE(mapper.map(0x3000000, 1 * kMiB, kHost, "third").ok());
  auto full = mapper.map(0x4000000, 1 * kMiB, kHost, "one too many");
  REQUIRE_FALSE(full.ok());
  CHECK(full.error().errno_value() == ENOSPC);
  CHECK_THAT(full.error().message(), Catch::Contains("no DMA entries left (3 entries held"));
  CHECK_THAT(full.error().message(), Catch::Contains("avail_now 0"));
  CHECK_THAT(full.error().message(), Catch::Contains("dma_entry_limit"));

  const FailedMaps& failed = mapper.failed_maps();
  CHECK(failed.overlap == 1);
  CHECK(failed.outside_iova == 1);
  CHECK(failed.memlock == 1);
  CHECK(failed.budget == 1);
  CHECK(failed.other == 0);
  CHECK(failed.total() == 4);
  // Failures hold no entries: the table and the kernel still agree.
  CHECK(mapper.entries().size() == 3);
  REQUIRE(mapper.last_reconciliation().has_value());
  CHECK(mapper.last_reconciliation()->consistent);
  CHECK(mapper.last_reconciliation()->now.avail == 0);
}

TEST_CASE("mapper: reconcile reports a mismatch when someone else took entries") {
  MapperRig rig(with_limit(10));
  DmaMapper& mapper = *rig.mapper;
  REQUIRE(mapper.map(0x0, 1 * kMiB, kHost, "a").ok());
  REQUIRE(mapper.map(0x200000, 1 * kMiB, kHost, "b").ok());
  rig.fake->take_entries(1);
  auto rec = mapper.reconcile();
  REQUIRE(rec.ok());
  CHECK(rec->checked);
  CHECK_FALSE(rec->consistent);
  CHECK(rec->entries_held == 2);
  CHECK(rec->kernel_entries == 3);
  CHECK(rec->now.avail == 7);
  REQUIRE(mapper.last_reconciliation().has_value());
  CHECK_FALSE(mapper.last_reconciliation()->consistent);
}

TEST_CASE("mapper: reconcile cannot check an absent or unlimited budget, and says so") {
  FakeKernelConfig config;
  SECTION("absent") { config.report_dma_avail = false; }
  SECTION("unlimited") { config.unlimited = true; }
  MapperRig rig(config);
  REQUIRE(rig.mapper->map(0x0, 1 * kMiB, kHost, "a").ok());
  auto rec = rig.mapper->reconcile();
  REQUIRE(rec.ok());
  CHECK_FALSE(rec->checked);
  CHECK_FALSE(rec->consistent);
}

TEST_CASE("mapper: map_plan rolls back on the Nth failure and leaves nothing mapped") {
  const int failing = GENERATE(1, 2, 3, 4);
  const int err = GENERATE(ENOSPC, ENOMEM, EFAULT);
  MapperRig rig(with_limit(24));
  const std::uint32_t start = rig.fake->avail();
  const DmaPlan plan = four_entry_plan(rig.info.budget);
  rig.fake->inject(VFIO_IOMMU_MAP_DMA, rig.fake->calls(VFIO_IOMMU_MAP_DMA) + failing, err);
  auto st = rig.mapper->map_plan(plan);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().errno_value() == err);
  CHECK_THAT(st.error().message(), Catch::Contains("entry " + std::to_string(failing) + " of 4"));
  CHECK_THAT(st.error().message(),
             Catch::Contains(std::to_string(failing - 1) + " rolled back, 0 still held"));
  CHECK_THAT(st.error().message(), Catch::Contains("avail_now " + std::to_string(start)));
  CHECK(rig.mapper->entries().empty());
  CHECK(rig.mapper->mapped_bytes() == 0);
  CHECK(rig.fake->mappings().empty());
  CHECK(rig.fake->avail() == start);
  CHECK(rig.mapper->failed_maps().total() == 1);
  CHECK(rig.mapper->failed_maps().budget == (err == ENOSPC ? 1U : 0U));
  CHECK(rig.mapper->failed_maps().memlock == (err == ENOMEM ? 1U : 0U));
  CHECK(rig.mapper->failed_maps().other == (err == EFAULT ? 1U : 0U));
}

TEST_CASE("mapper: map_plan maps every entry and refuses a plan that is not eager") {
  MapperRig rig(with_limit(24));
  const DmaPlan plan = four_entry_plan(rig.info.budget);
  REQUIRE(rig.mapper->map_plan(plan).ok());
  CHECK(rig.fake->mappings().size() == 4);
  CHECK(rig.fake->avail() == 20);
  for (const auto& entry : plan.entries) {
    REQUIRE(rig.fake->mappings().count(entry.iova) == 1);
    CHECK(rig.fake->mappings().at(entry.iova).vaddr == entry.host);
    CHECK(rig.fake->mappings().at(entry.iova).size == entry.size);
  }
  DmaPlan refused = plan;
  refused.decision = Decision::kRefuse;
  refused.reason = "because";
  auto st = rig.mapper->map_plan(refused);
  REQUIRE_FALSE(st.ok());
  CHECK_THAT(st.error().message(), Catch::Contains("the decision is refused, not eager: because"));
  CHECK(rig.fake->mappings().size() == 4);
}

TEST_CASE("mapper: teardown returns the kernel's count to where it was") {
  SECTION("with VFIO_UNMAP_ALL") {
    MapperRig rig(with_limit(24));
    REQUIRE(rig.container->unmap_all_supported());
    REQUIRE(rig.mapper->map_plan(four_entry_plan(rig.info.budget)).ok());
    const int unmaps = rig.fake->calls(VFIO_IOMMU_UNMAP_DMA);
    rig.mapper.reset();  // the destructor tears down
    CHECK(rig.fake->unmap_all_calls() == 1);
    CHECK(rig.fake->calls(VFIO_IOMMU_UNMAP_DMA) - unmaps == 1);
    CHECK(rig.fake->mappings().empty());
    CHECK(rig.fake->avail() == 24);
  }
  SECTION("one entry at a time without the extension") {
    FakeKernelConfig config = with_limit(24);
    config.unmap_all = false;
    MapperRig rig(config);
    REQUIRE_FALSE(rig.container->unmap_all_supported());
    REQUIRE(rig.mapper->map_plan(four_entry_plan(rig.info.budget)).ok());
    const int unmaps = rig.fake->calls(VFIO_IOMMU_UNMAP_DMA);
    rig.mapper.reset();
    CHECK(rig.fake->unmap_all_calls() == 0);
    CHECK(rig.fake->calls(VFIO_IOMMU_UNMAP_DMA) - unmaps == 4);
    CHECK(rig.fake->mappings().empty());
    CHECK(rig.fake->avail() == 24);
  }
  SECTION("UNMAP_ALL failing falls back to one entry at a time") {
    MapperRig rig(with_limit(24));
    REQUIRE(rig.mapper->map_plan(four_entry_plan(rig.info.budget)).ok());
    const int unmaps = rig.fake->calls(VFIO_IOMMU_UNMAP_DMA);
    rig.fake->inject(VFIO_IOMMU_UNMAP_DMA, unmaps + 1, EINVAL);
    REQUIRE(rig.mapper->unmap_all().ok());
    CHECK(rig.fake->calls(VFIO_IOMMU_UNMAP_DMA) - unmaps == 5);
    CHECK(rig.mapper->entries().empty());
    CHECK(rig.fake->avail() == 24);
  }
}

TEST_CASE("mapper: an unmap the kernel refuses keeps the entry; one it under-reports is an error") {
  MapperRig rig(with_limit(24));
  REQUIRE(rig.mapper->map(0x0, 2 * kMiB, kHost, "a").ok());
  rig.fake->inject(VFIO_IOMMU_UNMAP_DMA, rig.fake->calls(VFIO_IOMMU_UNMAP_DMA) + 1, EBUSY);
  auto refused = rig.mapper->unmap(0x0);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().errno_value() == EBUSY);
  CHECK(rig.mapper->entries().size() == 1);
  CHECK(rig.fake->mappings().size() == 1);
  REQUIRE(rig.mapper->unmap(0x0).ok());
  CHECK(rig.fake->avail() == 24);
}

TEST_CASE("mapper: rejects empty and wrapping ranges before the kernel sees them") {
  MapperRig rig;
  const int maps = rig.fake->calls(VFIO_IOMMU_MAP_DMA);
  CHECK_FALSE(rig.mapper->map(0x0, 0, kHost, "empty").ok());
  CHECK_FALSE(rig.mapper->map(~0ULL - 0xfff, 0x2000, kHost, "wraps").ok());
  CHECK(rig.fake->calls(VFIO_IOMMU_MAP_DMA) == maps);
  CHECK(rig.mapper->failed_maps().total() == 0);
}

}  // namespace
}  // namespace keel::vfio
