#include "devices/virtio/virtio_mem.hpp"

#include <linux/virtio_ids.h>
#include <linux/virtio_mem.h>
#include <sys/mman.h>

#include <cstring>
#include <vector>

#include <catch2/catch.hpp>

#include "memory/layout.hpp"

namespace keel::virtio {
namespace {

constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;
constexpr std::uint64_t kBlock = VirtioMem::kBlockSize;

struct Change {
  std::uint64_t gpa, size;
  bool plug;
  bool operator==(const Change&) const = default;
};

struct Rig {
  explicit Rig(std::uint64_t hotplug = 256 * kMiB) {
    auto m = memory::GuestMemory::create(64 * kMiB, {}, hotplug);
    REQUIRE(m.ok());
    memory = std::make_unique<memory::GuestMemory>(std::move(m).value());
    auto d = VirtioMem::create(*memory, [this](std::uint64_t gpa, std::uint64_t size, bool plug) -> Status {
      changes.push_back({gpa, size, plug});
      if (refuse) {
        return Error::invalid("refused by the test");
      }
      return ok_status();
    });
    REQUIRE(d.ok());
    REQUIRE(*d);
    dev = std::move(d).value();
    base = memory->hotplug_region()->gpa();
  }
  // One request; returns {response type, state}.
  std::pair<std::uint16_t, std::uint16_t> ask(std::uint16_t type, std::uint64_t addr,
                                              std::uint16_t blocks, std::size_t out_size = 10) {
    virtio_mem_req req{};
    req.type = type;
    req.u.plug.addr = addr;
    req.u.plug.nb_blocks = blocks;
    std::vector<std::uint8_t> in(sizeof req), out(out_size, 0xee);
    std::memcpy(in.data(), &req, sizeof req);
    const std::size_t n = dev->handle(in, out);
    if (n < 10) {
      return {0xffff, 0xffff};
    }
    std::uint16_t t = 0, s = 0;
    std::memcpy(&t, out.data(), 2);
    std::memcpy(&s, out.data() + 8, 2);
    return {t, s};
  }
  virtio_mem_config config() const {
    virtio_mem_config c{};
    dev->read_config(0, std::span(reinterpret_cast<std::uint8_t*>(&c), sizeof c));
    return c;
  }
  std::unique_ptr<memory::GuestMemory> memory;
  std::unique_ptr<VirtioMem> dev;
  std::uint64_t base = 0;
  std::vector<Change> changes;
  bool refuse = false;
};

TEST_CASE("virtio-mem: the region sits above RAM, the 64-bit window above it, nothing plugged") {
  Rig r;
  CHECK(r.dev->device_type() == VIRTIO_ID_MEM);
  CHECK(r.dev->device_features() == (1ULL << VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE));
  const virtio_mem_config c = r.config();
  CHECK(c.block_size == kBlock);
  CHECK(c.addr == memory::layout::kRam64Start);  // 64 MiB of RAM: the region starts at 4 GiB
  CHECK(c.region_size == 256 * kMiB);
  CHECK(c.usable_region_size == 256 * kMiB);
  CHECK(c.plugged_size == 0);
  CHECK(c.requested_size == 0);
  CHECK(r.memory->top() == c.addr + c.region_size);
  CHECK(memory::layout::mmio64_start(r.memory->top()) >= r.memory->top());
  // Boot RAM is what e820 and the eager plans see; the region translates for device access.
  CHECK(r.memory->regions().size() == 1);
  CHECK(r.memory->translate(c.addr, kBlock) != nullptr);
  CHECK(r.memory->translate(c.addr + c.region_size - 8, 16) == nullptr);
}

TEST_CASE("virtio-mem: plugs within the requested size, each through the handler") {
  Rig r;
  // Nothing requested: a plug is NACKed before the handler sees it.
  CHECK(r.ask(VIRTIO_MEM_REQ_PLUG, r.base, 1).first == VIRTIO_MEM_RESP_NACK);
  CHECK(r.changes.empty());
  REQUIRE(r.dev->request(128 * kMiB).ok());
  CHECK(r.config().requested_size == 128 * kMiB);
  CHECK(r.ask(VIRTIO_MEM_REQ_PLUG, r.base, 64).first == VIRTIO_MEM_RESP_ACK);
  CHECK(r.changes == std::vector<Change>{{r.base, 128 * kMiB, true}});
  CHECK(r.dev->plugged_size() == 128 * kMiB);
  CHECK(r.config().plugged_size == 128 * kMiB);
  // Beyond the request: NACK; already plugged: ERROR.
  CHECK(r.ask(VIRTIO_MEM_REQ_PLUG, r.base + 128 * kMiB, 1).first == VIRTIO_MEM_RESP_NACK);
  CHECK(r.ask(VIRTIO_MEM_REQ_PLUG, r.base, 1).first == VIRTIO_MEM_RESP_ERROR);
  CHECK(r.ask(VIRTIO_MEM_REQ_STATE, r.base, 64) ==
        std::pair<std::uint16_t, std::uint16_t>{VIRTIO_MEM_RESP_ACK, VIRTIO_MEM_STATE_PLUGGED});
  CHECK(r.ask(VIRTIO_MEM_REQ_STATE, r.base + 126 * kMiB, 2).second == VIRTIO_MEM_STATE_MIXED);
  CHECK(r.ask(VIRTIO_MEM_REQ_STATE, r.base + 128 * kMiB, 64).second ==
        VIRTIO_MEM_STATE_UNPLUGGED);
}

TEST_CASE("virtio-mem: a refusal by the handler is BUSY (the guest backs off) and nothing changes") {
  Rig r;
  REQUIRE(r.dev->request(256 * kMiB).ok());
  r.refuse = true;
  CHECK(r.ask(VIRTIO_MEM_REQ_PLUG, r.base, 64).first == VIRTIO_MEM_RESP_BUSY);
  CHECK(r.dev->plugged_size() == 0);
  r.refuse = false;
  CHECK(r.ask(VIRTIO_MEM_REQ_PLUG, r.base, 64).first == VIRTIO_MEM_RESP_ACK);
  r.refuse = true;
  CHECK(r.ask(VIRTIO_MEM_REQ_UNPLUG, r.base, 32).first == VIRTIO_MEM_RESP_BUSY);
  CHECK(r.dev->plugged_size() == 128 * kMiB);
  CHECK(r.ask(VIRTIO_MEM_REQ_UNPLUG_ALL, 0, 0).first == VIRTIO_MEM_RESP_BUSY);
  CHECK(r.dev->counters().at("busy") == 3);
  CHECK(r.dev->counters().at("nacks") == 0);
}

TEST_CASE("virtio-mem: unplug gives the memory back; unplug-all empties the region") {
  Rig r;
  REQUIRE(r.dev->request(256 * kMiB).ok());
  REQUIRE(r.ask(VIRTIO_MEM_REQ_PLUG, r.base, 128).first == VIRTIO_MEM_RESP_ACK);
  std::uint8_t* host = r.memory->translate(r.base, kBlock);
  REQUIRE(host != nullptr);
  std::memset(host, 0x5a, kBlock);
  // Unplugging what is not plugged (or a misaligned range) is an ERROR.
  CHECK(r.ask(VIRTIO_MEM_REQ_UNPLUG, r.base + 4096, 1).first == VIRTIO_MEM_RESP_ERROR);
  CHECK(r.ask(VIRTIO_MEM_REQ_UNPLUG, r.base, 1).first == VIRTIO_MEM_RESP_ACK);
  CHECK(host[0] == 0);  // given back: zero when touched again
  CHECK(r.ask(VIRTIO_MEM_REQ_UNPLUG, r.base, 1).first == VIRTIO_MEM_RESP_ERROR);
  CHECK(r.dev->plugged_size() == 256 * kMiB - kBlock);
  CHECK(r.ask(VIRTIO_MEM_REQ_UNPLUG_ALL, 0, 0).first == VIRTIO_MEM_RESP_ACK);
  CHECK(r.dev->plugged_size() == 0);
  CHECK(r.changes.back() == Change{r.base, 256 * kMiB, false});
}

TEST_CASE("virtio-mem: what a guest may send is answered, never trusted") {
  Rig r;
  REQUIRE(r.dev->request(256 * kMiB).ok());
  const std::uint64_t end = r.base + 256 * kMiB;
  CHECK(r.ask(VIRTIO_MEM_REQ_PLUG, r.base - kBlock, 1).first == VIRTIO_MEM_RESP_ERROR);
  CHECK(r.ask(VIRTIO_MEM_REQ_PLUG, end, 1).first == VIRTIO_MEM_RESP_ERROR);
  CHECK(r.ask(VIRTIO_MEM_REQ_PLUG, end - kBlock, 2).first == VIRTIO_MEM_RESP_ERROR);
  CHECK(r.ask(VIRTIO_MEM_REQ_PLUG, r.base, 0).first == VIRTIO_MEM_RESP_ERROR);
  CHECK(r.ask(VIRTIO_MEM_REQ_PLUG, ~std::uint64_t{0} - kBlock + 1, 0xffff).first ==
        VIRTIO_MEM_RESP_ERROR);
  CHECK(r.ask(VIRTIO_MEM_REQ_STATE, r.base, 0xffff).first == VIRTIO_MEM_RESP_ERROR);
  CHECK(r.ask(9, r.base, 1).first == VIRTIO_MEM_RESP_ERROR);
  CHECK(r.ask(VIRTIO_MEM_REQ_PLUG, r.base, 1, 4).first == 0xffff);  // no room to answer
  std::vector<std::uint8_t> shorty(8), out(10);
  CHECK(r.dev->handle(shorty, out) == 10);  // a short request is an ERROR answer
  CHECK(r.changes.empty());
  CHECK(r.dev->plugged_size() == 0);
  // UNPLUG_ALL with nothing plugged touches nothing.
  CHECK(r.ask(VIRTIO_MEM_REQ_UNPLUG_ALL, 0, 0).first == VIRTIO_MEM_RESP_ACK);
  CHECK(r.changes.empty());
  // The VMM's own requests are checked too.
  CHECK_FALSE(r.dev->request(3 * kMiB).ok());
  CHECK_FALSE(r.dev->request(512 * kMiB).ok());
}

TEST_CASE("guest memory: the hot-pluggable region's size is checked") {
  CHECK_FALSE(memory::GuestMemory::create(64 * kMiB, {}, 100 * kMiB).ok());
  auto huge = memory::GuestMemory::create(64 * kMiB, {.shared = false, .hugepages = true}, 128 * kMiB);
  CHECK_FALSE(huge.ok());
  auto none = memory::GuestMemory::create(64 * kMiB);
  REQUIRE(none.ok());
  CHECK(none->hotplug_region() == nullptr);
  CHECK(none->top() == none->end());
  auto created = VirtioMem::create(*none, {});
  REQUIRE(created.ok());
  CHECK_FALSE(*created);
}

}  // namespace
}  // namespace keel::virtio
