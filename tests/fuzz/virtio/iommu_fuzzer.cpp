// The virtio-iommu device's request handling, fed a sequence of requests (mostly well formed,
// with fields drawn from values that collide: few domains and endpoints, addresses on a small
// grid, the MSI window, the top of the space; some truncated, some raw bytes), device resets and
// config accesses, against a backend that randomly refuses maps and fails unmaps.
// Input: 8 bytes seed the backend's failures, then the device's configuration, then operations.
// Properties checked after every operation:
//   - nothing crashes, leaks or overflows (ASan, UBSan);
//   - the used length is 0, 4, probe_size + 4 or, for a short PROBE buffer, the buffer's size;
//     the status byte is a VIRTIO_IOMMU_S_* value, the tail's reserved bytes are zero, and
//     nothing past the used length is written;
//   - the device never maps a range twice for one endpoint, and unmaps exactly what it mapped;
//   - what the backend holds for each endpoint is exactly the mappings of its domain (nothing
//     for an unattached endpoint), apart from entries whose unmap the backend failed;
//   - a domain's mappings are disjoint, aligned, inside the input range and clear of its
//     endpoints' reserved regions; every domain has an endpoint;
//   - PROBE answers carry exactly the endpoint's reserved regions, then zeros;
//   - every request is counted once by type and once by answer.
#include <endian.h>
#include <fuzzer/FuzzedDataProvider.h>
#include <linux/virtio_iommu.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <numeric>
#include <set>
#include <vector>

#include "base/log.hpp"
#include "devices/virtio/virtio_iommu.hpp"
#include "tests/fuzz/api/fuzz_checks.hpp"

namespace {

using keel::devices::DmaMappingBackend;
using keel::devices::DmaMapping;
using keel::devices::DmaStatus;
using keel::virtio::VirtioIommu;
using keel::virtio::VirtioIommuConfig;

constexpr std::uint64_t kMax = ~std::uint64_t{0};
constexpr std::uint8_t kFill = 0xa5;
constexpr std::uint32_t kEndpoints[] = {0x08, 0x10, 0x18, 0x99};  // 0x99 is not behind the IOMMU

bool overlaps(const DmaMapping& a, const DmaMapping& b) {
  return a.iova <= b.iova + (b.size - 1) && b.iova <= a.iova + (a.size - 1);
}
bool same(const DmaMapping& a, const DmaMapping& b) {
  return a.iova == b.iova && a.size == b.size && a.gpa == b.gpa && a.access == b.access;
}

// The host as the device sees it: per endpoint, what is mapped; refusals from a seeded PRNG.
class FuzzBackend final : public keel::devices::DmaMappingBackend {
 public:
  FuzzBackend(std::uint64_t seed, unsigned fail_per_256) : state_(seed | 1), rate_(fail_per_256) {}

  bool has_endpoint(std::uint32_t endpoint) const override {
    return endpoint == 0x08 || endpoint == 0x10 || endpoint == 0x18;
  }

  DmaStatus map(std::uint32_t endpoint, const DmaMapping& m) override {
    KEEL_FUZZ_CHECK(has_endpoint(endpoint));
    KEEL_FUZZ_CHECK(m.size > 0 && m.iova <= kMax - (m.size - 1) && m.gpa <= kMax - (m.size - 1));
    for (const auto& [iova, h] : held[endpoint]) {
      KEEL_FUZZ_CHECK(!overlaps(h, m));  // the device mapped a range twice for one endpoint
    }
    for (const auto& [iova, h] : leaked[endpoint]) {
      if (overlaps(h, m)) {
        return DmaStatus::kInvalid;  // the kernel's EEXIST
      }
    }
    if (fails()) {
      static constexpr DmaStatus kRefusals[] = {DmaStatus::kNoMemory, DmaStatus::kInvalid,
                                                  DmaStatus::kRange, DmaStatus::kIoError,
                                                  static_cast<DmaStatus>(0x42)};
      return kRefusals[next() % std::size(kRefusals)];
    }
    held[endpoint][m.iova] = m;
    return DmaStatus::kOk;
  }

  DmaStatus unmap(std::uint32_t endpoint, const DmaMapping& m) override {
    auto& mine = held[endpoint];
    auto it = mine.find(m.iova);
    KEEL_FUZZ_CHECK(it != mine.end() && same(it->second, m));  // unmap exactly what was mapped
    mine.erase(it);
    if (fails()) {
      leaked[endpoint][m.iova] = m;  // still on the host; the device forgets it
      return DmaStatus::kIoError;
    }
    return DmaStatus::kOk;
  }

