#include "devices/vfio/iommu_info.hpp"

#include <linux/vfio.h>

#include <climits>
#include <cstring>
#include <memory>
#include <vector>

#include <catch2/catch.hpp>

#include "devices/vfio/cap_chain.hpp"
#include "devices/vfio/container_fd.hpp"
#include "devices/vfio/group.hpp"
#include "devices/vfio/info_query.hpp"
#include "tests/unit/vfio/fake_vfio_sys.hpp"

namespace keel::vfio {
namespace {

using testing::FakeKernelConfig;
using testing::FakeVfioSys;

// A crafted GET_INFO reply: the fixed header, then capabilities placed by hand.
class ReplyBuilder {
 public:
  explicit ReplyBuilder(std::size_t size) : bytes_(size, 0) {
    vfio_iommu_type1_info head{};
    head.argsz = static_cast<std::uint32_t>(size);
    head.flags = VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS;
    head.iova_pgsizes = 0x1000;
    head.cap_offset = sizeof(head);
    put(0, head);
  }
  ReplyBuilder& cap_offset(std::uint32_t offset) {
    std::memcpy(bytes_.data() + offsetof(vfio_iommu_type1_info, cap_offset), &offset,
                sizeof(offset));
    return *this;
  }
  ReplyBuilder& header(std::size_t at, std::uint16_t id, std::uint32_t next) {
    put(at, vfio_info_cap_header{id, 1, next});
    return *this;
  }
  ReplyBuilder& avail(std::size_t at, std::uint32_t next, std::uint32_t value) {
    header(at, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, next);
    put(at + sizeof(vfio_info_cap_header), value);
    return *this;
  }
  ReplyBuilder& ranges(std::size_t at, std::uint32_t next, std::uint32_t claimed,
                       const std::vector<vfio_iova_range>& ranges) {
    header(at, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, next);
    put(at + 8, claimed);
    for (std::size_t i = 0; i < ranges.size(); ++i) {
      put(at + 16 + i * sizeof(vfio_iova_range), ranges[i]);
    }
    return *this;
  }
  const std::vector<std::uint8_t>& bytes() const { return bytes_; }

