#include "devices/virtio/virtio_iommu.hpp"

#include <endian.h>
#include <linux/virtio_iommu.h>

#include <catch2/catch.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace keel::virtio {
namespace {

constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
constexpr std::uint32_t kRW = VIRTIO_IOMMU_MAP_F_READ | VIRTIO_IOMMU_MAP_F_WRITE;
constexpr std::uint32_t kEp1 = 0x08;  // 00:01.0
constexpr std::uint32_t kEp2 = 0x10;  // 00:02.0
constexpr std::uint32_t kEp3 = 0x18;  // 00:03.0
constexpr std::uint8_t kFill = 0xaa;  // what the writable buffer holds before the device writes

// ---- a backend that records every call and keeps what each endpoint has mapped ----

struct Call {
  bool map = true;  // false: unmap
  std::uint32_t endpoint = 0;
  devices::DmaMapping mapping;
};

bool same(const devices::DmaMapping& a, const devices::DmaMapping& b) {
  return a.iova == b.iova && a.size == b.size && a.gpa == b.gpa && a.access == b.access;
}

bool operator==(const Call& a, const Call& b) {
  return a.map == b.map && a.endpoint == b.endpoint && same(a.mapping, b.mapping);
}

std::ostream& operator<<(std::ostream& os, const Call& c) {
  return os << (c.map ? "map(" : "unmap(") << c.endpoint << ", iova 0x" << std::hex
            << c.mapping.iova << " size 0x" << c.mapping.size << " gpa 0x" << c.mapping.gpa
            << " flags " << std::dec << c.mapping.access << ")";
}

Call mapped(std::uint32_t endpoint, devices::DmaMapping m) { return Call{true, endpoint, m}; }
Call unmapped(std::uint32_t endpoint, devices::DmaMapping m) { return Call{false, endpoint, m}; }

class FakeBackend final : public devices::DmaMappingBackend {
 public:
  bool has_endpoint(std::uint32_t endpoint) const override {
    return endpoints.count(endpoint) != 0;
  }

  devices::DmaStatus map(std::uint32_t endpoint, const devices::DmaMapping& m) override {
    calls.push_back(mapped(endpoint, m));
    ++maps;
    if (maps == fail_map_at) {
      return fail_status;
    }
    auto& mine = held[endpoint];
    for (const auto& [iova, h] : mine) {
      if (iova <= m.iova + (m.size - 1) && m.iova <= h.iova + (h.size - 1)) {
        violations.push_back("overlapping map for one endpoint at " + std::to_string(m.iova));
      }
    }
    mine[m.iova] = m;
    return devices::DmaStatus::kOk;
  }

  devices::DmaStatus unmap(std::uint32_t endpoint, const devices::DmaMapping& m) override {
    calls.push_back(unmapped(endpoint, m));
    auto& mine = held[endpoint];
    auto it = mine.find(m.iova);
    if (it == mine.end() || !same(it->second, m)) {
      violations.push_back("unmap of something not mapped at " + std::to_string(m.iova));
      return devices::DmaStatus::kNoEntry;
    }
    if (fail_unmaps) {
      return devices::DmaStatus::kIoError;
    }
    mine.erase(it);
    if (mine.empty()) {
      held.erase(endpoint);
    }
    return devices::DmaStatus::kOk;
  }

  std::size_t held_count() const {
    std::size_t n = 0;
    for (const auto& [ep, m] : held) {
      n += m.size();
    }
    return n;
  }

