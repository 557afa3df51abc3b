#include "devices/vfio/lazy_dma.hpp"

#include <linux/vfio.h>
#include <linux/virtio_iommu.h>

#include <catch2/catch.hpp>

#include "base/size.hpp"
#include "memory/guest_memory.hpp"
#include "tests/unit/vfio/fake_vfio_sys.hpp"
#include "tests/unit/vfio/mapper_rig.hpp"

namespace keel::vfio {
namespace {

using testing::FakeKernelConfig;
using testing::MapperRig;
using devices::DmaMapping;
using devices::DmaStatus;

constexpr std::uint32_t kRW = devices::kDmaRead | devices::kDmaWrite;

FakeKernelConfig with_limit(std::uint32_t limit) {
  FakeKernelConfig config;
  config.dma_entry_limit = limit;
  return config;
}

memory::GuestMemory ram(std::uint64_t size = 16 * kMiB) {
  auto memory = memory::GuestMemory::create(size);
  REQUIRE(memory.ok());
  return std::move(memory).value();
}

DmaMapping page(std::uint64_t n, std::uint32_t flags = kRW) {
  return DmaMapping{0x100000000 + n * 0x10000, 4096, n * 4096, flags};
}

TEST_CASE("lazy: a guest mapping becomes one host entry at the guest's IOVA") {
  MapperRig rig(with_limit(24));
  auto memory = ram();
  LazyDma lazy(*rig.mapper, memory, 0);

  const DmaMapping m{0x80000000, 2 * kMiB, 4 * kMiB, kRW};
  REQUIRE(lazy.map(m) == DmaStatus::kOk);
  REQUIRE(rig.fake->mappings().size() == 1);
  const auto& held = rig.fake->mappings().at(0x80000000);
  CHECK(held.size == 2 * kMiB);
  CHECK(held.vaddr == reinterpret_cast<std::uint64_t>(memory.translate(4 * kMiB, 2 * kMiB)));
  CHECK(held.flags == (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE));
  CHECK(rig.fake->avail() == 23);
  CHECK(lazy.headroom() == 23u);
  CHECK(lazy.counters().maps == 1);

  REQUIRE(lazy.unmap(m) == DmaStatus::kOk);
  CHECK(rig.fake->mappings().empty());
  CHECK(rig.fake->avail() == 24);
  CHECK(lazy.counters().unmaps == 1);
  CHECK(lazy.mappings() == 0);
}

TEST_CASE("lazy: the guest's access flags reach the kernel") {
  MapperRig rig;
  auto memory = ram();
  LazyDma lazy(*rig.mapper, memory, 0);
  REQUIRE(lazy.map(page(0, devices::kDmaRead)) == DmaStatus::kOk);
  REQUIRE(lazy.map(page(1, devices::kDmaWrite)) == DmaStatus::kOk);
  CHECK(rig.fake->mappings().at(page(0).iova).flags == VFIO_DMA_MAP_FLAG_READ);
  CHECK(rig.fake->mappings().at(page(1).iova).flags == VFIO_DMA_MAP_FLAG_WRITE);
  CHECK(lazy.map(page(2, 0)) == DmaStatus::kInvalid);
  CHECK(lazy.map(page(3, devices::kDmaMmio | kRW)) == DmaStatus::kUnsupported);
  CHECK(rig.fake->mappings().size() == 2);
  CHECK(lazy.counters().refused_invalid == 2);
}

TEST_CASE("lazy: the budget is enforced before the kernel says ENOSPC") {
  MapperRig rig(with_limit(8));
  auto memory = ram();
  LazyDma lazy(*rig.mapper, memory, 2);  // keep 2 entries free
  CHECK(lazy.low_water() == 2);
  for (std::uint64_t i = 0; i < 6; ++i) {
    REQUIRE(lazy.map(page(i)) == DmaStatus::kOk);
  }
  CHECK(lazy.headroom() == 0u);
  const int maps_before = rig.fake->calls(VFIO_IOMMU_MAP_DMA);
  CHECK(lazy.map(page(6)) == DmaStatus::kNoMemory);
  CHECK(rig.fake->calls(VFIO_IOMMU_MAP_DMA) == maps_before);  // the kernel was not asked
  CHECK(lazy.counters().refused_budget == 1);
  CHECK(lazy.counters().kernel_failures == 0);
  CHECK(rig.fake->avail() == 2);
  CHECK(rig.mapper->peak_entries() == 6);

  // Freeing one lets the next in.
  REQUIRE(lazy.unmap(page(0)) == DmaStatus::kOk);
  CHECK(lazy.map(page(6)) == DmaStatus::kOk);
  auto rec = rig.mapper->reconcile();
  REQUIRE(rec.ok());
  CHECK(rec->consistent);
}

TEST_CASE("lazy: long-held mappings of one direction cannot lock out the others") {
  MapperRig rig(with_limit(128));  // a reserve of 128 / 8 = 16 entries
  auto memory = ram();
  LazyDma lazy(*rig.mapper, memory, 0);
  CHECK(lazy.progress_reserve() == 16);
  // A NIC filling its receive ring (device writes) stops 16 short of the limit...
  std::uint64_t n = 0;
  while (lazy.map(page(n, devices::kDmaWrite)) == DmaStatus::kOk) {
    ++n;
  }
  CHECK(n == 112);
  CHECK(lazy.counters().refused_budget == 1);
  CHECK(lazy.counters().refused_reserve == 1);
  // ...so its transmit buffers (device reads) and a ring (both) still get entries, up to the last.
  for (std::uint64_t i = 0; i < 15; ++i) {
    REQUIRE(lazy.map(page(200 + i, devices::kDmaRead)) == DmaStatus::kOk);
  }
  REQUIRE(lazy.map(page(300, kRW)) == DmaStatus::kOk);
  CHECK(lazy.headroom() == 0u);
  CHECK(lazy.map(page(301, kRW)) == DmaStatus::kNoMemory);
  CHECK(lazy.counters().refused_budget == 2);
  CHECK(lazy.counters().refused_reserve == 1);  // the budget itself refused that one
  // A transmit buffer given back is room for the next transmit, never for more receive buffers.
  REQUIRE(lazy.unmap(page(200, devices::kDmaRead)) == DmaStatus::kOk);
  CHECK(lazy.map(page(n, devices::kDmaWrite)) == DmaStatus::kNoMemory);
  CHECK(lazy.map(page(200, devices::kDmaRead)) == DmaStatus::kOk);
  CHECK(rig.mapper->peak_entries() == 128);
  auto rec = rig.mapper->reconcile();
  REQUIRE(rec.ok());
  CHECK(rec->consistent);
}

TEST_CASE("lazy: a class that holds the reserve's worth already waits outside it") {
  MapperRig rig(with_limit(64));  // reserve 8
  auto memory = ram();
  LazyDma lazy(*rig.mapper, memory, 0);
  REQUIRE(lazy.progress_reserve() == 8);
  for (std::uint64_t i = 0; i < 56; ++i) {
    REQUIRE(lazy.map(page(i, devices::kDmaRead)) == DmaStatus::kOk);
  }
  CHECK(lazy.map(page(56, devices::kDmaRead)) == DmaStatus::kNoMemory);
  for (std::uint64_t i = 0; i < 8; ++i) {  // disk reads (device writes) fill the reserve
    REQUIRE(lazy.map(page(100 + i, devices::kDmaWrite)) == DmaStatus::kOk);
  }
  CHECK(lazy.map(page(108, devices::kDmaWrite)) == DmaStatus::kNoMemory);
}

TEST_CASE("lazy: below 32 entries nothing is held back; above 512, 64 at most") {
  {
    MapperRig rig(with_limit(31));
    auto memory = ram();
    LazyDma lazy(*rig.mapper, memory, 0);
    CHECK(lazy.progress_reserve() == 0);
    for (std::uint64_t i = 0; i < 31; ++i) {
      REQUIRE(lazy.map(page(i, devices::kDmaWrite)) == DmaStatus::kOk);
    }
    CHECK(lazy.map(page(31, devices::kDmaRead)) == DmaStatus::kNoMemory);
  }
  MapperRig rig(with_limit(65535));
  auto memory = ram();
  CHECK(LazyDma(*rig.mapper, memory, 0).progress_reserve() == 64);
}

TEST_CASE("lazy: the listener hears when the low-water mark is reached and left, once each") {
  MapperRig rig(with_limit(6));
  auto memory = ram();
  LazyDma lazy(*rig.mapper, memory, 2);
  std::vector<std::pair<bool, std::uint64_t>> heard;
  lazy.set_low_water_listener([&](bool reached, std::uint64_t used) { heard.emplace_back(reached, used); });
  for (std::uint64_t i = 0; i < 3; ++i) {
    REQUIRE(lazy.map(page(i)) == DmaStatus::kOk);
  }
  CHECK(heard.empty());
  REQUIRE(lazy.map(page(3)) == DmaStatus::kOk);  // 4 used, 2 free: the reserve
  CHECK(heard == std::vector<std::pair<bool, std::uint64_t>>{{true, 4}});
  CHECK(lazy.map(page(4)) == DmaStatus::kNoMemory);  // refused: no second notice
  CHECK(heard.size() == 1);
  REQUIRE(lazy.unmap(page(0)) == DmaStatus::kOk);
  CHECK(heard.back() == std::pair<bool, std::uint64_t>{false, 3});
  REQUIRE(lazy.unmap(page(1)) == DmaStatus::kOk);
  CHECK(heard.size() == 2);
}

TEST_CASE("lazy: an ENOSPC from another user of the container is caught and never a success") {
  MapperRig rig(with_limit(8));
  auto memory = ram();
  LazyDma lazy(*rig.mapper, memory, 0);
  REQUIRE(lazy.map(page(0)) == DmaStatus::kOk);
  rig.fake->take_entries(7);  // someone else takes the rest behind Keel's back
  CHECK(lazy.headroom() == 7u);  // Keel's own count does not know yet

  CHECK(lazy.map(page(1)) == DmaStatus::kNoMemory);
  CHECK(lazy.counters().kernel_failures == 1);
  CHECK(rig.fake->mappings().size() == 1);
  CHECK(lazy.mappings() == 1);
  // The mapper re-read DMA_AVAIL: the accounting knows now, and refuses up front.
  const auto& last = rig.mapper->last_reconciliation();
  REQUIRE(last);
  CHECK_FALSE(last->consistent);  // the kernel counts 8 entries, Keel holds 1: reported, not hidden
  CHECK(lazy.headroom() == 0u);
  const int maps_before = rig.fake->calls(VFIO_IOMMU_MAP_DMA);
  CHECK(lazy.map(page(2)) == DmaStatus::kNoMemory);
  CHECK(rig.fake->calls(VFIO_IOMMU_MAP_DMA) == maps_before);
  CHECK(lazy.counters().refused_budget == 1);

  // Unmapping Keel's entry gives one back, by the kernel's count as well.
  REQUIRE(lazy.unmap(page(0)) == DmaStatus::kOk);
  CHECK(lazy.headroom() == 1u);
}

TEST_CASE("lazy: without a reported budget only the kernel stops a MAP") {
  FakeKernelConfig config = with_limit(2);
  config.report_dma_avail = false;
  MapperRig rig(config);
  auto memory = ram();
  LazyDma lazy(*rig.mapper, memory, 1);
  CHECK_FALSE(lazy.headroom());
  REQUIRE(lazy.map(page(0)) == DmaStatus::kOk);
  REQUIRE(lazy.map(page(1)) == DmaStatus::kOk);
  CHECK(lazy.map(page(2)) == DmaStatus::kNoMemory);
  CHECK(lazy.counters().kernel_failures == 1);
  CHECK(rig.fake->mappings().size() == 2);
}

TEST_CASE("lazy: kernel refusals map to the guest's statuses") {
  SECTION("outside the host's IOVA ranges: S_RANGE") {
    MapperRig rig;
    auto memory = ram();
    LazyDma lazy(*rig.mapper, memory, 0);
    CHECK(lazy.map({0xfee00000, 4096, 0, kRW}) == DmaStatus::kRange);  // the MSI window
    CHECK(lazy.counters().kernel_failures == 1);
  }
  SECTION("memlock: S_NOMEM") {
    FakeKernelConfig config;
    config.memlock_bytes = 8192;
    MapperRig rig(config);
    auto memory = ram();
    LazyDma lazy(*rig.mapper, memory, 0);
    CHECK(lazy.map({0x10000, 3 * 4096, 0, kRW}) == DmaStatus::kNoMemory);
  }
  SECTION("a kernel error of another kind: S_IOERR, and nothing recorded") {
    MapperRig rig;
    auto memory = ram();
    LazyDma lazy(*rig.mapper, memory, 0);
    rig.fake->inject(VFIO_IOMMU_MAP_DMA, 1, EFAULT);
    CHECK(lazy.map(page(0)) == DmaStatus::kIoError);
    CHECK(lazy.mappings() == 0);
  }
}

TEST_CASE("lazy: what is not guest RAM or not page-aligned is refused without the kernel") {
  MapperRig rig;
  auto memory = ram(16 * kMiB);
  LazyDma lazy(*rig.mapper, memory, 0);
  CHECK(lazy.map({0x10000, 4096, 16 * kMiB, kRW}) == DmaStatus::kInvalid);      // past RAM
  CHECK(lazy.map({0x10000, 8192, 16 * kMiB - 4096, kRW}) == DmaStatus::kInvalid);  // straddles
  CHECK(lazy.map({0x10000, 4096, 0x800, kRW}) == DmaStatus::kInvalid);          // gpa
  CHECK(lazy.map({0x10800, 4096, 0, kRW}) == DmaStatus::kInvalid);              // iova
  CHECK(lazy.map({0x10000, 100, 0, kRW}) == DmaStatus::kInvalid);               // size
  CHECK(lazy.map({0x10000, 0, 0, kRW}) == DmaStatus::kInvalid);
  CHECK(lazy.map({0xfffffffffffff000, 0x2000, 0, kRW}) == DmaStatus::kInvalid);  // wraps
  CHECK(rig.fake->calls(VFIO_IOMMU_MAP_DMA) == 0);
  CHECK(lazy.counters().refused_invalid == 7);
}

TEST_CASE("lazy: endpoints sharing a container share its IOVA space") {
  MapperRig rig(with_limit(4));
  auto memory = ram();
  LazyDma lazy(*rig.mapper, memory, 0);
  LazyIommuBackend backend;
  backend.add_endpoint(0x08, lazy);
  backend.add_endpoint(0x10, lazy);
  CHECK(backend.has_endpoint(0x08));
  CHECK_FALSE(backend.has_endpoint(0x18));
  CHECK(backend.map(0x18, page(0)) == DmaStatus::kNoEntry);

  // One domain with both endpoints: the same mapping twice takes one entry.
  REQUIRE(backend.map(0x08, page(0)) == DmaStatus::kOk);
  REQUIRE(backend.map(0x10, page(0)) == DmaStatus::kOk);
  CHECK(rig.fake->mappings().size() == 1);
  CHECK(lazy.counters().shared_maps == 1);
  // A different mapping over the same IOVA cannot be isolated in one container.
  DmaMapping clash = page(0);
  clash.gpa += 4096;
  CHECK(backend.map(0x10, clash) == DmaStatus::kInvalid);
  DmaMapping read_only = page(0, devices::kDmaRead);
  CHECK(backend.map(0x08, read_only) == DmaStatus::kInvalid);

  // The entry lives until its last user unmaps it.
  REQUIRE(backend.unmap(0x08, page(0)) == DmaStatus::kOk);
  CHECK(rig.fake->mappings().size() == 1);
  REQUIRE(backend.unmap(0x10, page(0)) == DmaStatus::kOk);
  CHECK(rig.fake->mappings().empty());
  CHECK(backend.unmap(0x10, page(0)) == DmaStatus::kNoEntry);
}

TEST_CASE("lazy: overlap checks see neighbours on both sides") {
  MapperRig rig;
  auto memory = ram();
  LazyDma lazy(*rig.mapper, memory, 0);
  REQUIRE(lazy.map({0x20000, 0x4000, 0, kRW}) == DmaStatus::kOk);
  CHECK(lazy.map({0x1f000, 0x2000, 0x8000, kRW}) == DmaStatus::kInvalid);  // into its start
  CHECK(lazy.map({0x23000, 0x1000, 0x8000, kRW}) == DmaStatus::kInvalid);  // its last page
  CHECK(lazy.map({0x10000, 0x20000, 0x8000, kRW}) == DmaStatus::kInvalid);  // covers it
  CHECK(lazy.map({0x1f000, 0x1000, 0x8000, kRW}) == DmaStatus::kOk);   // just below
  CHECK(lazy.map({0x24000, 0x1000, 0x9000, kRW}) == DmaStatus::kOk);   // just above
  CHECK(rig.fake->mappings().size() == 3);
}

TEST_CASE("lazy: an unmap that is not exactly a held mapping is S_NOENT; a kernel failure keeps it") {
  MapperRig rig;
  auto memory = ram();
  LazyDma lazy(*rig.mapper, memory, 0);
  REQUIRE(lazy.map({0x20000, 0x4000, 0, kRW}) == DmaStatus::kOk);
  CHECK(lazy.unmap({0x20000, 0x1000, 0, kRW}) == DmaStatus::kNoEntry);
  CHECK(lazy.unmap({0x21000, 0x1000, 0, kRW}) == DmaStatus::kNoEntry);
  rig.fake->inject(VFIO_IOMMU_UNMAP_DMA, 1, EIO);
  CHECK(lazy.unmap({0x20000, 0x4000, 0, kRW}) == DmaStatus::kIoError);
  CHECK(lazy.mappings() == 1);
  CHECK(rig.fake->mappings().size() == 1);
  CHECK(lazy.unmap({0x20000, 0x4000, 0, kRW}) == DmaStatus::kOk);
  CHECK(rig.fake->mappings().empty());
}

TEST_CASE("lazy: an unmap the kernel answers with another size forgets the mapping") {
  MapperRig rig(with_limit(64));  // reserve 8
  auto memory = ram();
  LazyDma lazy(*rig.mapper, memory, 0);
  for (std::uint64_t i = 0; i < 56; ++i) {  // device reads up to the reserve: 8 entries left
    REQUIRE(lazy.map(page(i, devices::kDmaRead)) == DmaStatus::kOk);
  }
  const DmaMapping two{0x200000000, 0x2000, 0x100000, devices::kDmaWrite};
  REQUIRE(lazy.map(two) == DmaStatus::kOk);
  // Another user of the container puts a one-page entry where Keel's two-page one was: the
  // kernel then unmaps one page, not the two Keel asked for.
  auto container_ioctl = [&](unsigned long request, auto& arg) {
    arg.argsz = sizeof arg;
    REQUIRE(rig.fake->ioctl(rig.container->fd(), request, &arg, "another user").ok());
  };
  vfio_iommu_type1_dma_unmap theirs{};
  theirs.iova = two.iova;
  theirs.size = two.size;
  container_ioctl(VFIO_IOMMU_UNMAP_DMA, theirs);
  vfio_iommu_type1_dma_map other{};
  other.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
  other.vaddr = reinterpret_cast<std::uint64_t>(memory.translate(0x100000, 0x1000));
  other.iova = two.iova;
  other.size = 0x1000;
  container_ioctl(VFIO_IOMMU_MAP_DMA, other);
  CHECK(lazy.unmap(two) == DmaStatus::kIoError);
  CHECK(lazy.counters().kernel_failures == 1);
  CHECK(lazy.mappings() == 56);  // gone from the guest's table as from the kernel's
  CHECK(rig.fake->mappings().size() == 56);
  // Its class count went with it: device writes may take all 8 entries of the reserve again.
  for (std::uint64_t i = 0; i < 8; ++i) {
    REQUIRE(lazy.map(page(100 + i, devices::kDmaWrite)) == DmaStatus::kOk);
  }
  CHECK(lazy.headroom() == 0u);
}

}  // namespace
}  // namespace keel::vfio