  std::map<std::uint32_t, std::map<std::uint64_t, DmaMapping>> held;
  std::map<std::uint32_t, std::map<std::uint64_t, DmaMapping>> leaked;

 private:
  std::uint64_t next() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    return state_;
  }
  bool fails() { return (next() & 0xff) < rate_; }

  std::uint64_t state_;
  unsigned rate_;
};

struct Fuzz {
  FuzzedDataProvider& in;
  FuzzBackend& backend;
  VirtioIommu& dev;
  const VirtioIommuConfig& config;
  std::uint64_t granule = 0;
  std::uint64_t handled = 0;

  std::uint32_t domain() { return in.ConsumeIntegralInRange<std::uint32_t>(0, 4); }
  std::uint32_t endpoint() { return kEndpoints[in.ConsumeIntegralInRange<std::size_t>(0, 3)]; }

  std::uint64_t address() {
    static constexpr std::uint64_t kBases[] = {0,          0x10000,      0xfedf0000,
                                               0xfee00000, 0x7fffff0000, 0xffffffffffff0000};
    std::uint64_t a = kBases[in.ConsumeIntegralInRange<std::size_t>(0, std::size(kBases) - 1)] +
                      in.ConsumeIntegralInRange<std::uint64_t>(0, 15) * granule;
    if (in.ConsumeIntegralInRange<int>(0, 15) == 0) {
      a += in.ConsumeIntegralInRange<int>(-1, 1);  // off the granule
    }
    return a;
  }
  std::uint64_t last_for(std::uint64_t first) {
    if (in.ConsumeIntegralInRange<int>(0, 15) == 0) {
      return in.ConsumeBool() ? kMax : first - granule;  // the top, or reversed
    }
    return first + in.ConsumeIntegralInRange<std::uint64_t>(1, 8) * granule - 1;
  }

  std::vector<std::uint8_t> request(std::uint8_t kind) {
    std::vector<std::uint8_t> bytes;
    auto put = [&bytes](const auto& req, std::size_t size) {
      bytes.resize(size);
      std::memcpy(bytes.data(), &req, size);
    };
    switch (kind) {
      case 0: {
        virtio_iommu_req_attach r{};
        r.head.type = VIRTIO_IOMMU_T_ATTACH;
        r.domain = htole32(domain());
        r.endpoint = htole32(endpoint());
        if (in.ConsumeIntegralInRange<int>(0, 15) == 0) {
          r.flags = htole32(in.ConsumeIntegral<std::uint32_t>());
          r.reserved[in.ConsumeIntegralInRange<std::size_t>(0, 3)] =
              in.ConsumeIntegral<std::uint8_t>();
        }
        put(r, offsetof(virtio_iommu_req_attach, tail));
        break;
      }
      case 1: {
        virtio_iommu_req_detach r{};
        r.head.type = VIRTIO_IOMMU_T_DETACH;
        r.domain = htole32(domain());
        r.endpoint = htole32(endpoint());
        put(r, offsetof(virtio_iommu_req_detach, tail));
        break;
      }
      case 2: {
        virtio_iommu_req_map r{};
        r.head.type = VIRTIO_IOMMU_T_MAP;
        r.domain = htole32(domain());
        const std::uint64_t first = address();
        r.virt_start = htole64(first);
        r.virt_end = htole64(last_for(first));
        r.phys_start = htole64(in.ConsumeIntegralInRange<std::uint64_t>(0, 255) * granule);
        r.flags = htole32(in.ConsumeIntegralInRange<int>(0, 31) == 0
                              ? in.ConsumeIntegral<std::uint32_t>()
                              : in.ConsumeIntegralInRange<std::uint32_t>(0, 3));
        put(r, offsetof(virtio_iommu_req_map, tail));
        break;
      }
      case 3: {
        virtio_iommu_req_unmap r{};
        r.head.type = VIRTIO_IOMMU_T_UNMAP;
        r.domain = htole32(domain());
        const std::uint64_t first = in.ConsumeIntegralInRange<int>(0, 7) == 0 ? 0 : address();
        r.virt_start = htole64(first);
        r.virt_end = htole64(in.ConsumeIntegralInRange<int>(0, 7) == 0 ? kMax : last_for(first));
        if (in.ConsumeIntegralInRange<int>(0, 31) == 0) {
          r.reserved[0] = 1;
        }
        put(r, offsetof(virtio_iommu_req_unmap, tail));
        break;
      }
      default: {
        bytes.assign(offsetof(virtio_iommu_req_probe, properties), 0);
        bytes[0] = VIRTIO_IOMMU_T_PROBE;
        const std::uint32_t ep = htole32(endpoint());
        std::memcpy(bytes.data() + offsetof(virtio_iommu_req_probe, endpoint), &ep, sizeof ep);
        break;
      }
    }
    return bytes;
  }

