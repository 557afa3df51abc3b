#include "vmm/coalesced_ring.hpp"

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

namespace keel::vmm {
namespace {

// A 4 KiB ring page laid out as the kernel does (virt/kvm/coalesced_mmio.c, written here byte by
// byte, not through the uapi structs): u32 first, u32 last, then 24-byte records from offset 8,
// each u64 address, u32 length, u32 pio, 8 data bytes.
struct Page {
  alignas(4096) std::uint8_t bytes[4096] = {};
  std::uint8_t* data() { return bytes; }
  std::uint32_t u32(std::size_t at) {
    std::uint32_t v = 0;
    std::memcpy(&v, bytes + at, 4);
    return v;
  }
  void set_u32(std::size_t at, std::uint32_t v) { std::memcpy(bytes + at, &v, 4); }
  std::uint32_t first() { return u32(0); }
  std::uint32_t last() { return u32(4); }

  void put(std::uint64_t addr, std::uint8_t value, std::uint32_t pio = 1, std::uint32_t len = 1) {
    std::uint8_t* r = bytes + 8 + 24 * last();
    std::memset(r, 0, 24);
    std::memcpy(r, &addr, 8);
    std::memcpy(r + 8, &len, 4);
    std::memcpy(r + 12, &pio, 4);
    r[16] = value;
    set_u32(4, (last() + 1) % 170);
  }
  void put(std::uint64_t addr, const std::string& text) {
    for (char c : text) {
      put(addr, static_cast<std::uint8_t>(c));
    }
  }
};

struct Replayed {
  std::vector<std::pair<std::uint16_t, std::string>> runs;
  CoalescedRing::Replay replay() {
    return [this](std::uint16_t port, std::span<const std::uint8_t> bytes) {
      runs.emplace_back(port, std::string(bytes.begin(), bytes.end()));
    };
  }
};

TEST_CASE("coalesced ring replays the bytes in order, one run per port, and empties the ring") {
  Page page;
  Replayed seen;
  CoalescedRing ring(page.data(), seen.replay());
  ring.drain();  // empty: nothing
  CHECK(seen.runs.empty());

  page.put(0x3f8, "Linux version");
  page.put(0x2f8, "x");
  page.put(0x3f8, "\n");
  ring.drain();
  REQUIRE(seen.runs.size() == 3);
  CHECK(seen.runs[0] == std::pair<std::uint16_t, std::string>{0x3f8, "Linux version"});
  CHECK(seen.runs[1] == std::pair<std::uint16_t, std::string>{0x2f8, "x"});
  CHECK(seen.runs[2] == std::pair<std::uint16_t, std::string>{0x3f8, "\n"});
  CHECK(page.first() == page.last());

  seen.runs.clear();
  ring.drain();  // drained records are not replayed again
  CHECK(seen.runs.empty());
}

TEST_CASE("coalesced ring wraps around its end, after record 169") {
  Page page;
  page.set_u32(0, 167);
  page.set_u32(4, 167);
  Replayed seen;
  CoalescedRing ring(page.data(), seen.replay());
  page.put(0x3f8, "abcdef");  // records 167, 168, 169, 0, 1, 2
  ring.drain();
  REQUIRE(seen.runs.size() == 1);
  CHECK(seen.runs[0].second == "abcdef");
  CHECK(page.first() == 3);
}

TEST_CASE("coalesced ring holds what it is given until drained: 169 records, the kernel's most") {
  Page page;
  Replayed seen;
  CoalescedRing ring(page.data(), seen.replay());
  const std::string text(169, 'q');
  page.put(0x3f8, text);
  ring.drain();
  REQUIRE(seen.runs.size() == 1);
  CHECK(seen.runs[0].second == text);
  CHECK(page.first() == 169);
}

TEST_CASE("coalesced ring skips records that are not a byte written to a port") {
  Page page;
  Replayed seen;
  CoalescedRing ring(page.data(), seen.replay());
  page.put(0x3f8, 'a');
  page.put(0xfee00000, 'm', /*pio=*/0);       // MMIO
  page.put(0x3f8, 'w', /*pio=*/1, /*len=*/2);  // wider than a byte
  page.put(0x3f8, 'b');
  ring.drain();
  REQUIRE(seen.runs.size() == 1);
  CHECK(seen.runs[0].second == "ab");
}

TEST_CASE("coalesced ring with indexes out of range reads nothing past its page, then no more") {
  Page page;
  Replayed seen;
  CoalescedRing ring(page.data(), seen.replay());
  page.put(0x3f8, "ok");
  page.set_u32(0, 5);
  page.set_u32(4, 100000);
  ring.drain();
  CHECK(seen.runs.empty());
  CHECK(page.first() == 5);  // left as it was
  page.set_u32(0, 0);        // even put right, the ring is not trusted again
  page.set_u32(4, 2);
  ring.drain();
  CHECK(seen.runs.empty());
}

}  // namespace
}  // namespace keel::vmm