namespace keel::vfio {
namespace {

// A container holding the eager plan for `memory` (IOVA = GPA), as BudgetedContainer leaves it.
void map_eager(MapperRig& rig, const memory::GuestMemory& memory) {
  for (const memory::RamRegion& region : memory.regions()) {
    REQUIRE(rig.mapper
                ->map(region.gpa(), region.size(), reinterpret_cast<std::uint64_t>(region.host()),
                      "guest RAM")
                .ok());
  }
}

TEST_CASE("lazy over eager: identity mappings are served by the eager entries") {
  MapperRig rig(with_limit(8));
  auto memory = ram(16 * kMiB);
  map_eager(rig, memory);
  LazyDma lazy(*rig.mapper, memory, 0, /*over_eager=*/true);
  CHECK(lazy.eager_active());
  const int maps = rig.fake->calls(VFIO_IOMMU_MAP_DMA);

  // Linux's identity domain maps RAM 1:1 in pieces.
  REQUIRE(lazy.map({0, 8 * kMiB, 0, kRW}) == DmaStatus::kOk);
  REQUIRE(lazy.map({8 * kMiB, 8 * kMiB, 8 * kMiB, devices::kDmaRead}) == DmaStatus::kOk);
  CHECK(rig.fake->calls(VFIO_IOMMU_MAP_DMA) == maps);
  CHECK(lazy.counters().served_by_eager == 2);
  CHECK(rig.fake->mappings().size() == 1);
  // Unmapping them leaves the eager entry in place.
  REQUIRE(lazy.unmap({0, 8 * kMiB, 0, kRW}) == DmaStatus::kOk);
  REQUIRE(lazy.unmap({8 * kMiB, 8 * kMiB, 8 * kMiB, devices::kDmaRead}) == DmaStatus::kOk);
  CHECK(rig.fake->mappings().size() == 1);
  CHECK(lazy.eager_active());
}

TEST_CASE("lazy over eager: the first translated mapping switches to lazy") {
  MapperRig rig(with_limit(8));
  auto memory = ram(16 * kMiB);
  map_eager(rig, memory);
  LazyDma lazy(*rig.mapper, memory, 0, /*over_eager=*/true);

  const DmaMapping translated{0x100000000, 4096, 4 * kMiB, kRW};
  REQUIRE(lazy.map(translated) == DmaStatus::kOk);
  CHECK_FALSE(lazy.eager_active());
  REQUIRE(rig.fake->mappings().size() == 1);  // the eager entry is gone, the guest's is there
  CHECK(rig.fake->mappings().count(0x100000000) == 1);
  CHECK(rig.fake->avail() == 7);
  // From now on an identity mapping costs an entry like any other.
  REQUIRE(lazy.map({0, 4096, 0, kRW}) == DmaStatus::kOk);
  CHECK(rig.fake->mappings().size() == 2);
  CHECK(lazy.counters().served_by_eager == 0);
}

TEST_CASE("lazy over eager: no switch while identity mappings are still held") {
  MapperRig rig(with_limit(8));
  auto memory = ram(16 * kMiB);
  map_eager(rig, memory);
  LazyDma lazy(*rig.mapper, memory, 0, /*over_eager=*/true);
  REQUIRE(lazy.map({0, 4096, 0, kRW}) == DmaStatus::kOk);  // another endpoint's identity domain
  CHECK(lazy.map({0x100000000, 4096, 4096, kRW}) == DmaStatus::kInvalid);
  CHECK(lazy.eager_active());
  CHECK(rig.fake->mappings().size() == 1);
  CHECK(rig.fake->mappings().count(0) == 1);
}

TEST_CASE("lazy over eager: a failed switch keeps the eager plan and says so") {
  FakeKernelConfig config = with_limit(8);
  config.unmap_all = false;  // one UNMAP per entry
  MapperRig rig(config);
  auto memory = ram(16 * kMiB);
  map_eager(rig, memory);
  LazyDma lazy(*rig.mapper, memory, 0, /*over_eager=*/true);
  rig.fake->inject(VFIO_IOMMU_UNMAP_DMA, 1, EIO);
  CHECK(lazy.map({0x100000000, 4096, 4096, kRW}) == DmaStatus::kIoError);
  CHECK(lazy.eager_active());
  CHECK(lazy.counters().kernel_failures == 1);
}

}  // namespace
}  // namespace keel::vfio
