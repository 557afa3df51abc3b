// The iommufd calls against a fake /dev/iommu that keeps the kernel's rules (Linux 6.12,
// drivers/iommu/iommufd): one area per MAP, UNMAP of whole areas only (ENOENT otherwise),
// EEXIST on overlap, ENOMEM past the memlock limit, EMSGSIZE with the count for a short range
// array, RLIMIT_MODE only before any object and with CAP_SYS_RESOURCE.
#include "devices/vfio/iommufd.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>

#include <cerrno>
#include <map>

#include "devices/vfio/iommufd_uapi.hpp"
#include "tests/unit/vfio/fake_sysfs.hpp"

namespace keel::vfio {
namespace {

constexpr std::uint64_t kPage = 4096;

class FakeIommufd final : public VfioSys {
 public:
  std::vector<IovaRange> ranges = {{0x0, 0xfedfffff}, {0xfef00000, 0xffffffffffff}};
  std::uint64_t memlock = UINT64_MAX;  // bytes this user may pin
  bool cap_sys_resource = true;
  bool exists = true;  // /dev/iommu
  int range_growth = 0;  // ranges appearing between two IOVA_RANGES calls
  std::map<std::uint64_t, std::uint64_t> areas;  // iova -> length (one IOAS)
  std::uint64_t pinned = 0;                      // bytes of all areas
  std::uint32_t ioas = 0;
  bool per_process = false;
  std::uint32_t bound_devid = 0;
  std::uint32_t attached_to = 0;
  int bind_errno = 0;

  Result<UniqueFd> open(const std::string& path) override {
    if (path == kIommufdPath && !exists) {
      return Error::from_errno(ENOENT, "open " + path);
    }
    return UniqueFd(::open("/dev/null", O_RDWR | O_CLOEXEC));
  }