  void send(const std::vector<std::uint8_t>& req, std::size_t writable) {
    std::vector<std::uint8_t> out(writable, kFill);
    const std::size_t used = dev.handle(req, out);
    ++handled;
    const std::size_t probe_size = config.probe_size;
    KEEL_FUZZ_CHECK(used <= out.size());
    KEEL_FUZZ_CHECK(used == 0 || used == 4 || used == probe_size + 4 || used == out.size());
    for (std::size_t i = used; i < out.size(); ++i) {
      KEEL_FUZZ_CHECK(out[i] == kFill);
    }
    if (used == 0) {
      return;
    }
    const std::uint8_t status = out[used - 4];
    KEEL_FUZZ_CHECK(status <= VIRTIO_IOMMU_S_NOMEM);
    KEEL_FUZZ_CHECK(out[used - 3] == 0 && out[used - 2] == 0 && out[used - 1] == 0);
    const bool probe = req.size() >= 4 && req[0] == VIRTIO_IOMMU_T_PROBE;
    if (probe && used == probe_size + 4 && status == VIRTIO_IOMMU_S_OK) {
      std::uint32_t ep = 0;
      std::memcpy(&ep, req.data() + offsetof(virtio_iommu_req_probe, endpoint), sizeof ep);
      const auto& regions = dev.reserved_regions(le32toh(ep));
      std::size_t at = 0;
      for (const auto& r : regions) {
        virtio_iommu_probe_resv_mem p{};
        std::memcpy(&p, out.data() + at, sizeof p);
        KEEL_FUZZ_CHECK(le16toh(p.head.type) == VIRTIO_IOMMU_PROBE_T_RESV_MEM);
        KEEL_FUZZ_CHECK(le16toh(p.head.length) == sizeof p - sizeof p.head);
        KEEL_FUZZ_CHECK(p.subtype == r.subtype && le64toh(p.start) == r.start &&
                        le64toh(p.end) == r.end);
        at += sizeof p;
      }
      for (; at < probe_size; ++at) {
        KEEL_FUZZ_CHECK(out[at] == 0);
      }
    }
  }

  void check_state() const {
    const auto attached = dev.attached_endpoints();
    const auto domains = dev.mappings_per_domain();
    std::set<std::uint32_t> used_domains;
    for (const auto& [ep, dom] : attached) {
      KEEL_FUZZ_CHECK(backend.has_endpoint(ep));
      KEEL_FUZZ_CHECK(domains.count(dom) == 1);
      KEEL_FUZZ_CHECK(dom >= config.domain_first && dom <= config.domain_last);
      used_domains.insert(dom);
    }
    for (const auto& [dom, count] : domains) {
      KEEL_FUZZ_CHECK(used_domains.count(dom) == 1);  // no domain without an endpoint
      const auto maps = dev.mappings(dom);
      KEEL_FUZZ_CHECK(maps.size() == count);
      for (std::size_t i = 0; i < maps.size(); ++i) {
        const DmaMapping& m = maps[i];
        KEEL_FUZZ_CHECK(m.size > 0 && m.iova % granule == 0 && m.size % granule == 0 &&
                        m.gpa % granule == 0);
        KEEL_FUZZ_CHECK(m.iova >= config.input_range.start &&
                        m.iova + (m.size - 1) <= config.input_range.end);
        KEEL_FUZZ_CHECK(i == 0 || maps[i - 1].iova + (maps[i - 1].size - 1) < m.iova);
      }
    }
    for (std::uint32_t ep : kEndpoints) {
      auto it = attached.find(ep);
      const auto held =
          backend.held.count(ep) ? backend.held.at(ep) : std::map<std::uint64_t, DmaMapping>{};
      if (it == attached.end()) {
        KEEL_FUZZ_CHECK(held.empty());
        continue;
      }
      const auto maps = dev.mappings(it->second);
      KEEL_FUZZ_CHECK(held.size() == maps.size());
      for (const DmaMapping& m : maps) {
        auto h = held.find(m.iova);
        KEEL_FUZZ_CHECK(h != held.end() && same(h->second, m));
        for (const auto& r : dev.reserved_regions(ep)) {
          KEEL_FUZZ_CHECK(r.end < m.iova || r.start > m.iova + (m.size - 1));
        }
      }
    }
    const auto& c = dev.counters();
    KEEL_FUZZ_CHECK(std::accumulate(c.requests.begin(), c.requests.end(), std::uint64_t{0}) ==
                    handled);
    KEEL_FUZZ_CHECK(std::accumulate(c.answers.begin(), c.answers.end(), std::uint64_t{0}) +
                        c.unanswered ==
                    handled);
  }
};

}  // namespace

