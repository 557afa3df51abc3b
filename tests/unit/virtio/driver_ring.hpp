#pragma once
// The driver's side of a split virtqueue in real guest memory, for the virtio unit tests: the
// rings at fixed guest-physical addresses, descriptors written and heads offered as a driver
// would, the device's used ring read back.

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <utility>

#include "memory/guest_memory.hpp"

namespace keel::virtio::test {

inline constexpr std::uint64_t kRam = 16 << 20;
inline constexpr std::uint64_t kDesc = 0x1000, kAvail = 0x2000, kUsed = 0x3000, kData = 0x10000;
inline constexpr std::uint16_t kNext = 1, kWrite = 2, kIndirect = 4;  // <linux/virtio_ring.h> is C

inline memory::GuestMemory guest_ram() {
  auto m = memory::GuestMemory::create(kRam);
  if (!m.ok()) {
    FAIL(m.error().message());
  }
  return std::move(m).value();
}

class DriverRing {
 public:
  DriverRing(const memory::GuestMemory& mem, std::uint16_t size) : mem_(mem), size_(size) {}

  void desc(std::uint16_t i, std::uint64_t addr, std::uint32_t len, std::uint16_t flags,
            std::uint16_t next = 0) const {
    std::uint8_t d[16];
    std::memcpy(d, &addr, 8);
    std::memcpy(d + 8, &len, 4);
    std::memcpy(d + 12, &flags, 2);
    std::memcpy(d + 14, &next, 2);
    REQUIRE(mem_.write(kDesc + 16ULL * i, d).ok());
  }
  void offer(std::uint16_t head) {
    REQUIRE(mem_.write_obj<std::uint16_t>(kAvail + 4 + 2ULL * (avail_idx % size_), head).ok());
    ++avail_idx;
    REQUIRE(mem_.write_obj<std::uint16_t>(kAvail + 2, avail_idx).ok());
  }
  std::uint16_t used_idx() const { return *mem_.read_obj<std::uint16_t>(kUsed + 2); }
  // The used ring's element i: the head and the length written.
  std::pair<std::uint32_t, std::uint32_t> used_elem(std::uint16_t i) const {
    return {*mem_.read_obj<std::uint32_t>(kUsed + 4 + 8ULL * i),
            *mem_.read_obj<std::uint32_t>(kUsed + 8 + 8ULL * i)};
  }

  std::uint16_t avail_idx = 0;

 private:
  const memory::GuestMemory& mem_;
  std::uint16_t size_;
};

}  // namespace keel::virtio::test
