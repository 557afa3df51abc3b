// Fault injection through the VFIO syscall seam: a clean create, report, reconcile and teardown
// of a container with two devices is recorded; then every ioctl call it made fails in turn
// (each request's n-th call, with the errno the kernel would give and with EIO), and every case
// must end with a clear error or a clean recovery: no fd left open, no DMA entry left mapped,
// and a report that still agrees with the kernel when the container survives.
#include <linux/vfio.h>

#include <catch2/catch.hpp>

#include <map>
#include <memory>

#include "base/size.hpp"
#include "devices/vfio/budgeted_container.hpp"
#include "tests/unit/open_fds.hpp"
#include "tests/unit/vfio/fake_sysfs.hpp"
#include "tests/unit/vfio/fake_vfio_sys.hpp"

namespace keel::vfio {
namespace {

using testing::FakeDevice;
using testing::FakeKernelConfig;
using testing::FakeSysfs;
using testing::FakeVfioSys;

using test::open_fds;

struct Case {
  unsigned long request = 0;
  int nth = 0;
  int err = 0;
};

// One lifetime of a container on a fresh fake kernel, with `fault` injected (request 0: none).
// Returns the fake for inspection after the container is gone.
std::shared_ptr<FakeVfioSys> lifetime(const Case& fault, const memory::GuestMemory& memory,
                                      bool* created, std::string* error) {
  FakeKernelConfig kernel;
  kernel.dma_entry_limit = 24;
  auto fake = std::make_shared<FakeVfioSys>(kernel);
  FakeSysfs sysfs;
  sysfs.add_device("0000:00:01.0", 1, "vfio-pci");
  sysfs.add_device("0000:00:02.0", 2, "vfio-pci");
  fake->add_group(1, {FakeDevice{"0000:00:01.0", 0, {}, {}}});
  fake->add_group(2, {FakeDevice{"0000:00:02.0", 0, {}, {}}});
  BudgetedContainerConfig config;
  config.device_paths = {sysfs.device_path("0000:00:01.0"), sysfs.device_path("0000:00:02.0")};
  config.sysfs_root = sysfs.root();
  config.memlock = MemlockLimit{kMemlockUnlimited, false};
  if (fault.request != 0) {
    fake->inject(fault.request, fault.nth, fault.err);
  }
  auto container = BudgetedContainer::create(fake, memory, config);
  *created = container.ok();
  if (!container.ok()) {
    *error = container.error().message();
    return fake;
  }
  auto refreshed = (*container)->refresh();
  if (refreshed.ok()) {
    // Whatever failed before, the report agrees with the kernel's count.
    CHECK(refreshed->consistent == std::optional<bool>(true));
    CHECK(refreshed->entries_used == 24 - fake->avail());
  } else {
    CHECK_FALSE(refreshed.error().message().empty());
  }
  return fake;
}

TEST_CASE(
    "fault sweep: every VFIO call of setup, mapping, reconciling and teardown fails in turn") {
  auto memory = memory::GuestMemory::create(3 * kGiB + 512 * kMiB);  // two RAM regions
  REQUIRE(memory.ok());
  bool created = false;
  std::string error;
  const std::map<unsigned long, int> clean = lifetime({}, *memory, &created, &error)->all_calls();
  REQUIRE(created);
  REQUIRE(clean.count(VFIO_IOMMU_MAP_DMA) == 1);
  REQUIRE(clean.count(VFIO_IOMMU_UNMAP_DMA) == 1);

  // The errno each call would plausibly fail with, besides EIO.
  const std::map<unsigned long, int> typical = {
      {VFIO_GET_API_VERSION, EINVAL},
      {VFIO_CHECK_EXTENSION, EINVAL},
      {VFIO_GROUP_GET_STATUS, EFAULT},
      {VFIO_GROUP_SET_CONTAINER, EBUSY},
      {VFIO_SET_IOMMU, EPERM},
      {VFIO_IOMMU_GET_INFO, EFAULT},
      {VFIO_IOMMU_MAP_DMA, ENOSPC},
      {VFIO_IOMMU_UNMAP_DMA, EINVAL},
      {VFIO_GROUP_UNSET_CONTAINER, EBUSY},
  };
  int cases = 0, refused = 0, recovered = 0;
  for (const auto& [request, count] : clean) {
    for (int nth = 1; nth <= count; ++nth) {
      for (int err : {EIO, typical.count(request) ? typical.at(request) : EINVAL}) {
        CAPTURE(request, nth, err);
        const int fds = open_fds();
        created = false;
        error.clear();
        auto fake = lifetime({request, nth, err}, *memory, &created, &error);
        ++cases;
        if (created) {
          ++recovered;  // e.g. UNMAP_ALL refused: entries unmapped one by one instead
        } else {
          ++refused;
          CHECK_FALSE(error.empty());
        }
        CHECK(open_fds() == fds);         // nothing leaked
        CHECK(fake->mappings().empty());  // every DMA entry given back
        CHECK(fake->pinned_bytes() == 0);
      }
    }
  }
  WARN("fault sweep: " << cases << " cases (" << refused << " refused with an error, " << recovered
                       << " recovered)");
  CHECK(cases >= 20);
}

}  // namespace
}  // namespace keel::vfio