  Result<int> ioctl(int, unsigned long request, void* arg, const std::string& what) override {
    using namespace uapi;
    if (request == kIommuOption) {
      auto* o = static_cast<IommuOption*>(arg);
      if (o->option_id != kOptionRlimitMode || o->object_id != 0) {
        return Error::from_errno(EOPNOTSUPP, what);
      }
      if (o->op == kOptionOpGet) {
        o->val64 = per_process ? 1 : 0;
        return 0;
      }
      if (!cap_sys_resource) {
        return Error::from_errno(EPERM, what);
      }
      if (ioas != 0) {
        return Error::from_errno(EBUSY, what);
      }
      per_process = o->val64 == 1;
      return 0;
    }
    if (request == kIommuIoasAlloc) {
      static_cast<IommuIoasAlloc*>(arg)->out_ioas_id = ioas = 7;
      return 0;
    }
    if (request == kIommuDestroy) {
      const auto* d = static_cast<IommuDestroy*>(arg);
      if (d->id != ioas) {
        return Error::from_errno(ENOENT, what);
      }
      if (attached_to == ioas) {
        return Error::from_errno(EBUSY, what);
      }
      ioas = 0;
      return 0;
    }
    if (request == kIommuIoasIovaRanges) {
      auto* r = static_cast<IommuIoasIovaRanges*>(arg);
      const std::uint32_t capacity = r->num_iovas;
      r->num_iovas = static_cast<std::uint32_t>(ranges.size());
      r->out_iova_alignment = kPage;
      if (capacity < ranges.size()) {
        if (range_growth-- > 0) {
          ranges.push_back({0x1000000000000 + ranges.size() * 0x1000, 0x1000000000000 + ranges.size() * 0x1000});
        }
        return Error::from_errno(EMSGSIZE, what);
      }
      auto* out = reinterpret_cast<IommuIovaRange*>(r->allowed_iovas);
      for (std::size_t i = 0; i < ranges.size(); ++i) {
        out[i] = {ranges[i].start, ranges[i].last};
      }
      return 0;
    }
    if (request == kIommuIoasMap) {
      auto* m = static_cast<IommuIoasMap*>(arg);
      if (m->ioas_id != ioas || m->length == 0 || m->iova % kPage != 0 || m->length % kPage != 0 ||
          (m->flags & (kIoasMapReadable | kIoasMapWriteable)) == 0) {
        return Error::from_errno(EINVAL, what);
      }
      const std::uint64_t last = m->iova + m->length - 1;
      auto next = areas.lower_bound(m->iova);
      if ((next != areas.end() && next->first <= last) ||
          (next != areas.begin() && std::prev(next)->first + std::prev(next)->second > m->iova)) {
        return Error::from_errno(EEXIST, what);
      }
      if (pinned + m->length > memlock) {
        return Error::from_errno(ENOMEM, what);
      }
      areas[m->iova] = m->length;
      pinned += m->length;
      return 0;
    }
    if (request == kIommuIoasUnmap) {
      auto* u = static_cast<IommuIoasUnmap*>(arg);
      const std::uint64_t end = u->iova + u->length;
      std::uint64_t unmapped = 0;
      for (auto it = areas.begin(); it != areas.end();) {
        const std::uint64_t a_end = it->first + it->second;
        if (it->first < end && a_end > u->iova) {
          if (it->first < u->iova || a_end > end) {
            return Error::from_errno(ENOENT, what);  // never splits; earlier areas stay gone
          }
          unmapped += it->second;
          pinned -= it->second;
          it = areas.erase(it);
        } else {
          ++it;
        }
      }
      if (unmapped == 0) {
        return Error::from_errno(ENOENT, what);
      }
      u->length = unmapped;
      return 0;
    }
    if (request == kVfioDeviceBindIommufd) {
      if (bind_errno != 0) {
        return Error::from_errno(bind_errno, what);
      }
      static_cast<VfioDeviceBindIommufd*>(arg)->out_devid = bound_devid = 3;
      return 0;
    }
    if (request == kVfioDeviceAttachIommufdPt) {
      auto* a = static_cast<VfioDeviceAttachIommufdPt*>(arg);
      if (bound_devid == 0 || a->pt_id != ioas) {
        return Error::from_errno(EINVAL, what);
      }
      attached_to = a->pt_id;
      a->pt_id = 9;  // the page table the kernel made
      return 0;
    }
    return Error::from_errno(ENOTTY, what);
  }
  Status pread(int, void*, std::size_t, off_t, const std::string& what) override {
    return Error::from_errno(EINVAL, what);
  }
  Status pwrite(int, const void*, std::size_t, off_t, const std::string& what) override {
    return Error::from_errno(EINVAL, what);
  }
  Result<Mapping> mmap(int, std::size_t, int, off_t, const std::string& what) override {
    return Error::from_errno(EINVAL, what);
  }
};

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
  // More separate mappings than type1's dma_entry_limit (65535) allows.
  std::uint64_t mapped = 0;
  for (std::uint64_t i = 0; i < 70000; ++i) {
    mapped += fd.map(*ioas, i * 2 * kPage, kPage, 0x7f0000000000 + i * kPage, {}, "page").ok() ? 1 : 0;
  }
  CHECK(mapped == 70000);
  auto over = fd.map(*ioas, 0x100000000, kPage, 0x7f1000000000, {}, "one more");
  REQUIRE_FALSE(over.ok());
  CHECK(classify_map_errno(over.error().errno_value()) == MapFailure::kMemlock);
  CHECK_THAT(over.error().message(), Catch::Contains("RLIMIT_MEMLOCK") && Catch::Contains("ulimit -l"));
  auto clash = fd.map(*ioas, 0, kPage, 0x7f1000000000, {true, false}, "overlap");
  REQUIRE_FALSE(clash.ok());
  CHECK(classify_map_errno(clash.error().errno_value()) == MapFailure::kOverlap);
}

TEST_CASE("iommufd: unmap takes whole maps and reports another size as an error") {
  auto fake = std::make_shared<FakeIommufd>();
  Iommufd fd = open_on(fake);
  const std::uint32_t ioas = fd.alloc_ioas().value();
  REQUIRE(fd.map(ioas, 0x100000, 4 * kPage, 0x7f0000000000, {}, "four pages").ok());
  auto part = fd.unmap(ioas, 0x100000, kPage);  // would split the area
  REQUIRE_FALSE(part.ok());
  CHECK(part.error().errno_value() == ENOENT);
  CHECK(fake->areas.size() == 1);
  REQUIRE(fd.unmap(ioas, 0x100000, 4 * kPage).ok());
  CHECK(fake->areas.empty());
  // Two areas inside one range: both go, as long as the bytes add up.
  REQUIRE(fd.map(ioas, 0x200000, kPage, 0x7f0000000000, {}, "a").ok());
  REQUIRE(fd.map(ioas, 0x201000, kPage, 0x7f0000001000, {}, "b").ok());
  REQUIRE(fd.unmap(ioas, 0x200000, 2 * kPage).ok());
  CHECK(fake->areas.empty());
  // One page where two were asked for: the kernel's size differs, and the error says so.
  REQUIRE(fd.map(ioas, 0x200000, kPage, 0x7f0000000000, {}, "a again").ok());
  auto other = fd.unmap(ioas, 0x200000, 2 * kPage);
  REQUIRE_FALSE(other.ok());
  CHECK_THAT(other.error().message(), Catch::Contains("unmapped 0x1000 bytes"));
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
