// The iommufd calls against a fake /dev/iommu that keeps the kernel's rules (fake_iommufd.hpp),
// and DmaMapper on top of them through IommufdDmaBackend.
#include "devices/vfio/iommufd.hpp"

#include <catch2/catch.hpp>

#include <cerrno>

#include "devices/vfio/dma_backend.hpp"
#include "devices/vfio/dma_mapper.hpp"
#include "tests/unit/vfio/fake_iommufd.hpp"
#include "tests/unit/vfio/fake_sysfs.hpp"

namespace keel::vfio {
namespace {

using testing::FakeIommufd;
using testing::kPage;

Iommufd open_on(const std::shared_ptr<FakeIommufd>& fake) {
  auto fd = Iommufd::open(fake);
  REQUIRE(fd.ok());
  return std::move(fd).value();
}

TEST_CASE("iommufd: no /dev/iommu names the kernel option and the other backend") {
  auto fake = std::make_shared<FakeIommufd>();
  fake->exists = false;
  auto fd = Iommufd::open(fake);
  REQUIRE_FALSE(fd.ok());
  CHECK(fd.error().errno_value() == ENOENT);
  CHECK_THAT(fd.error().message(), Catch::Contains("CONFIG_IOMMUFD") && Catch::Contains("backend=type1"));
}

TEST_CASE("iommufd: maps have no count limit; the memlock limit is ENOMEM with the fix") {
  auto fake = std::make_shared<FakeIommufd>();
  fake->memlock = 70000 * kPage;
  Iommufd fd = open_on(fake);
  auto ioas = fd.alloc_ioas();
  REQUIRE(ioas.ok());
  IommufdDmaBackend backend(fd, *ioas, /*charged_per_process=*/false);
  auto budget = backend.budget();
  REQUIRE(budget.ok());
  CHECK(budget->source == AvailSource::kIommufd);
  DmaMapper mapper(backend, *budget);
  // More separate mappings than type1's dma_entry_limit (65535) allows.
  std::uint64_t mapped = 0;
  for (std::uint64_t i = 0; i < 70000; ++i) {
    mapped += mapper.map(i * 2 * kPage, kPage, 0x7f0000000000 + i * kPage, "page").ok() ? 1 : 0;
  }
  CHECK(mapped == 70000);
  CHECK(mapper.entries().size() == 70000);
  auto over = mapper.map(0x100000000, kPage, 0x7f1000000000, "one more");
  REQUIRE_FALSE(over.ok());
  CHECK(classify_map_errno(over.error().errno_value()) == MapFailure::kMemlock);
  CHECK_THAT(over.error().message(),
             Catch::Contains("IOMMU_IOAS_MAP iova 0x100000000") && Catch::Contains("ulimit -l") &&
                 Catch::Contains("user") && Catch::Contains("CAP_SYS_RESOURCE"));
  CHECK(mapper.failed_maps().memlock == 1);
  auto clash = mapper.map(0, kPage, 0x7f1000000000, "overlap", {true, false});
  REQUIRE_FALSE(clash.ok());
  CHECK(classify_map_errno(clash.error().errno_value()) == MapFailure::kOverlap);
  CHECK_THAT(clash.error().message(), Catch::Contains("overlaps Keel's entry"));
  // No count to reconcile against: the check is not made, and says so by `checked`.
  auto rec = mapper.reconcile();
  REQUIRE(rec.ok());
  CHECK_FALSE(rec->checked);
  // One call unmaps everything.
  REQUIRE(mapper.unmap_all().ok());
  CHECK(fake->areas.empty());
  CHECK(fake->pinned == 0);
  CHECK(mapper.entries().empty());
}

TEST_CASE("iommufd: unmap takes whole maps and returns the bytes it unmapped") {
  auto fake = std::make_shared<FakeIommufd>();
  Iommufd fd = open_on(fake);
  const std::uint32_t ioas = fd.alloc_ioas().value();
  REQUIRE(fd.map(ioas, 0x100000, 4 * kPage, 0x7f0000000000, {}, "four pages").ok());
  auto part = fd.unmap(ioas, 0x100000, kPage, "one page");  // would split the area
  REQUIRE_FALSE(part.ok());
  CHECK(part.error().errno_value() == ENOENT);
  CHECK(fake->areas.size() == 1);
  REQUIRE(fd.unmap(ioas, 0x100000, 4 * kPage, "four pages").value() == 4 * kPage);
  CHECK(fake->areas.empty());
  // Two areas inside one range: both go.
  REQUIRE(fd.map(ioas, 0x200000, kPage, 0x7f0000000000, {}, "a").ok());
  REQUIRE(fd.map(ioas, 0x201000, kPage, 0x7f0000001000, {}, "b").ok());
  REQUIRE(fd.unmap(ioas, 0x200000, 2 * kPage, "a and b").value() == 2 * kPage);
  CHECK(fake->areas.empty());
}

TEST_CASE("iommufd: the IOVA ranges are asked for until they fit") {
  auto fake = std::make_shared<FakeIommufd>();
  fake->range_growth = 1;  // one more range appears between the calls
  Iommufd fd = open_on(fake);
  const std::uint32_t ioas = fd.alloc_ioas().value();
  auto ranges = fd.iova_ranges(ioas);
  REQUIRE(ranges.ok());
  CHECK(ranges->ranges.size() == 3);
  CHECK(ranges->ranges[1].start == 0xfef00000);
  CHECK(ranges->alignment == kPage);
}

TEST_CASE("iommufd: charging the process is possible only first and with CAP_SYS_RESOURCE") {
  auto fake = std::make_shared<FakeIommufd>();
  Iommufd fd = open_on(fake);
  CHECK(fd.charged_per_process().value() == false);
  fake->cap_sys_resource = false;
  auto denied = fd.charge_per_process();
  REQUIRE_FALSE(denied.ok());
  CHECK_THAT(denied.error().message(), Catch::Contains("CAP_SYS_RESOURCE"));
  fake->cap_sys_resource = true;
  REQUIRE(fd.charge_per_process().ok());
  CHECK(fd.charged_per_process().value() == true);
  REQUIRE(fd.alloc_ioas().ok());
  auto late = fd.charge_per_process();
  REQUIRE_FALSE(late.ok());
  CHECK_THAT(late.error().message(), Catch::Contains("before any IO address space"));
}

TEST_CASE("iommufd: a device is bound, attached, and holds its IOAS until closed") {
  auto fake = std::make_shared<FakeIommufd>();
  Iommufd fd = open_on(fake);
  const std::uint32_t ioas = fd.alloc_ioas().value();
  CHECK_FALSE(attach_device(*fake, 5, ioas, "0000:00:01.0").ok());  // not bound yet
  auto devid = bind_device(*fake, 5, fd, "0000:00:01.0");
  REQUIRE(devid.ok());
  CHECK(*devid == 3);
  REQUIRE(attach_device(*fake, 5, ioas, "0000:00:01.0").ok());
  CHECK(fake->attached_to == ioas);
  auto busy = fd.destroy(ioas);
  REQUIRE_FALSE(busy.ok());
  CHECK(busy.error().errno_value() == EBUSY);

  fake->bind_errno = EBUSY;
  auto group_open = bind_device(*fake, 6, fd, "0000:00:02.0");
  REQUIRE_FALSE(group_open.ok());
  CHECK_THAT(group_open.error().message(), Catch::Contains("0000:00:02.0") && Catch::Contains("type1 way"));
  fake->bind_errno = EPERM;
  auto unsafe = bind_device(*fake, 6, fd, "0000:00:02.0");
  REQUIRE_FALSE(unsafe.ok());
  CHECK_THAT(unsafe.error().message(), Catch::Contains("interrupt remapping"));
}

TEST_CASE("iommufd: a device's cdev is found under vfio-dev, or the error names the fix") {
  testing::FakeSysfs sysfs;
  const std::string bdf = "0000:00:01.0";
  sysfs.add_device(bdf, 1, "vfio-pci");
  std::filesystem::create_directories(sysfs.root() / "bus/pci/devices" / bdf / "vfio-dev/vfio3");
  auto found = find_device_cdev(sysfs.root(), bdf);
  REQUIRE(found.ok());
  CHECK(found->string() == "/dev/vfio/devices/vfio3");
  auto none = find_device_cdev(sysfs.root(), "0000:00:02.0");
  REQUIRE_FALSE(none.ok());
  CHECK_THAT(none.error().message(), Catch::Contains("CONFIG_VFIO_DEVICE_CDEV") && Catch::Contains("vfio-pci"));
}

}  // namespace
}  // namespace keel::vfio
