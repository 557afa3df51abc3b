#include "devices/virtio/virtqueue.hpp"

#include <catch2/catch.hpp>

#include <cstring>
#include <functional>
#include <vector>

#include "tests/unit/virtio/driver_ring.hpp"

namespace keel::virtio {
namespace {

using namespace test;  // NOLINT(google-build-using-namespace): the ring's fixed layout

constexpr std::uint16_t kSize = 8;

// A driver's ring and the device's view of it.
struct Ring : DriverRing {
  memory::GuestMemory mem = guest_ram();
  Virtqueue queue{mem, kSize};

  Ring() : DriverRing(mem, kSize) {
    queue.desc = kDesc;
    queue.avail = kAvail;
    queue.used = kUsed;
    REQUIRE(queue.enable().ok());
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
  CHECK(q.enable().error().context().find("descriptor table at 0x1008 is not 16-byte aligned") ==
        0);
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

TEST_CASE("virtqueue: a chain names its readable and writable buffers; they are copied and filled") {
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
  CHECK(p.chain.readable == std::vector<Buffer>{{kData, 3}, {kData + 0x100, 2}});
  CHECK(p.chain.readable_size == 5);
  CHECK(p.chain.writable_size == 8);
  std::uint8_t in[8] = {};
  auto copied = Virtqueue::read(r.mem, p.chain.readable, 0, in);
  REQUIRE(copied.ok());
  CHECK(*copied == 5);
  CHECK(std::vector<std::uint8_t>(in, in + 5) == std::vector<std::uint8_t>{1, 2, 3, 4, 5});
  // From an offset that falls inside the second buffer.
  copied = Virtqueue::read(r.mem, p.chain.readable, 4, in);
  REQUIRE(copied.ok());
  CHECK(*copied == 1);
  CHECK(in[0] == 5);
  const std::uint8_t out[] = {9, 8, 7, 6, 5, 4};
  REQUIRE(Virtqueue::write(r.mem, p.chain.writable, 0, out).ok());
  std::uint8_t got[8] = {};
  REQUIRE(r.mem.read(kData + 0x200, std::span(got, 4)).ok());
  REQUIRE(r.mem.read(kData + 0x300, std::span(got + 4, 4)).ok());
  CHECK(std::vector<std::uint8_t>(got, got + 8) ==
        std::vector<std::uint8_t>{9, 8, 7, 6, 5, 4, 0, 0});
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
      {"loop",
       [](Ring& r) {
         r.desc(0, kData, 4, kNext, 1);
         r.desc(1, kData, 4, kNext, 0);
       },
       "loop"},
      {"indirect table of a bad length", [](Ring& r) { r.desc(0, kData, 20, kIndirect); },
       "indirect table of 20 bytes"},
      {"readable after writable",
       [](Ring& r) {
         r.desc(0, kData, 4, kWrite | kNext, 1);
         r.desc(1, kData, 4, 0);
       },
       "readable descriptor after a device-writable"},
      {"outside RAM", [](Ring& r) { r.desc(0, kRam - 2, 4, 0); }, "not inside guest RAM"},
      {"address overflow", [](Ring& r) { r.desc(0, ~0ULL - 1, 4, kWrite); },
       "not inside guest RAM"},
      {"oversize",
       [](Ring& r) {
         r.desc(0, kData, 0x8000, kNext, 1);
         r.desc(1, kData, 0x8001, 0);
       },
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

TEST_CASE("virtqueue: with event indexes the driver's used_event decides interrupts, and an "
          "empty ring asks for the next notification") {
  Ring r;
  r.queue.set_event_idx(true);
  const std::uint64_t used_event = kAvail + 4 + 2 * kSize;
  const std::uint64_t avail_event = kUsed + 4 + 8 * kSize;
  REQUIRE(r.mem.write_obj<std::uint16_t>(kAvail, 1).ok());  // NO_INTERRUPT: ignored now
  for (std::uint16_t i = 0; i < 4; ++i) {
    r.desc(i, kData + 0x100 * i, 16, 0);
    r.offer(i);
  }
  CHECK(r.queue.pop().kind == Popped::Kind::kChain);
  CHECK(*r.mem.read_obj<std::uint16_t>(avail_event) == 0);  // busy: not asked yet
  REQUIRE(r.queue.push_used(0, 0).ok());
  CHECK(r.queue.wants_interrupt());  // the first decision always interrupts
  // The driver wants an interrupt once used entry 2 (the third) is there.
  REQUIRE(r.mem.write_obj<std::uint16_t>(used_event, 2).ok());
  CHECK(r.queue.pop().kind == Popped::Kind::kChain);
  REQUIRE(r.queue.push_used(1, 0).ok());
  CHECK_FALSE(r.queue.wants_interrupt());  // used index 2: entry 2 is not there yet
  CHECK(r.queue.pop().kind == Popped::Kind::kChain);
  REQUIRE(r.queue.push_used(2, 0).ok());
  CHECK(r.queue.wants_interrupt());  // used index 3 passed used_event 2
  CHECK(r.queue.pop().kind == Popped::Kind::kChain);
  REQUIRE(r.queue.push_used(3, 0).ok());
  CHECK_FALSE(r.queue.wants_interrupt());  // already told about used_event 2
  // Empty now: the device asks to be notified when entry 4 comes.
  CHECK(r.queue.pop().kind == Popped::Kind::kNone);
  CHECK(*r.mem.read_obj<std::uint16_t>(avail_event) == 4);
  // Without event indexes again (a reset), the flag rules.
  r.queue.set_event_idx(false);
  CHECK_FALSE(r.queue.wants_interrupt());
}

TEST_CASE("virtqueue: an indirect table carries a request's buffers in one ring entry") {
  Ring r;
  constexpr std::uint64_t kTable = 0x8000;
  // The table: a readable header, two writable buffers; its own indexes.
  auto entry = [&r](std::uint16_t i, std::uint64_t addr, std::uint32_t len, std::uint16_t flags,
                    std::uint16_t next) {
    std::uint8_t d[16];
    std::memcpy(d, &addr, 8);
    std::memcpy(d + 8, &len, 4);
    std::memcpy(d + 12, &flags, 2);
    std::memcpy(d + 14, &next, 2);
    REQUIRE(r.mem.write(kTable + 16ULL * i, d).ok());
  };
  entry(0, kData, 16, kNext, 2);
  entry(2, kData + 0x1000, 4096, kNext | kWrite, 1);
  entry(1, kData + 0x3000, 100, kWrite, 0);
  r.desc(5, kTable, 3 * 16, kIndirect);
  r.offer(5);
  Popped p = r.queue.pop();
  REQUIRE(p.kind == Popped::Kind::kChain);
  CHECK(p.chain.head == 5);
  CHECK(p.chain.readable_size == 16);
  CHECK(p.chain.writable_size == 4196);
  REQUIRE(p.chain.writable.size() == 2);
  CHECK(p.chain.writable[1].gpa == kData + 0x3000);

  // Refused: a table naming another table, a length not a multiple of 16, a loop in a table.
  entry(0, kTable, 16, kIndirect, 0);
  r.desc(6, kTable, 16, kIndirect);
  r.offer(6);
  p = r.queue.pop();
  CHECK(p.kind == Popped::Kind::kBad);
  CHECK(p.error.find("another indirect table") != std::string::npos);
  r.desc(7, kTable, 20, kIndirect);
  r.offer(7);
  p = r.queue.pop();
  CHECK(p.kind == Popped::Kind::kBad);
  CHECK(p.error.find("indirect table of 20 bytes") != std::string::npos);
  entry(0, kData, 16, kNext, 1);
  entry(1, kData, 16, kNext, 0);
  r.desc(1, kTable, 32, kIndirect);
  r.offer(1);
  p = r.queue.pop();
  CHECK(p.kind == Popped::Kind::kBad);
  CHECK(p.error.find("a loop") != std::string::npos);
  // An index past the table's end.
  entry(0, kData, 16, kNext, 9);
  r.desc(2, kTable, 32, kIndirect);
  r.offer(2);
  p = r.queue.pop();
  CHECK(p.kind == Popped::Kind::kBad);
  CHECK(p.error.find("outside the indirect table of 2") != std::string::npos);
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
