// BudgetedContainer on the iommufd backend, against a fake /dev/iommu (fake_iommufd.hpp) and a
// fake sysfs whose devices have their VFIO cdev: how the backend is chosen, the eager plan mapped
// into one IO address space, the budget that binds (memlock, no entry count), lazy mapping past
// type1's 65 535 entries, and teardown.
#include <filesystem>
#include <memory>

#include <catch2/catch.hpp>

#include "base/size.hpp"
#include "devices/vfio/budgeted_container.hpp"
#include "tests/unit/vfio/fake_iommufd.hpp"
#include "tests/unit/vfio/fake_sysfs.hpp"

namespace keel::vfio {
namespace {

using testing::FakeIommufd;
using testing::FakeSysfs;
using testing::kPage;

constexpr const char* kBdf = "0000:00:01.0";

struct IommufdRig {
  FakeSysfs sysfs;
  std::shared_ptr<FakeIommufd> fake = std::make_shared<FakeIommufd>();
  BudgetedContainerConfig config;

  IommufdRig() {
    sysfs.add_device(kBdf, 1, "vfio-pci");
    std::filesystem::create_directories(sysfs.root() / "bus/pci/devices" / kBdf / "vfio-dev/vfio3");
    config.device_paths = {sysfs.device_path(kBdf)};
    config.sysfs_root = sysfs.root();
    config.memlock = MemlockLimit{kMemlockUnlimited, false};
  }
};

TEST_CASE("BudgetedContainer on iommufd: binds, attaches, maps the eager plan, reports, tears down") {
  IommufdRig rig;
  rig.config.backend = BackendChoice::kIommufd;
  auto memory = memory::GuestMemory::create(64 * kMiB);
  REQUIRE(memory.ok());
  {
    auto vfio = BudgetedContainer::create(rig.fake, *memory, rig.config);
    REQUIRE(vfio.ok());
    BudgetedContainer& c = **vfio;
    CHECK(c.backend() == BackendKind::kIommufd);
    CHECK(rig.fake->opened.count("/dev/vfio/devices/vfio3") == 1);
    CHECK(rig.fake->attached_to == 7);
    CHECK(rig.fake->per_process);  // CAP_SYS_RESOURCE: charged to Keel alone, as type1 does
    REQUIRE(rig.fake->areas.count(0) == 1);
    CHECK(rig.fake->areas.at(0) == 64 * kMiB);
    CHECK(c.kvm_files().size() == 1);
    CHECK(c.iommu_info().iova_ranges.size() == 2);
    const DmaReport report = c.report();
    CHECK(report.backend == "iommufd");
    CHECK(report.backend_reason == "iommufd (requested)");
    CHECK(report.avail_at_open.source == AvailSource::kIommufd);
    CHECK_FALSE(report.consistent.has_value());  // no count to compare
    CHECK(report.mode == Decision::kEager);
    CHECK(report.entries_used == 1);
    CHECK(report.mapped_bytes == 64 * kMiB);
    CHECK(report.binding_limit == "none");
    CHECK(report.charged_per_process);
    CHECK(report.unmap_all_supported);
    CHECK_THAT(report.reason, Catch::Contains("iommufd counts no entries"));
    CHECK_THAT(format_dma_report(report), Catch::Contains("backend=iommufd") &&
                                              Catch::Contains("avail_at_open=iommufd"));
    REQUIRE(c.take_device(0).ok());
  }
  CHECK(rig.fake->areas.empty());
  CHECK(rig.fake->pinned == 0);
}

TEST_CASE("BudgetedContainer: auto takes iommufd where the host has it, else type1, and says why") {
  IommufdRig rig;
  auto memory = memory::GuestMemory::create(16 * kMiB);
  REQUIRE(memory.ok());
  auto vfio = BudgetedContainer::create(rig.fake, *memory, rig.config);
  REQUIRE(vfio.ok());
  CHECK((*vfio)->backend() == BackendKind::kIommufd);
  CHECK_THAT((*vfio)->report().backend_reason, Catch::Contains("auto") && Catch::Contains("cdev"));
  vfio->reset();

  // No /dev/iommu: type1, whose container this fake does not offer; the error tells which
  // backend was tried and why.
  rig.fake->exists = false;
  auto type1 = BudgetedContainer::create(rig.fake, *memory, rig.config);
  REQUIRE_FALSE(type1.ok());
  CHECK_THAT(type1.error().message(), Catch::Contains("type1 (auto: the host has no /dev/iommu)"));

  // Asked for by name where the host lacks it: the fix is named.
  rig.config.backend = BackendChoice::kIommufd;
  auto named = BudgetedContainer::create(rig.fake, *memory, rig.config);
  REQUIRE_FALSE(named.ok());
  CHECK_THAT(named.error().message(), Catch::Contains("CONFIG_IOMMUFD") && Catch::Contains("backend=type1"));

  // /dev/iommu but no cdev for the device: auto stays on type1.
  rig.fake->exists = true;
  rig.config.backend = BackendChoice::kAuto;
  std::filesystem::remove_all(rig.sysfs.root() / "bus/pci/devices" / kBdf / "vfio-dev");
  auto no_cdev = BudgetedContainer::create(rig.fake, *memory, rig.config);
  REQUIRE_FALSE(no_cdev.ok());
  CHECK_THAT(no_cdev.error().message(),
             Catch::Contains("backend type1 (auto: VFIO device 0000:00:01.0: no device cdev"));
}

TEST_CASE("BudgetedContainer on iommufd: memlock binds; a plan above it is refused with the fix") {
  IommufdRig rig;
  rig.config.backend = BackendChoice::kIommufd;
  rig.fake->cap_sys_resource = false;  // charged to the user
  auto memory = memory::GuestMemory::create(64 * kMiB);
  REQUIRE(memory.ok());
  rig.config.memlock = MemlockLimit{128 * kMiB, false};
  {
    auto fits = BudgetedContainer::create(rig.fake, *memory, rig.config);
    REQUIRE(fits.ok());
    const DmaReport report = (*fits)->report();
    CHECK(report.binding_limit == "memlock");
    CHECK_FALSE(report.charged_per_process);
    CHECK(report.pinned_bytes_planned == 64 * kMiB);
    CHECK_THAT(report.reason, Catch::Contains("iommufd charges the locked memory of Keel's user"));
  }
  rig.config.memlock = MemlockLimit{32 * kMiB, false};
  auto refused = BudgetedContainer::create(rig.fake, *memory, rig.config);
  REQUIRE_FALSE(refused.ok());
  CHECK_THAT(refused.error().message(),
             Catch::Contains("pins 64 MiB") && Catch::Contains("RLIMIT_MEMLOCK of 32 MiB") &&
                 Catch::Contains("ulimit -l 65536") && Catch::Contains("iommu=on"));
  CHECK(rig.fake->areas.empty());
}

TEST_CASE("BudgetedContainer on iommufd: lazy mapping holds more than type1's 65535 entries") {
  IommufdRig rig;
  rig.config.backend = BackendChoice::kIommufd;
  rig.config.behind_viommu = true;
  rig.config.mode = MappingMode::kLazy;
  auto memory = memory::GuestMemory::create(512 * kMiB);
  REQUIRE(memory.ok());
  {
    auto vfio = BudgetedContainer::create(rig.fake, *memory, rig.config);
    REQUIRE(vfio.ok());
    LazyDma* lazy = (*vfio)->lazy();
    REQUIRE(lazy != nullptr);
    CHECK_FALSE(lazy->headroom().has_value());  // no count: nothing is refused for entries
    for (std::uint64_t i = 0; i < 70000; ++i) {
      const devices::DmaMapping page{0x100000000 + i * 2 * kPage, kPage, i * kPage, 3};
      REQUIRE(lazy->map(page) == devices::DmaStatus::kOk);
    }
    const DmaReport report = (*vfio)->report();
    CHECK(report.entries_used == 70000);
    CHECK(report.mode == Decision::kLazy);
    REQUIRE(report.lazy);
    CHECK(report.lazy->counters.refused_budget == 0);
    CHECK(rig.fake->areas.size() == 70000);
  }
  CHECK(rig.fake->areas.empty());
}

}  // namespace
}  // namespace keel::vfio
