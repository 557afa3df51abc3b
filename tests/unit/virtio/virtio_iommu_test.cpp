// virtio-iommu: configuration, reserved regions, the success paths and the backend's failures.
#include "devices/virtio/virtio_iommu.hpp"

#include <catch2/catch.hpp>

#include "tests/unit/virtio/virtio_iommu_rig.hpp"

namespace keel::virtio {
namespace {

using namespace iommu_test;  // NOLINT(google-build-using-namespace): the rig and request builders
// ---- config space and features ----

TEST_CASE("virtio-iommu: features offer input and domain ranges, map/unmap and probe only") {
  Rig rig;
  CHECK(rig.dev->device_features() ==
        ((1u << VIRTIO_IOMMU_F_INPUT_RANGE) | (1u << VIRTIO_IOMMU_F_DOMAIN_RANGE) |
         (1u << VIRTIO_IOMMU_F_MAP_UNMAP) | (1u << VIRTIO_IOMMU_F_PROBE)));
  CHECK((rig.dev->device_features() & (1u << VIRTIO_IOMMU_F_BYPASS)) == 0);
  CHECK((rig.dev->device_features() & (1u << VIRTIO_IOMMU_F_BYPASS_CONFIG)) == 0);
  CHECK((rig.dev->device_features() & (1u << VIRTIO_IOMMU_F_MMIO)) == 0);
}

TEST_CASE("virtio-iommu: config space is struct virtio_iommu_config, little-endian") {
  VirtioIommuConfig config;
  config.page_size_mask = 0x40201000;
  config.input_range = {0x1000, 0x7fffffffff};
  config.domain_first = 1;
  config.domain_last = 0x7fff;
  config.probe_size = 0x200;
  Rig rig(config);

  REQUIRE(VirtioIommu::kConfigSize == 40);
  std::vector<std::uint8_t> bytes(48, kFill);
  rig.dev->read_config(0, bytes);
  const std::vector<std::uint8_t> expected = {
      0x00, 0x10, 0x20, 0x40, 0x00, 0x00, 0x00, 0x00,  // page_size_mask
      0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // input_range.start
      0xff, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x00, 0x00,  // input_range.end
      0x01, 0x00, 0x00, 0x00, 0xff, 0x7f, 0x00, 0x00,  // domain_range.start, .end
      0x00, 0x02, 0x00, 0x00,                          // probe_size
      0x00, 0x00, 0x00, 0x00,                          // bypass, reserved
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // past the end: zeros
  };
  CHECK(bytes == expected);

  SECTION("partial and unaligned reads") {
    std::vector<std::uint8_t> two(2, kFill);
    rig.dev->read_config(28, two);
    CHECK(two == std::vector<std::uint8_t>{0xff, 0x7f});
    std::vector<std::uint8_t> four(4, kFill);
    rig.dev->read_config(38, four);
    CHECK(four == std::vector<std::uint8_t>{0, 0, 0, 0});
    rig.dev->read_config(kMax, four);
    CHECK(four == std::vector<std::uint8_t>{0, 0, 0, 0});
    rig.dev->read_config(0, {});
  }
  SECTION("writes change nothing") {
    const std::vector<std::uint8_t> ones(40, 0xff);
    rig.dev->write_config(0, ones);
    rig.dev->write_config(36, std::vector<std::uint8_t>{1});
    rig.dev->write_config(kMax, ones);
    std::vector<std::uint8_t> again(48, kFill);
    rig.dev->read_config(0, again);
    CHECK(again == expected);
  }
}

TEST_CASE("virtio-iommu: the default config is a 4 KiB granule over all IOVAs and domains") {
  Rig rig;
  std::vector<std::uint8_t> bytes(40);
  rig.dev->read_config(0, bytes);
  CHECK(le64_at(bytes, 0) == 0xfffffffffffff000);
  CHECK(le64_at(bytes, 8) == 0);
  CHECK(le64_at(bytes, 16) == kMax);
  CHECK(le64_at(bytes, 24) == 0xffffffff00000000);  // domains 0 to 0xffffffff
  CHECK(bytes[32] == 0x00);
  CHECK(bytes[33] == 0x02);  // probe_size 512
}

TEST_CASE("virtio-iommu: create refuses configurations the guest could not use") {
  FakeBackend backend;
  auto refused = [&](VirtioIommuConfig config) {
    auto r = VirtioIommu::create(std::move(config), backend);
    if (r.ok()) {
      return std::string();
    }
    return r.error().message();
  };
  VirtioIommuConfig c;
  c.page_size_mask = 0;
  CHECK_THAT(refused(c), Catch::Contains("page_size_mask"));
  c = {};
  c.input_range = {2, 1};
  CHECK_THAT(refused(c), Catch::Contains("input range"));
  c = {};
  c.domain_first = 5;
  c.domain_last = 4;
  CHECK_THAT(refused(c), Catch::Contains("domain range"));
  c = {};
  c.probe_size = 0;
  CHECK_THAT(refused(c), Catch::Contains("probe_size"));
  c = {};
  c.probe_size = 47;  // two regions need 48
  c.reserved.push_back({0, 0xfff, VIRTIO_IOMMU_RESV_MEM_T_RESERVED});
  CHECK_THAT(refused(c), Catch::Contains("raise probe_size"));
  c.probe_size = 48;
  CHECK(refused(c).empty());
  c = {};
  c.endpoint_reserved[kEp1] = {{0x8000000, 0x80fffff, VIRTIO_IOMMU_RESV_MEM_T_MSI}};
  CHECK_THAT(refused(c), Catch::Contains("two MSI regions"));
  c = {};
  c.reserved.push_back({0x2000, 0x1fff, VIRTIO_IOMMU_RESV_MEM_T_RESERVED});
  CHECK_THAT(refused(c), Catch::Contains("ends before it starts"));
  c = {};
  c.reserved.push_back({0x2000, 0x2fff, 7});
  CHECK_THAT(refused(c), Catch::Contains("unknown subtype"));
}

// ---- reserved regions ----

TEST_CASE("virtio-iommu: iova_holes is the complement of the host's valid IOVA ranges") {
  const std::vector<AddressRange> x86 = {{0xfef00000, 0x7fffffffff}, {0, 0xfedfffff}};
  const auto holes = iova_holes(x86);
  REQUIRE(holes.size() == 2);
  CHECK(holes[0].start == 0xfee00000);
  CHECK(holes[0].end == 0xfeefffff);
  CHECK(holes[0].subtype == VIRTIO_IOMMU_RESV_MEM_T_RESERVED);
  CHECK(holes[1].start == 0x8000000000);
  CHECK(holes[1].end == kMax);

  CHECK(iova_holes({}).size() == 1);
  CHECK(iova_holes({}).at(0).end == kMax);
  const std::vector<AddressRange> whole = {{0, kMax}};
  CHECK(iova_holes(whole).empty());
  const std::vector<AddressRange> touching = {{0x1000, 0x1fff}, {0x2000, kMax}};
  const auto low = iova_holes(touching);
  REQUIRE(low.size() == 1);
  CHECK(low[0].start == 0);
  CHECK(low[0].end == 0xfff);
  const std::vector<AddressRange> nested = {{0, 0xffff}, {0x1000, 0x1fff}};
  const auto above = iova_holes(nested);
  REQUIRE(above.size() == 1);
  CHECK(above[0].start == 0x10000);
}

TEST_CASE("virtio-iommu: reserved regions are merged and the MSI window is cut out of them") {
  VirtioIommuConfig config;
  // The host's holes include the MSI window itself, as on x86.
  config.reserved.push_back({0xfee00000, 0xfeefffff, VIRTIO_IOMMU_RESV_MEM_T_RESERVED});
  config.reserved.push_back({0xfe000000, 0xfee0ffff, VIRTIO_IOMMU_RESV_MEM_T_RESERVED});
  config.reserved.push_back({0x8000000000, kMax, VIRTIO_IOMMU_RESV_MEM_T_RESERVED});
  config.endpoint_reserved[kEp2] = {{0x1000, 0x1fff, VIRTIO_IOMMU_RESV_MEM_T_RESERVED},
                                    {0x2000, 0x2fff, VIRTIO_IOMMU_RESV_MEM_T_RESERVED},
                                    kX86MsiWindow};
  Rig rig(config);
  const auto& all = rig.dev->reserved_regions(kEp1);
  REQUIRE(all.size() == 3);
  CHECK(all[0].start == 0xfe000000);
  CHECK(all[0].end == 0xfedfffff);
  CHECK(all[0].subtype == VIRTIO_IOMMU_RESV_MEM_T_RESERVED);
  CHECK(all[1].start == 0xfee00000);
  CHECK(all[1].end == 0xfeefffff);
  CHECK(all[1].subtype == VIRTIO_IOMMU_RESV_MEM_T_MSI);
  CHECK(all[2].start == 0x8000000000);
  const auto& ep2 = rig.dev->reserved_regions(kEp2);
  REQUIRE(ep2.size() == 4);
  CHECK(ep2[0].start == 0x1000);
  CHECK(ep2[0].end == 0x2fff);
}

// ---- success paths ----

TEST_CASE("virtio-iommu: attach, map, unmap and detach make exactly the backend calls") {
  Rig rig;
  CHECK(rig.status(attach_req(1, kEp1)) == VIRTIO_IOMMU_S_OK);
  CHECK(rig.take_calls().empty());  // a new domain has nothing to replay
  CHECK(rig.dev->attached_endpoints() == std::map<std::uint32_t, std::uint32_t>{{kEp1, 1}});

  CHECK(rig.status(map_req(1, 0x10000, 0x1ffff, 0x200000)) == VIRTIO_IOMMU_S_OK);
  CHECK(rig.take_calls() == std::vector<Call>{mapped(kEp1, kA)});
  REQUIRE(rig.dev->mappings(1).size() == 1);
  CHECK(same(rig.dev->mappings(1)[0], kA));

  CHECK(rig.status(unmap_req(1, 0x10000, 0x1ffff)) == VIRTIO_IOMMU_S_OK);
  CHECK(rig.take_calls() == std::vector<Call>{unmapped(kEp1, kA)});
  CHECK(rig.dev->mappings(1).empty());

  CHECK(rig.status(map_req(1, 0x40000, 0x40fff, 0x300000, VIRTIO_IOMMU_MAP_F_READ)) ==
        VIRTIO_IOMMU_S_OK);
  CHECK(rig.take_calls() == std::vector<Call>{mapped(kEp1, kB)});
  CHECK(rig.status(detach_req(1, kEp1)) == VIRTIO_IOMMU_S_OK);
  CHECK(rig.take_calls() == std::vector<Call>{unmapped(kEp1, kB)});
  CHECK(rig.dev->attached_endpoints().empty());
  CHECK(rig.dev->mappings_per_domain().empty());  // the empty domain is gone
  CHECK(rig.backend.held.empty());
  CHECK(rig.backend.violations.empty());

  const auto& c = rig.dev->counters();
  CHECK(c.requests[VIRTIO_IOMMU_T_ATTACH] == 1);
  CHECK(c.requests[VIRTIO_IOMMU_T_MAP] == 2);
  CHECK(c.requests[VIRTIO_IOMMU_T_UNMAP] == 1);
  CHECK(c.requests[VIRTIO_IOMMU_T_DETACH] == 1);
  CHECK(c.answers[VIRTIO_IOMMU_S_OK] == 5);
}

TEST_CASE("virtio-iommu: a domain's mappings are replayed for an endpoint that joins it") {
  Rig rig;
  two_mappings(rig);
  CHECK(rig.status(attach_req(1, kEp2)) == VIRTIO_IOMMU_S_OK);
  CHECK(rig.take_calls() == std::vector<Call>{mapped(kEp2, kA), mapped(kEp2, kB)});
  CHECK(rig.dev->attached_endpoints() ==
        std::map<std::uint32_t, std::uint32_t>{{kEp1, 1}, {kEp2, 1}});

  SECTION("a new mapping fans out to both endpoints") {
    const devices::DmaMapping c = mapping(0x80000, 0x9ffff, 0x400000);
    CHECK(rig.status(map_req(1, 0x80000, 0x9ffff, 0x400000)) == VIRTIO_IOMMU_S_OK);
    CHECK(rig.take_calls() == std::vector<Call>{mapped(kEp1, c), mapped(kEp2, c)});
    CHECK(rig.status(unmap_req(1, 0x80000, 0x9ffff)) == VIRTIO_IOMMU_S_OK);
    CHECK(rig.take_calls() == std::vector<Call>{unmapped(kEp1, c), unmapped(kEp2, c)});
  }
  SECTION("detaching one endpoint releases its mappings only; the domain stays") {
    CHECK(rig.status(detach_req(1, kEp1)) == VIRTIO_IOMMU_S_OK);
    CHECK(rig.take_calls() == std::vector<Call>{unmapped(kEp1, kA), unmapped(kEp1, kB)});
    CHECK(rig.dev->mappings(1).size() == 2);
    CHECK(rig.backend.held.count(kEp1) == 0);
    CHECK(rig.backend.held.at(kEp2).size() == 2);
  }
  CHECK(rig.backend.violations.empty());
}

TEST_CASE("virtio-iommu: attaching elsewhere detaches first") {
  Rig rig;
  two_mappings(rig);

  SECTION("alone in its domain: the domain goes with its mappings") {
    CHECK(rig.status(attach_req(2, kEp1)) == VIRTIO_IOMMU_S_OK);
    CHECK(rig.take_calls() == std::vector<Call>{unmapped(kEp1, kA), unmapped(kEp1, kB)});
    CHECK(rig.dev->mappings_per_domain() == std::map<std::uint32_t, std::size_t>{{2, 0}});
    CHECK(rig.dev->attached_endpoints() == std::map<std::uint32_t, std::uint32_t>{{kEp1, 2}});
    // Domain 1 no longer exists: what Linux expects before it replays its own copy.
    CHECK(rig.status(map_req(1, 0x10000, 0x1ffff, 0x200000)) == VIRTIO_IOMMU_S_NOENT);
    CHECK(rig.status(attach_req(1, kEp2)) == VIRTIO_IOMMU_S_OK);
    CHECK(rig.status(map_req(1, 0x10000, 0x1ffff, 0x200000)) == VIRTIO_IOMMU_S_OK);
  }
  SECTION("sharing its domain: the domain keeps its mappings for the other endpoint") {
    REQUIRE(rig.status(attach_req(1, kEp2)) == VIRTIO_IOMMU_S_OK);
    rig.take_calls();
    const devices::DmaMapping c = mapping(0x10000, 0x10fff, 0x500000);
    REQUIRE(rig.status(attach_req(2, kEp1)) == VIRTIO_IOMMU_S_OK);
    REQUIRE(rig.status(map_req(2, 0x10000, 0x10fff, 0x500000)) == VIRTIO_IOMMU_S_OK);
    CHECK(rig.take_calls() ==
          std::vector<Call>{unmapped(kEp1, kA), unmapped(kEp1, kB), mapped(kEp1, c)});
    CHECK(rig.dev->mappings_per_domain() == std::map<std::uint32_t, std::size_t>{{1, 2}, {2, 1}});
  }
  SECTION("again to the same domain, alone: it starts over empty") {
    CHECK(rig.status(attach_req(1, kEp1)) == VIRTIO_IOMMU_S_OK);
    CHECK(rig.take_calls() == std::vector<Call>{unmapped(kEp1, kA), unmapped(kEp1, kB)});
    CHECK(rig.dev->mappings(1).empty());
    // Linux replays its mappings now; they must not clash with stale ones.
    CHECK(rig.status(map_req(1, 0x10000, 0x1ffff, 0x200000)) == VIRTIO_IOMMU_S_OK);
  }
  SECTION("again to the same domain, shared: its mappings are released and replayed") {
    REQUIRE(rig.status(attach_req(1, kEp2)) == VIRTIO_IOMMU_S_OK);
    rig.take_calls();
    CHECK(rig.status(attach_req(1, kEp1)) == VIRTIO_IOMMU_S_OK);
    CHECK(rig.take_calls() == std::vector<Call>{unmapped(kEp1, kA), unmapped(kEp1, kB),
                                                mapped(kEp1, kA), mapped(kEp1, kB)});
    CHECK(rig.dev->mappings(1).size() == 2);
  }
  CHECK(rig.backend.violations.empty());
}

// ---- failures of the backend ----

TEST_CASE("virtio-iommu: a map refused for the second endpoint is rolled back on the first") {
  Rig rig;
  REQUIRE(rig.status(attach_req(1, kEp1)) == VIRTIO_IOMMU_S_OK);
  REQUIRE(rig.status(attach_req(1, kEp2)) == VIRTIO_IOMMU_S_OK);
  rig.backend.fail_map_at = 2;
  rig.backend.fail_status = devices::DmaStatus::kNoMemory;
  CHECK(rig.status(map_req(1, 0x10000, 0x1ffff, 0x200000)) == VIRTIO_IOMMU_S_NOMEM);
  CHECK(rig.take_calls() ==
        std::vector<Call>{mapped(kEp1, kA), mapped(kEp2, kA), unmapped(kEp1, kA)});
  CHECK(rig.dev->mappings(1).empty());
  CHECK(rig.backend.held.empty());
  CHECK(rig.dev->counters().backend_map_failures == 1);
  CHECK(rig.dev->counters().rollbacks == 1);
  CHECK(rig.dev->counters().answers[VIRTIO_IOMMU_S_NOMEM] == 1);
  // The range is free again: the next MAP of it works on both.
  CHECK(rig.status(map_req(1, 0x10000, 0x1ffff, 0x200000)) == VIRTIO_IOMMU_S_OK);
  CHECK(rig.take_calls() == std::vector<Call>{mapped(kEp1, kA), mapped(kEp2, kA)});
  CHECK(rig.backend.violations.empty());
}

TEST_CASE("virtio-iommu: the backend's refusal is the guest's answer") {
  Rig rig;
  REQUIRE(rig.status(attach_req(1, kEp1)) == VIRTIO_IOMMU_S_OK);
  struct Case {
    devices::DmaStatus backend;
    std::uint8_t guest;
  };
  auto c = GENERATE(Case{devices::DmaStatus::kNoMemory, VIRTIO_IOMMU_S_NOMEM},
                    Case{devices::DmaStatus::kInvalid, VIRTIO_IOMMU_S_INVAL},
                    Case{devices::DmaStatus::kRange, VIRTIO_IOMMU_S_RANGE},
                    Case{devices::DmaStatus::kIoError, VIRTIO_IOMMU_S_IOERR},
                    Case{devices::DmaStatus::kUnsupported, VIRTIO_IOMMU_S_UNSUPP},
                    Case{devices::DmaStatus::kNoEntry, VIRTIO_IOMMU_S_NOENT});
  rig.backend.fail_map_at = 1;
  rig.backend.fail_status = c.backend;
  CHECK(rig.status(map_req(1, 0x10000, 0x1ffff, 0x200000)) == c.guest);
  CHECK(rig.take_calls() == std::vector<Call>{mapped(kEp1, kA)});
  CHECK(rig.dev->mappings(1).empty());
  CHECK(rig.dev->counters().rollbacks == 0);
}

TEST_CASE("virtio-iommu: a status outside the spec from the backend becomes S_DEVERR") {
  Rig rig;
  REQUIRE(rig.status(attach_req(1, kEp1)) == VIRTIO_IOMMU_S_OK);
  rig.backend.fail_map_at = 1;
  rig.backend.fail_status = static_cast<devices::DmaStatus>(0x42);
  CHECK(rig.status(map_req(1, 0x10000, 0x1ffff, 0x200000)) == VIRTIO_IOMMU_S_DEVERR);
  CHECK(rig.dev->mappings(1).empty());
}

TEST_CASE("virtio-iommu: a replay refused on attach leaves the endpoint detached") {
  Rig rig;
  two_mappings(rig);
  rig.backend.fail_map_at = rig.backend.maps + 2;  // the second replayed mapping
  rig.backend.fail_status = devices::DmaStatus::kNoMemory;
  CHECK(rig.status(attach_req(1, kEp2)) == VIRTIO_IOMMU_S_NOMEM);
  CHECK(rig.take_calls() ==
        std::vector<Call>{mapped(kEp2, kA), mapped(kEp2, kB), unmapped(kEp2, kA)});
  CHECK(rig.dev->attached_endpoints() == std::map<std::uint32_t, std::uint32_t>{{kEp1, 1}});
  CHECK(rig.dev->mappings(1).size() == 2);
  CHECK(rig.backend.held.count(kEp2) == 0);
  CHECK(rig.backend.held.at(kEp1).size() == 2);

  SECTION("moving from its own domain: it was detached from that one first") {
    rig.backend.fail_map_at = 0;
    REQUIRE(rig.status(attach_req(2, kEp2)) == VIRTIO_IOMMU_S_OK);
    rig.take_calls();
    rig.backend.fail_map_at = rig.backend.maps + 1;
    CHECK(rig.status(attach_req(1, kEp2)) == VIRTIO_IOMMU_S_NOMEM);
    CHECK(rig.take_calls() == std::vector<Call>{mapped(kEp2, kA)});
    CHECK(rig.dev->mappings_per_domain() == std::map<std::uint32_t, std::size_t>{{1, 2}});
    CHECK(rig.dev->attached_endpoints() == std::map<std::uint32_t, std::uint32_t>{{kEp1, 1}});
  }
  CHECK(rig.backend.violations.empty());
}

TEST_CASE("virtio-iommu: a host unmap that fails is reported as S_DEVERR, the mapping forgotten") {
  Rig rig;
  two_mappings(rig);
  rig.backend.fail_unmaps = true;
  CHECK(rig.status(unmap_req(1, 0x10000, 0x1ffff)) == VIRTIO_IOMMU_S_DEVERR);
  CHECK(rig.dev->mappings(1).size() == 1);
  CHECK(rig.dev->counters().backend_unmap_failures == 1);
  CHECK(rig.status(detach_req(1, kEp1)) == VIRTIO_IOMMU_S_DEVERR);
  CHECK(rig.dev->attached_endpoints().empty());
  CHECK(rig.dev->counters().backend_unmap_failures == 2);
}

}  // namespace
}  // namespace keel::virtio