 private:
  template <typename T>
  void put(std::size_t at, const T& value) {
    REQUIRE(at + sizeof(T) <= bytes_.size());
    std::memcpy(bytes_.data() + at, &value, sizeof(T));
  }
  std::vector<std::uint8_t> bytes_;
};

// A container with one group attached and type1v2 set, on a fake kernel.
struct Rig {
  std::shared_ptr<FakeVfioSys> fake;
  std::optional<ContainerFd> container;
  std::optional<Group> group;
};

Rig make_rig(FakeKernelConfig config = {}) {
  Rig rig;
  rig.fake = std::make_shared<FakeVfioSys>(std::move(config));
  rig.fake->add_group(1, {});
  auto container = ContainerFd::open(rig.fake);
  REQUIRE(container.ok());
  rig.container.emplace(std::move(*container));
  auto group = Group::open(rig.fake, 1, "/nonexistent");
  REQUIRE(group.ok());
  rig.group.emplace(std::move(*group));
  REQUIRE(rig.container->attach(*rig.group).ok());
  return rig;
}

TEST_CASE("GET_INFO: the kernel's chain (2, 3, 1) with the misaligned IOVA_RANGE cap") {
  FakeKernelConfig config;
  config.dma_entry_limit = 24;
  auto rig = make_rig(config);
  const int before = rig.fake->calls(VFIO_IOMMU_GET_INFO);
  auto info = read_iommu_info(*rig.fake, rig.container->fd());
  REQUIRE(info.ok());
  CHECK(rig.fake->calls(VFIO_IOMMU_GET_INFO) - before == 2);  // one growth round
  CHECK(info->cap_ids == std::vector<std::uint16_t>{2, 3, 1});
  CHECK(info->iova_pgsizes == config.iova_pgsizes);
  CHECK(info->budget.source == AvailSource::kCapability);
  CHECK(info->budget.avail == 24);
  REQUIRE(info->iova_ranges.size() == config.iova_ranges.size());
  for (std::size_t i = 0; i < config.iova_ranges.size(); ++i) {
    CHECK(info->iova_ranges[i].start == config.iova_ranges[i].start);
    CHECK(info->iova_ranges[i].last == config.iova_ranges[i].last);
  }
  REQUIRE(info->migration.has_value());
  CHECK(info->migration->pgsize_bitmap == 0x1000);

  // The layout itself: the IOVA_RANGE cap starts 12 bytes after DMA_AVAIL, at 4 mod 8.
  vfio_iommu_type1_info head{};
  head.argsz = sizeof(head);
  auto raw =
      query_info(*rig.fake, rig.container->fd(), VFIO_IOMMU_GET_INFO,
                 std::span(reinterpret_cast<const std::uint8_t*>(&head), sizeof(head)), "test");
  REQUIRE(raw.ok());
  auto caps = walk_cap_chain(*raw, sizeof(head), sizeof(head), "test");
  REQUIRE(caps.ok());
  REQUIRE(caps->size() == 3);
  CHECK((*caps)[2].offset - (*caps)[1].offset == sizeof(vfio_iommu_type1_info_dma_avail));
  CHECK((*caps)[2].offset % 8 == 4);
}

TEST_CASE("GET_INFO: a hand-made chain 2, 3, 1 at odd offsets parses with memcpy reads") {
  // MIGRATION at 24 (32 bytes), DMA_AVAIL at 56 (12 bytes), IOVA_RANGE at 68.
  ReplyBuilder reply(68 + 16 + 2 * 16);
  reply.header(24, VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, 56)
      .avail(56, 68, 7)
      .ranges(68, 0, 2, {{0x0, 0xfedfffff}, {0xfef00000, 0xffffffff}});
  auto info = parse_iommu_info(reply.bytes());
  REQUIRE(info.ok());
  CHECK(info->cap_ids == std::vector<std::uint16_t>{2, 3, 1});
  CHECK(info->budget.source == AvailSource::kCapability);
  CHECK(info->budget.avail == 7);
  REQUIRE(info->iova_ranges.size() == 2);
  CHECK(info->iova_ranges[1].start == 0xfef00000);
  CHECK(info->iova_ranges[1].last == 0xffffffff);
}

TEST_CASE("GET_INFO: unknown capability ids are skipped") {
  ReplyBuilder reply(24 + 8 + 12 + 16 + 16 + 8);
  reply.header(24, 0x7abc, 32).avail(32, 44, 99).ranges(44, 76, 1, {{0x1000, 0xffff}});
  reply.header(76, 0x1234, 0);
  auto info = parse_iommu_info(reply.bytes());
  REQUIRE(info.ok());
  CHECK(info->cap_ids == std::vector<std::uint16_t>{0x7abc, 3, 1, 0x1234});
  CHECK(info->budget.avail == 99);
  REQUIRE(info->iova_ranges.size() == 1);
  CHECK(info->iova_ranges[0].start == 0x1000);
}

TEST_CASE("GET_INFO: corrupt chains are errors, not crashes") {
  SECTION("a truncated IOVA_RANGE cap claims more ranges than the reply holds") {
    ReplyBuilder reply(24 + 16 + 16);
    reply.ranges(24, 0, 2, {{0x0, 0xffff}});
    auto info = parse_iommu_info(reply.bytes());
    REQUIRE_FALSE(info.ok());
    CHECK_THAT(info.error().message(), Catch::Contains("claims 2 ranges"));
  }
  SECTION("a truncated DMA_AVAIL cap") {
    ReplyBuilder reply(24 + 10);
    reply.header(24, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 0);
    auto info = parse_iommu_info(reply.bytes());
    REQUIRE_FALSE(info.ok());
    CHECK_THAT(info.error().message(), Catch::Contains("DMA_AVAIL capability at offset 0x18"));
  }
  SECTION("a cap header cut off at the end of the reply") {
    ReplyBuilder reply(24 + 12 + 4);
    reply.avail(24, 36, 5);
    auto info = parse_iommu_info(reply.bytes());
    REQUIRE_FALSE(info.ok());
    CHECK_THAT(info.error().message(), Catch::Contains("offset 0x24 runs past the end"));
  }
  SECTION("next points outside the buffer") {
    ReplyBuilder reply(24 + 12);
    reply.avail(24, 0x1000, 5);
    auto info = parse_iommu_info(reply.bytes());
    REQUIRE_FALSE(info.ok());
    CHECK_THAT(info.error().message(), Catch::Contains("0x1000 runs past the end of the 36-byte"));
  }
  SECTION("next loops back") {
    ReplyBuilder reply(24 + 12 + 8);
    reply.avail(24, 36, 5).header(36, 0x7000, 24);
    auto info = parse_iommu_info(reply.bytes());
    REQUIRE_FALSE(info.ok());
    CHECK_THAT(info.error().message(), Catch::Contains("loops back to offset 0x18"));
  }
  SECTION("a cap inside the fixed header") {
    ReplyBuilder reply(24 + 12);
    reply.cap_offset(8);
    auto info = parse_iommu_info(reply.bytes());
    REQUIRE_FALSE(info.ok());
    CHECK_THAT(info.error().message(), Catch::Contains("overlaps the 24-byte info header"));
  }
  SECTION("a chain longer than the hop limit") {
    const std::size_t caps = kMaxCapHops + 1;
    ReplyBuilder reply(24 + caps * 8);
    for (std::size_t i = 0; i < caps; ++i) {
      const std::size_t at = 24 + i * 8;
      reply.header(at, 0x7000, i + 1 == caps ? 0 : static_cast<std::uint32_t>(at + 8));
    }
    auto info = parse_iommu_info(reply.bytes());
    REQUIRE_FALSE(info.ok());
    CHECK_THAT(info.error().message(),
               Catch::Contains("longer than " + std::to_string(kMaxCapHops)));
  }
  SECTION("CAPS set but cap_offset 0: the caps did not fit") {
    ReplyBuilder reply(24);
    reply.cap_offset(0);
    auto info = parse_iommu_info(reply.bytes());
    REQUIRE_FALSE(info.ok());
    CHECK_THAT(info.error().message(), Catch::Contains("did not fit"));
  }
  SECTION("a reply shorter than the header") {
    std::vector<std::uint8_t> tiny(12, 0);
    REQUIRE_FALSE(parse_iommu_info(tiny).ok());
  }
}

TEST_CASE("GET_INFO: a chain exactly at the hop limit still parses") {
  const std::size_t caps = kMaxCapHops;
  ReplyBuilder reply(24 + caps * 8);
  for (std::size_t i = 0; i < caps; ++i) {
    const std::size_t at = 24 + i * 8;
    reply.header(at, 0x7000, i + 1 == caps ? 0 : static_cast<std::uint32_t>(at + 8));
  }
  auto info = parse_iommu_info(reply.bytes());
  REQUIRE(info.ok());
  CHECK(info->cap_ids.size() == caps);
  CHECK(info->budget.source == AvailSource::kAbsent);
}

TEST_CASE("GET_INFO: the budget's source") {
  SECTION("no DMA_AVAIL cap (Linux < 5.10): absent, which is unknown, not unlimited") {
    FakeKernelConfig config;
    config.report_dma_avail = false;
    auto rig = make_rig(config);
    auto info = read_iommu_info(*rig.fake, rig.container->fd());
    REQUIRE(info.ok());
    CHECK(info->cap_ids == std::vector<std::uint16_t>{2, 1});
    CHECK(info->budget.source == AvailSource::kAbsent);
    CHECK(info->budget.describe() == "absent");
    CHECK(info->budget.fits(1'000'000));
  }
  SECTION("avail == UINT32_MAX (iommufd compatibility): unlimited") {
    FakeKernelConfig config;
    config.unlimited = true;
    auto rig = make_rig(config);
    auto info = read_iommu_info(*rig.fake, rig.container->fd());
    REQUIRE(info.ok());
    CHECK(info->budget.source == AvailSource::kUnlimited);
    CHECK(info->budget.describe() == "unlimited");
  }
  SECTION("a plain number: capability, and fits() compares") {
    FakeKernelConfig config;
    config.dma_entry_limit = 3;
    auto rig = make_rig(config);
    auto info = read_iommu_info(*rig.fake, rig.container->fd());
    REQUIRE(info.ok());
    CHECK(info->budget.source == AvailSource::kCapability);
    CHECK(info->budget.fits(3));
    CHECK_FALSE(info->budget.fits(4));
  }
  SECTION("no caps at all (old kernel): no ranges, budget absent") {
    FakeKernelConfig config;
    config.report_dma_avail = false;
    config.report_migration = false;
    config.report_iova_ranges = false;
    auto rig = make_rig(config);
    const int before = rig.fake->calls(VFIO_IOMMU_GET_INFO);
    auto info = read_iommu_info(*rig.fake, rig.container->fd());
    REQUIRE(info.ok());
    CHECK(rig.fake->calls(VFIO_IOMMU_GET_INFO) - before == 1);
    CHECK(info->cap_ids.empty());
    CHECK(info->iova_ranges.empty());
    CHECK(info->budget.source == AvailSource::kAbsent);
  }
}

TEST_CASE("GET_INFO: argsz growth is followed, and bounded") {
  SECTION("one extra round") {
    FakeKernelConfig config;
    config.info_growth_rounds = 1;
    auto rig = make_rig(config);
    const int before = rig.fake->calls(VFIO_IOMMU_GET_INFO);
    auto info = read_iommu_info(*rig.fake, rig.container->fd());
    REQUIRE(info.ok());
    CHECK(rig.fake->calls(VFIO_IOMMU_GET_INFO) - before == 3);
    CHECK(info->cap_ids == std::vector<std::uint16_t>{2, 3, 1, 0x7ff0});
    CHECK(info->budget.avail == config.dma_entry_limit);
  }
  SECTION("two extra rounds") {
    FakeKernelConfig config;
    config.info_growth_rounds = 2;
    auto rig = make_rig(config);
    const int before = rig.fake->calls(VFIO_IOMMU_GET_INFO);
    auto info = read_iommu_info(*rig.fake, rig.container->fd());
    REQUIRE(info.ok());
    CHECK(rig.fake->calls(VFIO_IOMMU_GET_INFO) - before == 4);
    CHECK(info->cap_ids.size() == 5);
  }
  SECTION("a kernel that keeps growing forever") {
    FakeKernelConfig config;
    config.info_growth_rounds = INT_MAX;
    auto rig = make_rig(config);
    const int before = rig.fake->calls(VFIO_IOMMU_GET_INFO);
    auto info = read_iommu_info(*rig.fake, rig.container->fd());
    REQUIRE_FALSE(info.ok());
    CHECK(rig.fake->calls(VFIO_IOMMU_GET_INFO) - before == kMaxInfoCalls);
    CHECK_THAT(info.error().message(), Catch::Contains("argsz still growing after"));
  }
  SECTION("a kernel asking for an absurd buffer") {
    FakeKernelConfig config;
    config.info_blob = ReplyBuilder(kMaxInfoBytes + 8).bytes();
    auto rig = make_rig(config);
    auto info = read_iommu_info(*rig.fake, rig.container->fd());
    REQUIRE_FALSE(info.ok());
    CHECK_THAT(info.error().message(), Catch::Contains("corrupt reply"));
  }
  SECTION("GET_INFO failing keeps the errno") {
    auto rig = make_rig();
    rig.fake->inject(VFIO_IOMMU_GET_INFO, rig.fake->calls(VFIO_IOMMU_GET_INFO) + 1, EFAULT);
    auto info = read_iommu_info(*rig.fake, rig.container->fd());
    REQUIRE_FALSE(info.ok());
    CHECK(info.error().errno_value() == EFAULT);
  }
}

TEST_CASE("reread_avail follows the live value") {
  FakeKernelConfig config;
  config.dma_entry_limit = 10;
  auto rig = make_rig(config);
  rig.fake->take_entries(4);
  auto budget = reread_avail(*rig.fake, rig.container->fd());
  REQUIRE(budget.ok());
  CHECK(budget->source == AvailSource::kCapability);
  CHECK(budget->avail == 6);
}

}  // namespace
}  // namespace keel::vfio
