#include "devices/vfio/budgeted_container.hpp"

#include <linux/vfio.h>

#include <memory>

#include <catch2/catch.hpp>

#include "base/size.hpp"
#include "tests/unit/vfio/fake_sysfs.hpp"
#include "tests/unit/vfio/fake_vfio_sys.hpp"

namespace keel::vfio {
namespace {

using testing::FakeDevice;
using testing::FakeKernelConfig;
using testing::FakeSysfs;
using testing::FakeVfioSys;

// Two devices in two groups on a fake kernel, with the sysfs tree to match.
struct VmRig {
  FakeSysfs sysfs;
  std::shared_ptr<FakeVfioSys> fake;
  BudgetedContainerConfig config;

  explicit VmRig(const FakeKernelConfig& kernel = {})
      : fake(std::make_shared<FakeVfioSys>(kernel)) {
    sysfs.add_device("0000:00:01.0", 1, "vfio-pci");
    sysfs.add_device("0000:00:02.0", 2, "vfio-pci");
    fake->add_group(1, {FakeDevice{"0000:00:01.0", 0, {}, {}}});
    fake->add_group(2, {FakeDevice{"0000:00:02.0", 0, {}, {}}});
    config.device_paths = {sysfs.device_path("0000:00:01.0"), sysfs.device_path("0000:00:02.0")};
    config.sysfs_root = sysfs.root();
    config.memlock = MemlockLimit{kMemlockUnlimited, false};
  }
};

FakeKernelConfig with_limit(std::uint32_t limit) {
  FakeKernelConfig config;
  config.dma_entry_limit = limit;
  return config;
}

TEST_CASE("BudgetedContainer: negotiates, plans, maps, reports and tears down") {
  VmRig rig(with_limit(24));
  auto memory = memory::GuestMemory::create(64 * kMiB);
  REQUIRE(memory.ok());
  {
    auto vfio = BudgetedContainer::create(rig.fake, *memory, rig.config);
    REQUIRE(vfio.ok());
    BudgetedContainer& c = **vfio;
    CHECK(rig.fake->containers_opened() == 1);
    CHECK(rig.fake->calls(VFIO_SET_IOMMU) == 1);
    CHECK(rig.fake->group_container(1) == 0);
    CHECK(rig.fake->group_container(2) == 0);
    CHECK(rig.fake->avail() == 23);
    REQUIRE(rig.fake->mappings().count(0) == 1);
    CHECK(rig.fake->mappings().at(0).size == 64 * kMiB);
    CHECK(rig.fake->mappings().at(0).vaddr ==
          reinterpret_cast<std::uintptr_t>(memory->regions()[0].host()));

    const DmaReport report = c.report();
    CHECK(report.devices == std::vector<std::string>{"0000:00:01.0", "0000:00:02.0"});
    CHECK(report.backend == "vfio-type1v2");
    CHECK(report.avail_at_open.source == AvailSource::kCapability);
    CHECK(report.avail_at_open.avail == 24);
    REQUIRE(report.avail_now.has_value());
    CHECK(report.avail_now->avail == 23);
    CHECK(report.entries_used == 1);
    REQUIRE(report.consistent.has_value());
    CHECK(*report.consistent);
    CHECK(report.mode == Decision::kEager);
    CHECK(report.requested_mode == MappingMode::kAuto);
    CHECK(report.planned_entries == 1);
    CHECK(report.mapped_bytes == 64 * kMiB);
    CHECK(report.peak_entries == 1);
    CHECK(report.failed_maps.total() == 0);
    CHECK(report.iova_ranges.size() == 2);
    CHECK(report.unmap_all_supported);

    const std::string line = format_dma_report(report);
    CHECK_THAT(line, Catch::StartsWith("level=info component=vfio msg=\"DMA budget\" "
                                       "devices=0000:00:01.0,0000:00:02.0 backend=vfio-type1v2 "
                                       "avail_at_open=24 source=capability "
                                       "binding_limit=dma_entries planned_entries=1 "
                                       "mode=eager requested_mode=auto reason=\"eager (auto): 1 "
                                       "DMA entry ("));
    CHECK_THAT(line, Catch::Contains("avail_now=23 entries_used=1 consistent=true "
                                     "mapped_bytes=67108864 peak_entries=1 failed_maps=0"));
    CHECK_THAT(line, Catch::EndsWith("iova_ranges=0x0-0xfedfffff,0xfef00000-0x7fffffffff "
                                     "unmap_all=true backend_reason=\"type1 (auto: the host "
                                     "has no /dev/iommu)\""));

    // sysfs was read once, at setup: where each configured path is.
    REQUIRE(c.locations().size() == 2);
    CHECK(c.locations()[1].bdf == "0000:00:02.0");
    auto device = c.take_device(1);
    REQUIRE(device.ok());
    CHECK(device->name() == "0000:00:02.0");
    CHECK(device->info().is_pci());
    CHECK_FALSE(c.take_device(1).ok());
    CHECK_FALSE(c.take_device(2).ok());

    rig.fake->take_entries(2);
    auto refreshed = c.refresh();
    REQUIRE(refreshed.ok());
    CHECK(refreshed->avail_now->avail == 21);
    CHECK_FALSE(*refreshed->consistent);
    CHECK_THAT(format_dma_report(*refreshed), Catch::Contains("consistent=false"));
  }
  // Teardown: one UNMAP_ALL while the groups were still attached, then both groups detached.
  CHECK(rig.fake->unmap_all_calls() == 1);
  CHECK(rig.fake->mappings().empty());
  CHECK(rig.fake->group_container(1) == -1);
  CHECK(rig.fake->group_container(2) == -1);
}

TEST_CASE("BudgetedContainer: a refused plan fails before anything is mapped") {
  SECTION("not enough entries") {
    VmRig rig(with_limit(1));
    rig.config.p2p_entries = 1;
    auto memory = memory::GuestMemory::create(64 * kMiB);
    REQUIRE(memory.ok());
    auto vfio = BudgetedContainer::create(rig.fake, *memory, rig.config);
    REQUIRE_FALSE(vfio.ok());
    CHECK_THAT(vfio.error().message(),
               Catch::Contains("VFIO container for 0000:00:01.0, 0000:00:02.0: auto: eager mapping "
                               "does not fit: 2 DMA entries"));
    CHECK_THAT(vfio.error().message(), Catch::Contains("but only 1 available"));
    CHECK_THAT(vfio.error().message(), Catch::Contains("dma_entry_limit to at least 2"));
    CHECK(rig.fake->calls(VFIO_IOMMU_MAP_DMA) == 0);
  }
  SECTION("lazy without a virtual IOMMU") {
    VmRig rig;
    rig.config.mode = MappingMode::kLazy;
    auto memory = memory::GuestMemory::create(64 * kMiB);
    REQUIRE(memory.ok());
    auto vfio = BudgetedContainer::create(rig.fake, *memory, rig.config);
    REQUIRE_FALSE(vfio.ok());
    CHECK_THAT(vfio.error().message(),
               Catch::Contains("lazy mapping needs the device behind the virtual IOMMU (add iommu=on"));
    CHECK(rig.fake->calls(VFIO_IOMMU_MAP_DMA) == 0);
  }
  SECTION("memlock too low") {
    VmRig rig;
    rig.config.memlock = MemlockLimit{8 * kMiB, false};
    auto memory = memory::GuestMemory::create(64 * kMiB);
    REQUIRE(memory.ok());
    auto vfio = BudgetedContainer::create(rig.fake, *memory, rig.config);
    REQUIRE_FALSE(vfio.ok());
    CHECK_THAT(vfio.error().message(), Catch::Contains("ulimit -l 65536"));
  }
}

TEST_CASE("BudgetedContainer: behind the virtual IOMMU a plan that does not fit goes lazy") {
  VmRig rig(with_limit(6));
  rig.config.behind_viommu = true;
  rig.config.low_water = 1;
  rig.config.memlock = MemlockLimit{8 * kMiB, false};  // eager would pin 64 MiB
  auto memory = memory::GuestMemory::create(64 * kMiB);
  REQUIRE(memory.ok());
  {
    auto vfio = BudgetedContainer::create(rig.fake, *memory, rig.config);
    REQUIRE(vfio.ok());
    BudgetedContainer& c = **vfio;
    CHECK(c.plan().decision == Decision::kLazy);
    CHECK_THAT(c.plan().reason, Catch::Contains("lazy (auto)"));
    CHECK(rig.fake->calls(VFIO_IOMMU_MAP_DMA) == 0);  // nothing until the guest asks
    REQUIRE(c.lazy() != nullptr);
    CHECK(c.lazy()->headroom() == 5u);
    const devices::DmaMapping m{0x100000, 64 * kKiB, 2 * kMiB, 3};
    REQUIRE(c.lazy()->map(m) == devices::DmaStatus::kOk);
    CHECK(rig.fake->avail() == 5);
    const DmaReport report = c.report();
    CHECK(report.mode == Decision::kLazy);
    CHECK(report.entries_used == 1);
    CHECK(report.mapped_bytes == 64 * kKiB);
    REQUIRE(report.lazy);
    CHECK(report.lazy->low_water == 1);
    CHECK(report.lazy->guest_mappings == 1);
    CHECK(report.lazy->counters.maps == 1);
    CHECK_THAT(format_dma_report(report),
               Catch::Contains("mode=lazy") && Catch::Contains("low_water=1 refused_budget=0"));
  }
  CHECK(rig.fake->mappings().empty());  // teardown gave the guest's entries back
  CHECK(rig.fake->avail() == 6);
}

TEST_CASE("BudgetedContainer: behind the virtual IOMMU a plan that fits maps eagerly, then switches") {
  VmRig rig(with_limit(6));
  rig.config.behind_viommu = true;
  auto memory = memory::GuestMemory::create(64 * kMiB);
  REQUIRE(memory.ok());
  auto vfio = BudgetedContainer::create(rig.fake, *memory, rig.config);
  REQUIRE(vfio.ok());
  BudgetedContainer& c = **vfio;
  CHECK(c.plan().decision == Decision::kEager);
  CHECK(rig.fake->avail() == 5);
  REQUIRE(c.lazy() != nullptr);
  CHECK(c.report().mode == Decision::kEager);
  REQUIRE(c.lazy()->map({0x100000000, 4096, 0, 3}) == devices::DmaStatus::kOk);
  const DmaReport report = c.report();
  CHECK(report.mode == Decision::kLazy);
  CHECK_THAT(report.reason, Catch::Contains("eager (auto)") &&
                                Catch::Contains("switched to lazy when the guest attached"));
  CHECK(report.entries_used == 1);
  CHECK(rig.fake->avail() == 5);
}

TEST_CASE("BudgetedContainer: an eager plan has no lazy engine") {
  VmRig rig;
  auto memory = memory::GuestMemory::create(64 * kMiB);
  REQUIRE(memory.ok());
  auto vfio = BudgetedContainer::create(rig.fake, *memory, rig.config);
  REQUIRE(vfio.ok());
  CHECK((*vfio)->lazy() == nullptr);
}

TEST_CASE("BudgetedContainer: a MAP the kernel refuses leaves nothing mapped") {
  FakeKernelConfig kernel;
  kernel.memlock_bytes = 16 * kMiB;  // the process limit was misjudged: the kernel says ENOMEM
  VmRig rig(kernel);
  auto memory = memory::GuestMemory::create(64 * kMiB);
  REQUIRE(memory.ok());
  auto vfio = BudgetedContainer::create(rig.fake, *memory, rig.config);
  REQUIRE_FALSE(vfio.ok());
  CHECK(vfio.error().errno_value() == ENOMEM);
  CHECK_THAT(vfio.error().message(), Catch::Contains("entry 1 of 1 failed"));
  CHECK(rig.fake->mappings().empty());
}

TEST_CASE("BudgetedContainer: a device path that is not bound to vfio-pci stops it early") {
  VmRig rig;
  rig.sysfs.add_device("0000:00:03.0", 3, "nvme");
  rig.config.device_paths.push_back(rig.sysfs.device_path("0000:00:03.0"));
  auto memory = memory::GuestMemory::create(64 * kMiB);
  REQUIRE(memory.ok());
  auto vfio = BudgetedContainer::create(rig.fake, *memory, rig.config);
  REQUIRE_FALSE(vfio.ok());
  CHECK_THAT(vfio.error().message(), Catch::Contains("0000:00:03.0 is not bound to vfio-pci"));
  CHECK(rig.fake->containers_opened() == 0);
}

TEST_CASE("BudgetedContainer: an unviable group is reported with its culprits") {
  VmRig rig;
  rig.sysfs.add_device("0000:00:02.1", 2, "snd_hda_intel");
  rig.fake->add_group(2, {FakeDevice{"0000:00:02.0", 0, {}, {}}}, /*viable=*/false);
  auto memory = memory::GuestMemory::create(64 * kMiB);
  REQUIRE(memory.ok());
  auto vfio = BudgetedContainer::create(rig.fake, *memory, rig.config);
  REQUIRE_FALSE(vfio.ok());
  CHECK_THAT(vfio.error().message(), Catch::Contains("PCI device 0000:00:02.0: IOMMU group 2 is "
                                                     "not viable: 0000:00:02.1 (bound to "
                                                     "snd_hda_intel) is not bound to vfio-pci"));
  CHECK(rig.fake->group_container(1) == -1);  // the first group was let go again
}

TEST_CASE("report: unknown values read as such") {
  DmaReport report;
  report.devices = {"0000:00:01.0"};
  report.avail_at_open = DmaBudget::from_cap(std::nullopt);
  report.reason = "eager (auto): budget unknown";
  const std::string line = format_dma_report(report);
  CHECK_THAT(line, Catch::Contains("avail_at_open=absent source=absent"));
  CHECK_THAT(line, Catch::Contains("avail_now=unknown"));
  CHECK_THAT(line, Catch::Contains("consistent=unknown"));
  CHECK_THAT(line, Catch::Contains("reason=\"eager (auto): budget unknown\""));
  CHECK(format_iova_ranges({}) == "none");
}

}  // namespace
}  // namespace keel::vfio