// NOLINTNEXTLINE(readability-identifier-naming): libFuzzer's entry point
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  keel::log::set_level(keel::log::Level::kError);  // failed host unmaps are logged at warn
  FuzzedDataProvider in(data, size);
  const std::uint64_t seed = in.ConsumeIntegral<std::uint64_t>();
  FuzzBackend backend(seed, in.ConsumeIntegralInRange<unsigned>(0, 64));

  VirtioIommuConfig config;
  static constexpr std::uint64_t kMasks[] = {0xfffffffffffff000, ~std::uint64_t{0},
                                             0xffffffffffff0000, 0x40201000};
  config.page_size_mask = kMasks[in.ConsumeIntegralInRange<std::size_t>(0, 3)];
  if (in.ConsumeBool()) {
    config.input_range = {0x1000, 0x7fffffffff};
  }
  if (in.ConsumeBool()) {
    config.domain_first = 1;
    config.domain_last = 3;
  }
  config.probe_size = in.ConsumeBool() ? 72 : 512;
  if (in.ConsumeBool()) {
    config.reserved.push_back({0x8000000000, kMax, VIRTIO_IOMMU_RESV_MEM_T_RESERVED});
  }
  if (in.ConsumeBool()) {
    config.endpoint_reserved[0x10] = {{0x10000, 0x1ffff, VIRTIO_IOMMU_RESV_MEM_T_RESERVED}};
  }
  auto created = VirtioIommu::create(config, backend);
  KEEL_FUZZ_CHECK(created.ok());
  VirtioIommu& dev = **created;
  const std::uint64_t granule = config.page_size_mask & (~config.page_size_mask + 1);
  Fuzz fuzz{in, backend, dev, config, granule};

  for (int ops = 0; ops < 200 && in.remaining_bytes() > 0; ++ops) {
    const int op = in.ConsumeIntegralInRange<int>(0, 15);
    if (op <= 9) {
      // A well-formed request with the writable part the driver gives it.
      const auto kind = static_cast<std::uint8_t>(op % 5);
      fuzz.send(fuzz.request(kind), kind == 4 ? config.probe_size + 4 : 4);
    } else if (op == 10) {
      // Truncated, or with a writable part of another size.
      auto req = fuzz.request(in.ConsumeIntegralInRange<std::uint8_t>(0, 4));
      req.resize(in.ConsumeIntegralInRange<std::size_t>(0, req.size()));
      fuzz.send(req, in.ConsumeIntegralInRange<std::size_t>(0, config.probe_size + 8));
    } else if (op == 11) {
      const auto len = in.ConsumeIntegralInRange<std::size_t>(0, 96);
      const auto raw = in.ConsumeBytes<std::uint8_t>(len);
      fuzz.send(raw, in.ConsumeIntegralInRange<std::size_t>(0, config.probe_size + 8));
    } else if (op == 12) {
      dev.reset();
    } else if (op == 13) {
      dev.detach_endpoint(fuzz.endpoint());
    } else {
      std::vector<std::uint8_t> bytes(in.ConsumeIntegralInRange<std::size_t>(0, 64), kFill);
      const auto offset = in.ConsumeIntegralInRange<std::uint64_t>(0, 64);
      if (op == 14) {
        dev.write_config(offset, bytes);
      }
      dev.read_config(in.ConsumeBool() ? kMax - 3 : offset, bytes);
      if (offset >= VirtioIommu::kConfigSize) {
        for (std::uint8_t b : bytes) {
          KEEL_FUZZ_CHECK(b == 0);
        }
      }
    }
    fuzz.check_state();
  }
  dev.reset();
  for (const auto& [ep, held] : backend.held) {
    KEEL_FUZZ_CHECK(held.empty());
  }
  return 0;
}
