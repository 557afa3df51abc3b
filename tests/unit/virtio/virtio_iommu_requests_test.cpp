// virtio-iommu: the MAP and UNMAP rules, unknown objects, reserved fields, malformed requests,
// PROBE, counters and reset.
#include "devices/virtio/virtio_iommu.hpp"

#include <catch2/catch.hpp>

#include "tests/unit/virtio/virtio_iommu_rig.hpp"

namespace keel::virtio {
namespace {

using namespace iommu_test;  // NOLINT(google-build-using-namespace): the rig and request builders
// ---- MAP and UNMAP rules ----

TEST_CASE("virtio-iommu: a map overlapping one of the domain's mappings is S_INVAL") {
  Rig rig;
  two_mappings(rig);
  struct Case {
    std::uint64_t first, last;
  };
  auto c = GENERATE(Case{0x10000, 0x1ffff}, Case{0xf000, 0x10fff}, Case{0x1f000, 0x20fff},
                    Case{0x11000, 0x11fff}, Case{0x0, 0xfffff}, Case{0x40000, 0x40fff},
                    Case{0x3f000, 0x40fff});
  CHECK(rig.status(map_req(1, c.first, c.last, 0x900000)) == VIRTIO_IOMMU_S_INVAL);
  CHECK(rig.take_calls().empty());
  CHECK(rig.dev->mappings(1).size() == 2);
}

TEST_CASE("virtio-iommu: mappings that touch do not overlap") {
  Rig rig;
  two_mappings(rig);
  CHECK(rig.status(map_req(1, 0xf000, 0xffff, 0x900000)) == VIRTIO_IOMMU_S_OK);
  CHECK(rig.status(map_req(1, 0x20000, 0x3ffff, 0x900000)) == VIRTIO_IOMMU_S_OK);
  CHECK(rig.status(map_req(1, 0x41000, 0x41fff, 0x900000)) == VIRTIO_IOMMU_S_OK);
  CHECK(rig.dev->mappings(1).size() == 5);
  // Another domain has its own address space.
  REQUIRE(rig.status(attach_req(2, kEp2)) == VIRTIO_IOMMU_S_OK);
  CHECK(rig.status(map_req(2, 0x10000, 0x1ffff, 0x900000)) == VIRTIO_IOMMU_S_OK);
}

TEST_CASE("virtio-iommu: a one-byte granule, as the spec's examples use") {
  VirtioIommuConfig config;
  config.page_size_mask = 1;
  config.reserved.clear();
  Rig rig(config);
  REQUIRE(rig.status(attach_req(1, kEp1)) == VIRTIO_IOMMU_S_OK);
  CHECK(rig.status(map_req(1, 0, 4, 0x100)) == VIRTIO_IOMMU_S_OK);
  CHECK(rig.status(map_req(1, 4, 9, 0x200)) == VIRTIO_IOMMU_S_INVAL);  // shares byte 4
  CHECK(rig.status(map_req(1, 5, 5, 0x201)) == VIRTIO_IOMMU_S_OK);     // one byte
  CHECK(rig.status(map_req(1, 6, 9, 0x203)) == VIRTIO_IOMMU_S_OK);
  CHECK(rig.take_calls() == std::vector<Call>{mapped(kEp1, devices::DmaMapping{0, 5, 0x100, kRW}),
                                              mapped(kEp1, devices::DmaMapping{5, 1, 0x201, kRW}),
                                              mapped(kEp1, devices::DmaMapping{6, 4, 0x203, kRW})});
  CHECK(rig.status(unmap_req(1, 5, 8)) == VIRTIO_IOMMU_S_RANGE);
  CHECK(rig.status(unmap_req(1, 1, 9)) == VIRTIO_IOMMU_S_RANGE);
  CHECK(rig.status(unmap_req(1, 5, 9)) == VIRTIO_IOMMU_S_OK);
  CHECK(rig.dev->mappings(1).size() == 1);
}

TEST_CASE("virtio-iommu: malformed map ranges") {
  VirtioIommuConfig config;
  config.input_range = {0x1000, 0xffffffffff};
  Rig rig(config);
  REQUIRE(rig.status(attach_req(1, kEp1)) == VIRTIO_IOMMU_S_OK);
  rig.take_calls();
  // Reversed.
  CHECK(rig.status(map_req(1, 0x20000, 0x1ffff, 0)) == VIRTIO_IOMMU_S_INVAL);
  // Misaligned to the 4 KiB granule: start, physical start, end + 1 (the spec: S_RANGE).
  CHECK(rig.status(map_req(1, 0x10800, 0x1ffff, 0)) == VIRTIO_IOMMU_S_RANGE);
  CHECK(rig.status(map_req(1, 0x10000, 0x1ffff, 0x800)) == VIRTIO_IOMMU_S_RANGE);
  CHECK(rig.status(map_req(1, 0x10000, 0x1f7ff, 0)) == VIRTIO_IOMMU_S_RANGE);
  CHECK(rig.status(map_req(1, 0x10000, 0x10000, 0)) == VIRTIO_IOMMU_S_RANGE);
  // Outside the input range.
  CHECK(rig.status(map_req(1, 0x0, 0xfff, 0)) == VIRTIO_IOMMU_S_RANGE);
  CHECK(rig.status(map_req(1, 0xfffffff000, 0x10000000fff, 0)) == VIRTIO_IOMMU_S_RANGE);
  // On the MSI window (a reserved region of the attached endpoint).
  CHECK(rig.status(map_req(1, 0xfee00000, 0xfee00fff, 0)) == VIRTIO_IOMMU_S_RANGE);
  CHECK(rig.status(map_req(1, 0xfe000000, 0xfeffffff, 0)) == VIRTIO_IOMMU_S_RANGE);
  CHECK(rig.take_calls().empty());
  CHECK(rig.dev->mappings(1).empty());
  // Right below and above the window is fine.
  CHECK(rig.status(map_req(1, 0xfedff000, 0xfedfffff, 0)) == VIRTIO_IOMMU_S_OK);
  CHECK(rig.status(map_req(1, 0xfef00000, 0xfef00fff, 0)) == VIRTIO_IOMMU_S_OK);
}

TEST_CASE("virtio-iommu: map arithmetic at the top of the 64-bit space") {
  VirtioIommuConfig config;
  config.reserved.clear();
  Rig rig(config);
  REQUIRE(rig.status(attach_req(1, kEp1)) == VIRTIO_IOMMU_S_OK);
  // 2^64 bytes: size = end - start + 1 would be 0.
  CHECK(rig.status(map_req(1, 0, kMax, 0)) == VIRTIO_IOMMU_S_RANGE);
  // The physical end would pass 2^64.
  CHECK(rig.status(map_req(1, 0x1000, 0x2fff, 0xfffffffffffff000)) == VIRTIO_IOMMU_S_RANGE);
  CHECK(rig.take_calls().empty());
  // The last page: end + 1 wraps to 0, which is aligned; the size is 4 KiB.
  CHECK(rig.status(map_req(1, 0xfffffffffffff000, kMax, 0x1000)) == VIRTIO_IOMMU_S_OK);
  CHECK(rig.take_calls() ==
        std::vector<Call>{mapped(kEp1, devices::DmaMapping{0xfffffffffffff000, 0x1000, 0x1000, kRW})});
  // Everything but the first page.
  CHECK(rig.status(map_req(1, 0x1000, 0xffffffffffffefff, 0)) == VIRTIO_IOMMU_S_OK);
  CHECK(rig.take_calls() ==
        std::vector<Call>{mapped(kEp1, devices::DmaMapping{0x1000, 0xffffffffffffe000, 0, kRW})});
  CHECK(rig.status(map_req(1, 0, 0xfff, 0xfffffffffffff000)) == VIRTIO_IOMMU_S_OK);
  // The full-range UNMAP removes all three.
  CHECK(rig.status(unmap_req(1, 0, kMax)) == VIRTIO_IOMMU_S_OK);
  CHECK(rig.take_calls().size() == 4);
  CHECK(rig.dev->mappings(1).empty());
  CHECK(rig.backend.held.empty());
  CHECK(rig.backend.violations.empty());
}

TEST_CASE("virtio-iommu: map flags") {
  Rig rig;
  REQUIRE(rig.status(attach_req(1, kEp1)) == VIRTIO_IOMMU_S_OK);
  // MMIO is not offered (no F_MMIO): an unknown bit, like any other.
  CHECK(rig.status(map_req(1, 0x10000, 0x10fff, 0, kRW | VIRTIO_IOMMU_MAP_F_MMIO)) ==
        VIRTIO_IOMMU_S_INVAL);
  CHECK(rig.status(map_req(1, 0x10000, 0x10fff, 0, kRW | 8)) == VIRTIO_IOMMU_S_INVAL);
  CHECK(rig.status(map_req(1, 0x10000, 0x10fff, 0, 0x80000000)) == VIRTIO_IOMMU_S_INVAL);
  CHECK(rig.take_calls().empty());
  // Write-only and no-access mappings are the backend's to judge.
  CHECK(rig.status(map_req(1, 0x10000, 0x10fff, 0, VIRTIO_IOMMU_MAP_F_WRITE)) == VIRTIO_IOMMU_S_OK);
  CHECK(rig.status(map_req(1, 0x20000, 0x20fff, 0, 0)) == VIRTIO_IOMMU_S_OK);
  const auto calls = rig.take_calls();
  REQUIRE(calls.size() == 2);
  CHECK(calls[0].mapping.access == VIRTIO_IOMMU_MAP_F_WRITE);
  CHECK(calls[1].mapping.access == 0);
}

TEST_CASE("virtio-iommu: unmap follows the spec's examples") {
  Rig rig;
  REQUIRE(rig.status(attach_req(1, kEp1)) == VIRTIO_IOMMU_S_OK);
  constexpr std::uint64_t P = 0x1000;  // one page: the spec's unit
  auto map = [&](std::uint64_t first, std::uint64_t last) {
    REQUIRE(rig.status(map_req(1, first * P, (last + 1) * P - 1, 0x100000 + first * P)) ==
            VIRTIO_IOMMU_S_OK);
  };
  auto unmap = [&](std::uint64_t first, std::uint64_t last) {
    return rig.status(unmap_req(1, first * P, (last + 1) * P - 1));
  };
  rig.take_calls();
  SECTION("(1) nothing mapped") {
    CHECK(unmap(0, 4) == VIRTIO_IOMMU_S_OK);
    CHECK(rig.take_calls().empty());
  }
  SECTION("(2) exactly one mapping") {
    map(0, 9);
    CHECK(unmap(0, 9) == VIRTIO_IOMMU_S_OK);
    CHECK(rig.dev->mappings(1).empty());
  }
  SECTION("(3) two mappings at once") {
    map(0, 4);
    map(5, 9);
    CHECK(unmap(0, 9) == VIRTIO_IOMMU_S_OK);
    CHECK(rig.dev->mappings(1).empty());
  }
  SECTION("(4) half of a mapping: S_RANGE, nothing removed") {
    map(0, 9);
    rig.take_calls();
    CHECK(unmap(0, 4) == VIRTIO_IOMMU_S_RANGE);
    CHECK(unmap(5, 9) == VIRTIO_IOMMU_S_RANGE);
    CHECK(unmap(3, 4) == VIRTIO_IOMMU_S_RANGE);
    CHECK(rig.take_calls().empty());
    CHECK(rig.dev->mappings(1).size() == 1);
  }
  SECTION("(5) the first of two") {
    map(0, 4);
    map(5, 9);
    rig.take_calls();
    CHECK(unmap(0, 4) == VIRTIO_IOMMU_S_OK);
    CHECK(rig.take_calls() ==
          std::vector<Call>{unmapped(kEp1, devices::DmaMapping{0, 5 * P, 0x100000, kRW})});
    REQUIRE(rig.dev->mappings(1).size() == 1);
    CHECK(rig.dev->mappings(1)[0].iova == 5 * P);
  }
  SECTION("(6) spilling over unmapped addresses") {
    map(0, 4);
    CHECK(unmap(0, 9) == VIRTIO_IOMMU_S_OK);
    CHECK(rig.dev->mappings(1).empty());
  }
  SECTION("(7) two mappings with a gap") {
    map(0, 4);
    map(10, 14);
    CHECK(unmap(0, 14) == VIRTIO_IOMMU_S_OK);
    CHECK(rig.dev->mappings(1).empty());
  }
  SECTION("a range covering one mapping and splitting the next removes neither") {
    map(0, 4);
    map(5, 9);
    rig.take_calls();
    CHECK(unmap(0, 7) == VIRTIO_IOMMU_S_RANGE);
    CHECK(unmap(2, 9) == VIRTIO_IOMMU_S_RANGE);
    CHECK(rig.take_calls().empty());
    CHECK(rig.dev->mappings(1).size() == 2);
  }
  SECTION("reversed") {
    map(0, 4);
    CHECK(rig.status(unmap_req(1, 0x4fff, 0)) == VIRTIO_IOMMU_S_INVAL);
    CHECK(rig.dev->mappings(1).size() == 1);
  }
  CHECK(rig.backend.violations.empty());
}

// ---- unknown objects and reserved fields ----

TEST_CASE("virtio-iommu: unknown domains and endpoints") {
  VirtioIommuConfig config;
  config.domain_first = 1;
  config.domain_last = 100;
  Rig rig(config);
  CHECK(rig.status(attach_req(1, 0x99)) == VIRTIO_IOMMU_S_NOENT);
  CHECK(rig.status(attach_req(0, kEp1)) == VIRTIO_IOMMU_S_RANGE);
  CHECK(rig.status(attach_req(101, kEp1)) == VIRTIO_IOMMU_S_RANGE);
  CHECK(rig.status(map_req(7, 0x10000, 0x10fff, 0)) == VIRTIO_IOMMU_S_NOENT);
  CHECK(rig.status(unmap_req(7, 0x10000, 0x10fff)) == VIRTIO_IOMMU_S_NOENT);
  CHECK(rig.status(detach_req(7, 0x99)) == VIRTIO_IOMMU_S_NOENT);
  CHECK(rig.status(detach_req(7, kEp1)) == VIRTIO_IOMMU_S_INVAL);  // not attached
  REQUIRE(rig.status(attach_req(1, kEp1)) == VIRTIO_IOMMU_S_OK);
  CHECK(rig.status(detach_req(2, kEp1)) == VIRTIO_IOMMU_S_INVAL);  // attached elsewhere
  CHECK(rig.dev->attached_endpoints() == std::map<std::uint32_t, std::uint32_t>{{kEp1, 1}});
  const Answer probe = rig.send(probe_req(0x99), 512 + 4);
  CHECK(probe.used == 516);
  CHECK(probe.out[512] == VIRTIO_IOMMU_S_NOENT);
  CHECK(rig.take_calls().empty());
}

TEST_CASE("virtio-iommu: reserved fields and flags") {
  Rig rig;
  SECTION("attach: nonzero reserved or any flag, BYPASS included, is S_INVAL") {
    auto req = attach_req(1, kEp1);
    req[offsetof(virtio_iommu_req_attach, reserved) + 3] = 1;
    CHECK(rig.status(req) == VIRTIO_IOMMU_S_INVAL);
    CHECK(rig.status(attach_req(1, kEp1, VIRTIO_IOMMU_ATTACH_F_BYPASS)) == VIRTIO_IOMMU_S_INVAL);
    CHECK(rig.status(attach_req(1, kEp1, 0x100)) == VIRTIO_IOMMU_S_INVAL);
    CHECK(rig.dev->attached_endpoints().empty());
  }
  SECTION("the head's reserved bytes are ignored") {
    auto req = attach_req(1, kEp1);
    req[1] = req[2] = req[3] = 0xff;
    CHECK(rig.status(req) == VIRTIO_IOMMU_S_OK);
  }
  SECTION("detach: reserved is ignored") {
    REQUIRE(rig.status(attach_req(1, kEp1)) == VIRTIO_IOMMU_S_OK);
    auto req = detach_req(1, kEp1);
    req[offsetof(virtio_iommu_req_detach, reserved)] = 0xff;
    CHECK(rig.status(req) == VIRTIO_IOMMU_S_OK);
    CHECK(rig.dev->attached_endpoints().empty());
  }
  SECTION("unmap: nonzero reserved is S_INVAL and removes nothing") {
    two_mappings(rig);
    auto req = unmap_req(1, 0, 0xfffff);
    req[offsetof(virtio_iommu_req_unmap, reserved) + 2] = 1;
    CHECK(rig.status(req) == VIRTIO_IOMMU_S_INVAL);
    CHECK(rig.dev->mappings(1).size() == 2);
    CHECK(rig.take_calls().empty());
  }
  SECTION("probe: reserved is ignored") {
    auto req = probe_req(kEp1);
    std::fill(req.begin() + 8, req.end(), 0xff);
    const Answer a = rig.send(req, 516);
    CHECK(a.out[512] == VIRTIO_IOMMU_S_OK);
  }
  SECTION("extra readable bytes are ignored") {
    auto req = attach_req(1, kEp1);
    req.resize(req.size() + 16, 0xee);
    CHECK(rig.status(req) == VIRTIO_IOMMU_S_OK);
  }
}

TEST_CASE("virtio-iommu: an endpoint whose reserved regions hold a domain mapping cannot join") {
  VirtioIommuConfig config;
  config.endpoint_reserved[kEp2] = {{0x10000, 0x10fff, VIRTIO_IOMMU_RESV_MEM_T_RESERVED}};
  Rig rig(config);
  two_mappings(rig);
  CHECK(rig.status(attach_req(1, kEp2)) == VIRTIO_IOMMU_S_UNSUPP);
  CHECK(rig.take_calls().empty());
  CHECK(rig.dev->attached_endpoints() == std::map<std::uint32_t, std::uint32_t>{{kEp1, 1}});
  // In a domain of its own it works, and a MAP there avoids its region.
  REQUIRE(rig.status(attach_req(2, kEp2)) == VIRTIO_IOMMU_S_OK);
  CHECK(rig.status(map_req(2, 0x10000, 0x1ffff, 0)) == VIRTIO_IOMMU_S_RANGE);
  CHECK(rig.status(map_req(2, 0x11000, 0x1ffff, 0)) == VIRTIO_IOMMU_S_OK);
}

// ---- malformed requests ----

TEST_CASE("virtio-iommu: every truncated request is refused and changes nothing") {
  Rig rig;
  two_mappings(rig);
  const std::vector<std::vector<std::uint8_t>> requests = {attach_req(2, kEp2), detach_req(1, kEp1),
                                                           map_req(1, 0x80000, 0x80fff, 0),
                                                           unmap_req(1, 0, kMax), probe_req(kEp1)};
  for (const auto& full : requests) {
    const bool is_probe = full[0] == VIRTIO_IOMMU_T_PROBE;
    const std::size_t writable = is_probe ? 512 + 4 : 4;
    const std::size_t tail = is_probe ? 512 : 0;
    for (std::size_t len = 0; len < full.size(); ++len) {
      INFO("type " << int{full[0]} << " length " << len);
      const std::vector<std::uint8_t> in(full.begin(), full.begin() + static_cast<long>(len));
      const Answer a = rig.send(in, writable);
      if (len < 4) {
        // No complete head: S_DEVERR where a non-PROBE request has its tail.
        CHECK(a.used == 4);
        CHECK(a.out[0] == VIRTIO_IOMMU_S_DEVERR);
      } else {
        CHECK(a.used == writable);
        CHECK(a.out[tail] == VIRTIO_IOMMU_S_INVAL);
        for (std::size_t i = 0; i < tail; ++i) {
          REQUIRE(a.out[i] == 0);
        }
      }
    }
  }
  CHECK(rig.take_calls().empty());
  CHECK(rig.dev->mappings(1).size() == 2);
  CHECK(rig.dev->attached_endpoints() == std::map<std::uint32_t, std::uint32_t>{{kEp1, 1}});
  CHECK(rig.dev->counters().answers[VIRTIO_IOMMU_S_INVAL] == 16 + 16 + 32 + 24 + 68);
  CHECK(rig.dev->counters().answers[VIRTIO_IOMMU_S_DEVERR] == 20);  // 5 types, lengths 0-3
}

TEST_CASE("virtio-iommu: without room for the tail nothing is done or written") {
  Rig rig;
  for (std::size_t writable = 0; writable < 4; ++writable) {
    const Answer a = rig.send(attach_req(1, kEp1), writable);
    CHECK(a.used == 0);
    CHECK(a.out == std::vector<std::uint8_t>(writable, kFill));
    CHECK(rig.send(probe_req(kEp1), writable).used == 0);
    CHECK(rig.send({}, writable).used == 0);
  }
  CHECK(rig.dev->attached_endpoints().empty());
  CHECK(rig.dev->counters().unanswered == 12);
  CHECK(rig.dev->counters().requests[VIRTIO_IOMMU_T_ATTACH] == 4);
}

TEST_CASE("virtio-iommu: a non-PROBE answer is the tail at the start of a larger buffer") {
  Rig rig;
  const Answer a = rig.send(attach_req(1, kEp1), 16);
  CHECK(a.used == 4);
  CHECK(a.out[0] == VIRTIO_IOMMU_S_OK);
  CHECK(a.out[4] == kFill);
  CHECK(a.out[15] == kFill);
}

TEST_CASE("virtio-iommu: unknown request types are returned unwritten") {
  Rig rig;
  for (std::uint8_t type :
       {std::uint8_t{0}, std::uint8_t{6}, std::uint8_t{0x80}, std::uint8_t{0xff}}) {
    std::vector<std::uint8_t> in = attach_req(1, kEp1);
    in[0] = type;
    const Answer a = rig.send(in, 8);
    CHECK(a.used == 0);
    CHECK(a.out == std::vector<std::uint8_t>(8, kFill));
  }
  CHECK(rig.dev->counters().requests[0] == 4);
  CHECK(rig.dev->counters().unanswered == 4);
  CHECK(rig.dev->attached_endpoints().empty());
}

// ---- PROBE ----

TEST_CASE("virtio-iommu: probe writes the endpoint's reserved regions byte by byte") {
  VirtioIommuConfig config;
  config.probe_size = 64;
  config.endpoint_reserved[kEp2] = {{0x8000000000, kMax, VIRTIO_IOMMU_RESV_MEM_T_RESERVED}};
  Rig rig(config);

  const Answer a = rig.send(probe_req(kEp2), 64 + 4 + 8);
  REQUIRE(a.used == 68);
  const std::vector<std::uint8_t> expected = {
      // RESV_MEM, length 20, subtype MSI, 0xfee00000-0xfeefffff
      0x01, 0x00, 0x14, 0x00, 0x01, 0x00, 0x00, 0x00,  //
      0x00, 0x00, 0xe0, 0xfe, 0x00, 0x00, 0x00, 0x00,  //
      0xff, 0xff, 0xef, 0xfe, 0x00, 0x00, 0x00, 0x00,  //
      // RESV_MEM, length 20, subtype RESERVED, 0x8000000000-0xffffffffffffffff
      0x01, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00,  //
      0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00,  //
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,  //
      // NONE: the rest of probe_size is zeros
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  //
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  //
      // the tail: S_OK
      0x00, 0x00, 0x00, 0x00,
      // past the used length: untouched
      kFill, kFill, kFill, kFill, kFill, kFill, kFill, kFill};
  CHECK(a.out == expected);

  SECTION("an endpoint without extra regions gets the MSI window only") {
    const Answer b = rig.send(probe_req(kEp1), 68);
    REQUIRE(b.used == 68);
    CHECK(std::equal(b.out.begin(), b.out.begin() + 24, expected.begin()));
    CHECK(std::all_of(b.out.begin() + 24, b.out.end(), [](std::uint8_t x) { return x == 0; }));
  }
  SECTION("a buffer smaller than probe_size: S_INVAL at its end, no property") {
    for (std::size_t writable = 4; writable < 68; ++writable) {
      const Answer c = rig.send(probe_req(kEp2), writable);
      REQUIRE(c.used == writable);
      CHECK(c.out[writable - 4] == VIRTIO_IOMMU_S_INVAL);
      CHECK(std::all_of(c.out.begin(), c.out.end() - 4, [](std::uint8_t x) { return x == 0; }));
    }
  }
  SECTION("regions filling probe_size exactly leave no room for NONE, which is allowed") {
    VirtioIommuConfig full;
    full.probe_size = 48;
    full.reserved.push_back({0x1000, 0x1fff, VIRTIO_IOMMU_RESV_MEM_T_RESERVED});
    Rig tight(full);
    const Answer d = tight.send(probe_req(kEp1), 52);
    REQUIRE(d.used == 52);
    CHECK(d.out[48] == VIRTIO_IOMMU_S_OK);
    CHECK(le64_at(d.out, 8) == 0x1000);
    CHECK(le64_at(d.out, 32) == 0xfee00000);
  }
  CHECK(rig.take_calls().empty());
  CHECK(rig.dev->counters().requests[VIRTIO_IOMMU_T_PROBE] >= 1);
}

// ---- counters, reset ----

TEST_CASE("virtio-iommu: named counters report requests, answers and state") {
  Rig rig;
  two_mappings(rig);
  REQUIRE(rig.status(attach_req(7, kEp2)) == VIRTIO_IOMMU_S_OK);
  CHECK(rig.status(map_req(9, 0, 0xfff, 0)) == VIRTIO_IOMMU_S_NOENT);
  rig.send({0x42, 0, 0, 0});
  const auto named = rig.dev->named_counters();
  CHECK(named.at("requests_attach") == 2);
  CHECK(named.at("requests_map") == 3);
  CHECK(named.at("requests_unknown") == 1);
  CHECK(named.at("status_ok") == 4);
  CHECK(named.at("status_noent") == 1);
  CHECK(named.at("unanswered") == 1);
  CHECK(named.at("domains") == 2);
  CHECK(named.at("mappings") == 2);
  CHECK(named.at("domain_1_mappings") == 2);
  CHECK(named.at("domain_7_mappings") == 0);
  CHECK(named.at("endpoints_attached") == 2);
  CHECK(named.at("endpoint_8_domain") == 1);
  CHECK(named.at("endpoint_16_domain") == 7);
  CHECK(named.at("backend_map_failures") == 0);
}

TEST_CASE("virtio-iommu: reset detaches every endpoint and releases every mapping") {
  Rig rig;
  two_mappings(rig);
  REQUIRE(rig.status(attach_req(1, kEp2)) == VIRTIO_IOMMU_S_OK);
  REQUIRE(rig.status(attach_req(3, kEp3)) == VIRTIO_IOMMU_S_OK);
  REQUIRE(rig.status(map_req(3, 0x10000, 0x10fff, 0)) == VIRTIO_IOMMU_S_OK);
  REQUIRE(rig.backend.held_count() == 5);
  rig.dev->reset();
  CHECK(rig.backend.held.empty());
  CHECK(rig.dev->attached_endpoints().empty());
  CHECK(rig.dev->mappings_per_domain().empty());
  CHECK(rig.backend.violations.empty());
  CHECK(rig.dev->counters().requests[VIRTIO_IOMMU_T_ATTACH] == 3);

  SECTION("detach_endpoint alone") {
    REQUIRE(rig.status(attach_req(1, kEp1)) == VIRTIO_IOMMU_S_OK);
    REQUIRE(rig.status(map_req(1, 0x10000, 0x10fff, 0)) == VIRTIO_IOMMU_S_OK);
    rig.dev->detach_endpoint(kEp1);
    rig.dev->detach_endpoint(kEp2);  // not attached: nothing
    CHECK(rig.backend.held.empty());
    CHECK(rig.dev->mappings_per_domain().empty());
  }
}

}  // namespace
}  // namespace keel::virtio
