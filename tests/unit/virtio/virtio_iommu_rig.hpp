#pragma once

// What the virtio-iommu unit tests share: a backend that records the calls the device makes and
// refuses what a host would, request builders, and a rig that answers them.

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

namespace keel::virtio::iommu_test {


inline constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
inline constexpr std::uint32_t kRW = VIRTIO_IOMMU_MAP_F_READ | VIRTIO_IOMMU_MAP_F_WRITE;
inline constexpr std::uint32_t kEp1 = 0x08;  // 00:01.0
inline constexpr std::uint32_t kEp2 = 0x10;  // 00:02.0
inline constexpr std::uint32_t kEp3 = 0x18;  // 00:03.0
inline constexpr std::uint8_t kFill = 0xaa;  // what the writable buffer holds before the device writes

// ---- a backend that records every call and keeps what each endpoint has mapped ----

struct Call {
  bool map = true;  // false: unmap
  std::uint32_t endpoint = 0;
  devices::DmaMapping mapping;
};

inline bool same(const devices::DmaMapping& a, const devices::DmaMapping& b) {
  return a.iova == b.iova && a.size == b.size && a.gpa == b.gpa && a.access == b.access;
}

inline bool operator==(const Call& a, const Call& b) {
  return a.map == b.map && a.endpoint == b.endpoint && same(a.mapping, b.mapping);
}

inline std::ostream& operator<<(std::ostream& os, const Call& c) {
  return os << (c.map ? "map(" : "unmap(") << c.endpoint << ", iova 0x" << std::hex
            << c.mapping.iova << " size 0x" << c.mapping.size << " gpa 0x" << c.mapping.gpa
            << " flags " << std::dec << c.mapping.access << ")";
}

inline Call mapped(std::uint32_t endpoint, devices::DmaMapping m) { return Call{true, endpoint, m}; }
inline Call unmapped(std::uint32_t endpoint, devices::DmaMapping m) { return Call{false, endpoint, m}; }

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
inline std::vector<std::uint8_t> readable(const Request& req) {
  std::vector<std::uint8_t> bytes(offsetof(Request, tail));
  std::memcpy(bytes.data(), &req, bytes.size());
  return bytes;
}

inline std::vector<std::uint8_t> attach_req(std::uint32_t domain, std::uint32_t endpoint,
                                     std::uint32_t flags = 0) {
  virtio_iommu_req_attach r{};
  r.head.type = VIRTIO_IOMMU_T_ATTACH;
  r.domain = htole32(domain);
  r.endpoint = htole32(endpoint);
  r.flags = htole32(flags);
  return readable(r);
}

inline std::vector<std::uint8_t> detach_req(std::uint32_t domain, std::uint32_t endpoint) {
  virtio_iommu_req_detach r{};
  r.head.type = VIRTIO_IOMMU_T_DETACH;
  r.domain = htole32(domain);
  r.endpoint = htole32(endpoint);
  return readable(r);
}

inline std::vector<std::uint8_t> map_req(std::uint32_t domain, std::uint64_t first, std::uint64_t last,
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

inline std::vector<std::uint8_t> unmap_req(std::uint32_t domain, std::uint64_t first, std::uint64_t last) {
  virtio_iommu_req_unmap r{};
  r.head.type = VIRTIO_IOMMU_T_UNMAP;
  r.domain = htole32(domain);
  r.virt_start = htole64(first);
  r.virt_end = htole64(last);
  return readable(r);
}

inline std::vector<std::uint8_t> probe_req(std::uint32_t endpoint) {
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

inline devices::DmaMapping mapping(std::uint64_t first, std::uint64_t last, std::uint64_t phys,
                     std::uint32_t flags = kRW) {
  return devices::DmaMapping{first, last - first + 1, phys, flags};
}

// Two mappings in domain 1, endpoint 1 attached.
inline void two_mappings(Rig& rig) {
  REQUIRE(rig.status(attach_req(1, kEp1)) == VIRTIO_IOMMU_S_OK);
  REQUIRE(rig.status(map_req(1, 0x10000, 0x1ffff, 0x200000)) == VIRTIO_IOMMU_S_OK);
  REQUIRE(rig.status(map_req(1, 0x40000, 0x40fff, 0x300000, VIRTIO_IOMMU_MAP_F_READ)) ==
          VIRTIO_IOMMU_S_OK);
  rig.take_calls();
}

inline const devices::DmaMapping kA = mapping(0x10000, 0x1ffff, 0x200000);
inline const devices::DmaMapping kB = mapping(0x40000, 0x40fff, 0x300000, VIRTIO_IOMMU_MAP_F_READ);

inline std::uint64_t le64_at(const std::vector<std::uint8_t>& b, std::size_t at) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) {
    v = (v << 8) | b.at(at + static_cast<std::size_t>(i));
  }
  return v;
}

}  // namespace keel::virtio::iommu_test
