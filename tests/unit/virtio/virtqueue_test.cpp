#include "devices/virtio/virtqueue.hpp"

#include <catch2/catch.hpp>

#include <cstring>
#include <functional>
#include <vector>

namespace keel::virtio {
namespace {

constexpr std::uint64_t kRam = 16 << 20;
constexpr std::uint64_t kDesc = 0x1000, kAvail = 0x2000, kUsed = 0x3000, kData = 0x10000;
constexpr std::uint16_t kSize = 8;
constexpr std::uint16_t kNext = 1, kWrite = 2, kIndirect = 4;

memory::GuestMemory one_mib() {
  auto m = memory::GuestMemory::create(kRam);
  if (!m.ok()) {
    FAIL(m.error().message());
  }
  return std::move(m).value();
}

// A driver's side of one split ring in real guest memory.
struct Ring {
  memory::GuestMemory mem = one_mib();
  Virtqueue queue{mem, kSize};
  std::uint16_t avail_idx = 0;

  Ring() {
    queue.desc = kDesc;
    queue.avail = kAvail;
    queue.used = kUsed;
    REQUIRE(queue.enable().ok());
  }
  void desc(std::uint16_t i, std::uint64_t addr, std::uint32_t len, std::uint16_t flags,
            std::uint16_t next = 0) {
    std::uint8_t d[16];
    std::memcpy(d, &addr, 8);
    std::memcpy(d + 8, &len, 4);
    std::memcpy(d + 12, &flags, 2);
    std::memcpy(d + 14, &next, 2);
    REQUIRE(mem.write(kDesc + 16ULL * i, d).ok());
  }
  void offer(std::uint16_t head) {
    REQUIRE(mem.write_obj<std::uint16_t>(kAvail + 4 + 2ULL * (avail_idx % kSize), head).ok());
    ++avail_idx;
    REQUIRE(mem.write_obj<std::uint16_t>(kAvail + 2, avail_idx).ok());
  }
  std::uint16_t used_idx() { return *mem.read_obj<std::uint16_t>(kUsed + 2); }
  std::pair<std::uint32_t, std::uint32_t> used_elem(std::uint16_t i) {
    return {*mem.read_obj<std::uint32_t>(kUsed + 4 + 8ULL * i),
            *mem.read_obj<std::uint32_t>(kUsed + 8 + 8ULL * i)};
  }
};

TEST_CASE("virtqueue: enable checks size, alignment and that the rings are guest RAM") {
  auto mem = memory::GuestMemory::create(kRam);
  REQUIRE(mem.ok());
  Virtqueue q(*mem, 256);
  q.desc = kDesc;
  q.avail = kAvail;
  q.used = kUsed;
  q.set_size(3);
  CHECK(q.enable().error().context().find("power of two") != std::string::npos);
  q.set_size(16);
  q.desc = kDesc + 8;
  CHECK(q.enable().error().context().find("descriptor table at 0x1008 is not 16-byte aligned") == 0);
  q.desc = kDesc;
  q.used = kRam - 8;
  CHECK(q.enable().error().context().find("used ring") == 0);
  CHECK_FALSE(q.enabled());
  q.used = kUsed;
  CHECK(q.enable().ok());
  CHECK(q.enabled());
  q.reset();
  CHECK_FALSE(q.enabled());
  CHECK(q.size() == 256);
}

TEST_CASE("virtqueue: a chain's readable bytes are copied, its writable buffers filled") {
  Ring r;
  const std::uint8_t a[] = {1, 2, 3}, b[] = {4, 5};
  REQUIRE(r.mem.write(kData, a).ok());
  REQUIRE(r.mem.write(kData + 0x100, b).ok());
  r.desc(5, kData, 3, kNext, 2);
  r.desc(2, kData + 0x100, 2, kNext, 7);
  r.desc(7, kData + 0x200, 4, kWrite | kNext, 1);
  r.desc(1, kData + 0x300, 4, kWrite);
  r.offer(5);
  Popped p = r.queue.pop();
  REQUIRE(p.kind == Popped::Kind::kChain);
  CHECK(p.chain.head == 5);
  CHECK(p.chain.readable == std::vector<std::uint8_t>{1, 2, 3, 4, 5});
  CHECK(p.chain.writable_size == 8);
  const std::uint8_t out[] = {9, 8, 7, 6, 5, 4};
  REQUIRE(r.queue.write_back(p.chain, out).ok());
  std::uint8_t got[8] = {};
  REQUIRE(r.mem.read(kData + 0x200, std::span(got, 4)).ok());
  REQUIRE(r.mem.read(kData + 0x300, std::span(got + 4, 4)).ok());
  CHECK(std::vector<std::uint8_t>(got, got + 8) == std::vector<std::uint8_t>{9, 8, 7, 6, 5, 4, 0, 0});
  REQUIRE(r.queue.push_used(p.chain.head, 6).ok());
  CHECK(r.used_idx() == 1);
  CHECK(r.used_elem(0) == std::pair<std::uint32_t, std::uint32_t>{5, 6});
  CHECK(r.queue.pop().kind == Popped::Kind::kNone);
}

TEST_CASE("virtqueue: every malformed chain is reported with its head, and the queue goes on") {
  struct Case {
    const char* name;
    std::function<void(Ring&)> build;  // descriptors for head 0
    const char* error;
  };
  const Case cases[] = {
      {"next out of range", [](Ring& r) { r.desc(0, kData, 4, kNext, kSize); }, "outside the ring"},
      {"loop", [](Ring& r) { r.desc(0, kData, 4, kNext, 1); r.desc(1, kData, 4, kNext, 0); },
       "loop"},
      {"indirect", [](Ring& r) { r.desc(0, kData, 16, kIndirect); }, "indirect"},
      {"readable after writable",
       [](Ring& r) { r.desc(0, kData, 4, kWrite | kNext, 1); r.desc(1, kData, 4, 0); },
       "readable descriptor after a device-writable"},
      {"outside RAM", [](Ring& r) { r.desc(0, kRam - 2, 4, 0); }, "not inside guest RAM"},
      {"address overflow", [](Ring& r) { r.desc(0, ~0ULL - 1, 4, kWrite); }, "not inside guest RAM"},
      {"oversize",
       [](Ring& r) { r.desc(0, kData, 0x8000, kNext, 1); r.desc(1, kData, 0x8001, 0); },
       "more than 65536 bytes"},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    Ring r;
    c.build(r);
    r.offer(0);
    Popped p = r.queue.pop();
    REQUIRE(p.kind == Popped::Kind::kBad);
    CHECK(p.chain.head == 0);
    CHECK(p.error.find(c.error) != std::string::npos);
    REQUIRE(r.queue.push_used(p.chain.head, 0).ok());
    r.desc(3, kData, 4, 0);
    r.offer(3);
    Popped next = r.queue.pop();
    CHECK(next.kind == Popped::Kind::kChain);
    CHECK(next.chain.head == 3);
  }
  Ring r;
  r.offer(kSize + 3);  // a head that is no descriptor
  Popped p = r.queue.pop();
  CHECK(p.kind == Popped::Kind::kBad);
  CHECK(p.error.find("head descriptor 11 is outside the ring") == 0);
}

TEST_CASE("virtqueue: an available index too far ahead breaks the queue") {
  Ring r;
  REQUIRE(r.mem.write_obj<std::uint16_t>(kAvail + 2, kSize + 1).ok());
  Popped p = r.queue.pop();
  CHECK(p.kind == Popped::Kind::kBroken);
  CHECK(p.error.find("9 entries ahead") != std::string::npos);
}

TEST_CASE("virtqueue: the driver's NO_INTERRUPT flag is honoured") {
  Ring r;
  CHECK(r.queue.wants_interrupt());
  REQUIRE(r.mem.write_obj<std::uint16_t>(kAvail, 1).ok());
  CHECK_FALSE(r.queue.wants_interrupt());
}

TEST_CASE("virtqueue: a disabled queue yields nothing") {
  Ring r;
  r.desc(0, kData, 4, 0);
  r.offer(0);
  r.queue.reset();
  CHECK(r.queue.pop().kind == Popped::Kind::kNone);
}

}  // namespace
}  // namespace keel::virtio