  std::set<std::uint32_t> endpoints{kEp1, kEp2, kEp3};
  std::vector<Call> calls;
  int maps = 0;
  int fail_map_at = 0;  // the n-th map call (1-based) answers fail_status; 0: never
  devices::DmaStatus fail_status = devices::DmaStatus::kNoMemory;
  bool fail_unmaps = false;
  std::map<std::uint32_t, std::map<std::uint64_t, devices::DmaMapping>> held;
  std::vector<std::string> violations;
};

// ---- requests as the driver lays them out ----

template <typename Request>
std::vector<std::uint8_t> readable(const Request& req) {
  std::vector<std::uint8_t> bytes(offsetof(Request, tail));
  std::memcpy(bytes.data(), &req, bytes.size());
  return bytes;
}

std::vector<std::uint8_t> attach_req(std::uint32_t domain, std::uint32_t endpoint,
                                     std::uint32_t flags = 0) {
  virtio_iommu_req_attach r{};
  r.head.type = VIRTIO_IOMMU_T_ATTACH;
  r.domain = htole32(domain);
  r.endpoint = htole32(endpoint);
  r.flags = htole32(flags);
  return readable(r);
}

std::vector<std::uint8_t> detach_req(std::uint32_t domain, std::uint32_t endpoint) {
  virtio_iommu_req_detach r{};
  r.head.type = VIRTIO_IOMMU_T_DETACH;
  r.domain = htole32(domain);
  r.endpoint = htole32(endpoint);
  return readable(r);
}

std::vector<std::uint8_t> map_req(std::uint32_t domain, std::uint64_t first, std::uint64_t last,
                                  std::uint64_t phys, std::uint32_t flags = kRW) {
  virtio_iommu_req_map r{};
  r.head.type = VIRTIO_IOMMU_T_MAP;
  r.domain = htole32(domain);
  r.virt_start = htole64(first);
  r.virt_end = htole64(last);
  r.phys_start = htole64(phys);
  r.flags = htole32(flags);
  return readable(r);
}

std::vector<std::uint8_t> unmap_req(std::uint32_t domain, std::uint64_t first, std::uint64_t last) {
  virtio_iommu_req_unmap r{};
  r.head.type = VIRTIO_IOMMU_T_UNMAP;
  r.domain = htole32(domain);
  r.virt_start = htole64(first);
  r.virt_end = htole64(last);
  return readable(r);
}

std::vector<std::uint8_t> probe_req(std::uint32_t endpoint) {
  std::vector<std::uint8_t> bytes(offsetof(virtio_iommu_req_probe, properties), 0);
  bytes[0] = VIRTIO_IOMMU_T_PROBE;
  const std::uint32_t le = htole32(endpoint);
  std::memcpy(bytes.data() + offsetof(virtio_iommu_req_probe, endpoint), &le, sizeof le);
  return bytes;
}

// ---- a device on the fake, and sending requests to it ----

struct Answer {
  std::size_t used = 0;
  std::vector<std::uint8_t> out;
  std::uint8_t status() const { return out.at(0); }
};

struct Rig {
  explicit Rig(VirtioIommuConfig config = {}) {
    auto created = VirtioIommu::create(std::move(config), backend);
    REQUIRE(created.ok());
    dev = std::move(created).value();
  }

  Answer send(const std::vector<std::uint8_t>& in, std::size_t writable = 4) {
    Answer a;
    a.out.assign(writable, kFill);
    a.used = dev->handle(in, a.out);
    return a;
  }
  // Sends a non-PROBE request and returns its status, checking the answer's shape.
  std::uint8_t status(const std::vector<std::uint8_t>& in) {
    const Answer a = send(in);
    REQUIRE(a.used == 4);
    CHECK(a.out[1] == 0);  // tail.reserved written as zero
    CHECK(a.out[2] == 0);
    CHECK(a.out[3] == 0);
    return a.status();
  }
  std::vector<Call> take_calls() {
    std::vector<Call> calls = std::move(backend.calls);
    backend.calls.clear();
    return calls;
  }

  FakeBackend backend;
  std::unique_ptr<VirtioIommu> dev;
};

devices::DmaMapping mapping(std::uint64_t first, std::uint64_t last, std::uint64_t phys,
                     std::uint32_t flags = kRW) {
  return devices::DmaMapping{first, last - first + 1, phys, flags};
}

// Two mappings in domain 1, endpoint 1 attached.
void two_mappings(Rig& rig) {
  REQUIRE(rig.status(attach_req(1, kEp1)) == VIRTIO_IOMMU_S_OK);
  REQUIRE(rig.status(map_req(1, 0x10000, 0x1ffff, 0x200000)) == VIRTIO_IOMMU_S_OK);
  REQUIRE(rig.status(map_req(1, 0x40000, 0x40fff, 0x300000, VIRTIO_IOMMU_MAP_F_READ)) ==
          VIRTIO_IOMMU_S_OK);
  rig.take_calls();
}

const devices::DmaMapping kA = mapping(0x10000, 0x1ffff, 0x200000);
const devices::DmaMapping kB = mapping(0x40000, 0x40fff, 0x300000, VIRTIO_IOMMU_MAP_F_READ);

std::uint64_t le64_at(const std::vector<std::uint8_t>& b, std::size_t at) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) {
    v = (v << 8) | b.at(at + static_cast<std::size_t>(i));
  }
  return v;
}

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
