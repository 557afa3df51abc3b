#include "devices/virtio/virtio_pci.hpp"

#include <linux/virtio_config.h>
#include <linux/virtio_pci.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "tests/unit/devices/recording_platform.hpp"
#include "tests/unit/virtio/driver_ring.hpp"

namespace keel::virtio {
namespace {

namespace L = pci_layout;
constexpr std::uint64_t kBar = 0xc0000000;
using namespace test;  // NOLINT(google-build-using-namespace): the ring's fixed layout
constexpr std::uint16_t kSize = 8;
constexpr std::uint64_t kMsiAddress = 0xfee00000;
using C = virtio_pci_common_cfg;
constexpr std::uint16_t VRING_DESC_F_NEXT = kNext, VRING_DESC_F_WRITE = kWrite;

// Adds one to each readable byte; answers as many bytes as fit. With `workers`, served on the
// transport's queue threads; `gate` (if set) holds each request until opened.
class EchoDevice final : public VirtioDevice {
 public:
  explicit EchoDevice(bool workers = false) : workers_(workers) {}
  bool uses_workers() const override { return workers_; }
  std::uint32_t device_type() const override { return 0x2a; }
  std::uint64_t device_features() const override { return 1ULL << 3; }
  std::uint16_t num_queues() const override { return 2; }
  std::uint16_t queue_max_size(std::uint16_t) const override { return 64; }
  void read_config(std::uint64_t offset, std::span<std::uint8_t> data) const override {
    for (std::size_t i = 0; i < data.size(); ++i) {
      data[i] = static_cast<std::uint8_t>(0x50 + offset + i);
    }
  }
  void write_config(std::uint64_t, std::span<const std::uint8_t>) override {}
  bool consumes(std::uint16_t queue) const override { return queue == 0; }
  std::uint32_t serve(std::uint16_t, const Chain& chain, const memory::GuestMemory& memory) override {
    served_on = std::this_thread::get_id();
    {
      std::unique_lock lock(gate_mutex);
      waiting = true;
      gate_changed.notify_all();
      gate_changed.wait(lock, [this] { return open; });
      waiting = false;
    }
    ++handled;
    return serve_from_copy(chain, memory,
                           [](std::span<const std::uint8_t> in, std::span<std::uint8_t> out) {
                             const std::size_t n = std::min(in.size(), out.size());
                             for (std::size_t i = 0; i < n; ++i) {
                               out[i] = static_cast<std::uint8_t>(in[i] + 1);
                             }
                             return n;
                           });
  }
  void reset() override { ++resets; }
  void set_gate(bool is_open) {
    std::lock_guard lock(gate_mutex);
    open = is_open;
    gate_changed.notify_all();
  }
  // Waits until a request is held at the closed gate.
  bool wait_held() {
    std::unique_lock lock(gate_mutex);
    return gate_changed.wait_for(lock, std::chrono::seconds(10), [this] { return waiting; });
  }
  std::atomic<int> handled = 0, resets = 0;
  std::atomic<std::thread::id> served_on;

 private:
  bool workers_;
  std::mutex gate_mutex;
  std::condition_variable gate_changed;
  bool open = true, waiting = false;
};

struct Rig : DriverRing {
  memory::GuestMemory mem = guest_ram();
  devices::Bus mmio{"mmio"}, pio{"pio"};
  testing::RecordingRouter router;
  testing::RecordingSlots slots;
  std::unique_ptr<pci::Platform> platform;
  EchoDevice* echo = nullptr;
  std::shared_ptr<VirtioPciDevice> dev;
  // The transport over an EchoDevice, or over `device` when given.
  explicit Rig(bool workers = false, devices::IoEvents* io_events = nullptr,
               std::unique_ptr<VirtioDevice> device = nullptr)
      : DriverRing(mem, kSize) {
    // The transport's BAR is the first in the 64-bit window, at kBar.
    auto p = pci::Platform::create(pio, mmio, router, slots,
                                   {{0x1000'0000, 0x2000'0000}, {kBar, kBar + 0x10'0000}, {0xc000, 0x10000}},
                                   io_events);
    REQUIRE(p.ok());
    platform = std::move(p).value();
    if (!device) {
      auto e = std::make_unique<EchoDevice>(workers);
      echo = e.get();
      device = std::move(e);
    }
    auto d = VirtioPciDevice::create(std::move(device), mem, *platform);
    REQUIRE(d.ok());
    dev = std::move(d).value();
    REQUIRE(dev->bar_address() == kBar);
  }
  std::uint32_t cfg32(std::uint16_t off) {
    std::uint8_t b[4];
    dev->read_config(off, b);
    std::uint32_t v;
    std::memcpy(&v, b, 4);
    return v;
  }
  void cfg_write(std::uint16_t off, std::uint32_t v, std::size_t size = 4) {
    std::uint8_t b[4];
    std::memcpy(b, &v, 4);
    dev->write_config(off, std::span<const std::uint8_t>(b, size));
  }
  std::uint64_t read(std::uint64_t off, std::size_t size) {
    std::uint8_t b[8] = {};
    REQUIRE(mmio.read(kBar + off, std::span(b, size)));
    std::uint64_t v = 0;
    std::memcpy(&v, b, size);
    return v;
  }
  void write(std::uint64_t off, std::uint64_t v, std::size_t size) {
    std::uint8_t b[8];
    std::memcpy(b, &v, 8);
    REQUIRE(mmio.write(kBar + off, std::span<const std::uint8_t>(b, size)));
  }
  // Capability offsets by virtio cfg_type, and the MSI-X capability (under 0x11).
  std::map<std::uint8_t, std::uint16_t> caps() {
    std::map<std::uint8_t, std::uint16_t> found;
    std::uint16_t at = cfg32(0x34) & 0xff;
    for (int hops = 0; at != 0 && hops < 48; ++hops) {
      const std::uint32_t head = cfg32(at);
      const std::uint8_t id = head & 0xff;
      found[id == 0x09 ? static_cast<std::uint8_t>(head >> 24) : 0x11] = at;
      at = (head >> 8) & 0xff;
    }
    return found;
  }
  void decode() { cfg_write(0x04, 0x6, 2); }
  // A driver bringing queue 0 up with MSI-X: vector 0 for the queue, 1 for config changes.
  void bring_up() {
    decode();
    const std::uint16_t msix = caps()[0x11];
    cfg_write(msix + 2, 0x8000, 2);  // enable
    for (std::uint64_t v = 0; v < 2; ++v) {
      write(L::kMsixTable + 16 * v, kMsiAddress, 4);
      write(L::kMsixTable + 16 * v + 8, 0x40 + v, 4);
      write(L::kMsixTable + 16 * v + 12, 0, 4);
    }
    write(offsetof(C, device_status), VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER, 1);
    write(offsetof(C, guest_feature_select), 1, 4);
    write(offsetof(C, guest_feature), 1, 4);  // VERSION_1
    write(offsetof(C, device_status),
          VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK, 1);
    REQUIRE((read(offsetof(C, device_status), 1) & VIRTIO_CONFIG_S_FEATURES_OK) != 0);
    write(offsetof(C, msix_config), 1, 2);
    write(offsetof(C, queue_select), 0, 2);
    write(offsetof(C, queue_size), kSize, 2);
    write(offsetof(C, queue_msix_vector), 0, 2);
    write(offsetof(C, queue_desc_lo), kDesc, 8);
    write(offsetof(C, queue_avail_lo), kAvail, 4);
    write(offsetof(C, queue_avail_hi), 0, 4);
    write(offsetof(C, queue_used_lo), kUsed, 8);
    write(offsetof(C, queue_enable), 1, 2);
    REQUIRE(read(offsetof(C, queue_enable), 2) == 1);
    write(offsetof(C, device_status), 0xf, 1);  // DRIVER_OK
  }
  void notify(std::uint16_t queue) { write(L::kNotify + 4ULL * queue, queue, 2); }
  // Waits (up to 10 s) for the used index to reach `index`: a worker answers on its own thread.
  bool wait_used(std::uint16_t index) const {
    for (int i = 0; i < 10000 && used_idx() != index; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return used_idx() == index;
  }
  std::uint32_t used_len(std::uint16_t i) const { return used_elem(i).second; }
};

TEST_CASE("virtio-pci: identity, capabilities and BAR sizing") {
  Rig r;
  CHECK(r.cfg32(0x00) == 0x106a1af4);  // 1af4, 0x1040 + 0x2a
  CHECK((r.cfg32(0x08) >> 8) == 0xff0000);
  CHECK((r.cfg32(0x08) & 0xff) == 1);        // revision 1: modern only
  CHECK((r.cfg32(0x04) >> 16 & 0x10) != 0);  // capability list
  auto caps = r.caps();
  for (std::uint8_t t :
       {VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_CAP_ISR_CFG,
        VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_CAP_PCI_CFG}) {
    CAPTURE(t);
    CHECK(caps.count(t) == 1);
  }
  REQUIRE(caps.count(0x11) == 1);
  CHECK((r.cfg32(caps[0x11]) >> 16 & 0x7ff) == 2);  // 3 vectors: 2 queues + config
  CHECK(r.cfg32(caps[VIRTIO_PCI_CAP_NOTIFY_CFG] + 16) == L::kNotifyMultiplier);
  CHECK(r.cfg32(0x3c) >> 8 == 0);  // no INTx pin
  // Sizing: all-ones reads back the size mask with the 64-bit memory type bits.
  r.cfg_write(0x10, 0xffffffff);
  r.cfg_write(0x14, 0xffffffff);
  CHECK(r.cfg32(0x10) == 0xffff8004);
  CHECK(r.cfg32(0x14) == 0xffffffff);
  r.cfg_write(0x10, static_cast<std::uint32_t>(kBar));
  r.cfg_write(0x14, 0);
  CHECK(r.cfg32(0x10) == (kBar | 4));
}

TEST_CASE(
    "virtio-pci: BAR 0 is on the bus only while memory decode is on, where the guest put it") {
  Rig r;
  std::uint8_t b[2];
  CHECK_FALSE(r.mmio.read(kBar + offsetof(C, num_queues), b));
  r.decode();
  CHECK(r.read(offsetof(C, num_queues), 2) == 2);
  r.cfg_write(0x10, 0xd0000000);  // moved while decoding
  CHECK_FALSE(r.mmio.read(kBar + offsetof(C, num_queues), b));
  CHECK(r.mmio.read(0xd0000000 + offsetof(C, num_queues), b));
  r.cfg_write(0x04, 0, 2);
  CHECK_FALSE(r.mmio.read(0xd0000000 + offsetof(C, num_queues), b));
}

TEST_CASE("virtio-pci: features without VERSION_1, or not offered, are refused at FEATURES_OK") {
  Rig r;
  r.decode();
  r.write(offsetof(C, device_feature_select), 1, 4);
  CHECK(r.read(offsetof(C, device_feature), 4) == 1);  // VERSION_1 (bit 32)
  r.write(offsetof(C, device_feature_select), 0, 4);
  // The device's bit 3, and indirect descriptors (bit 28; event indexes only with workers).
  CHECK(r.read(offsetof(C, device_feature), 4) == ((1U << 28) | 8));
  r.write(offsetof(C, guest_feature_select), 0, 4);
  r.write(offsetof(C, guest_feature), 8, 4);
  r.write(offsetof(C, device_status), VIRTIO_CONFIG_S_FEATURES_OK | 3, 1);
  CHECK(r.read(offsetof(C, device_status), 1) == 3);  // no VERSION_1: not accepted
  r.write(offsetof(C, guest_feature_select), 1, 4);
  r.write(offsetof(C, guest_feature), 1 | 2, 4);  // bit 33 was not offered
  r.write(offsetof(C, device_status), VIRTIO_CONFIG_S_FEATURES_OK | 3, 1);
  CHECK(r.read(offsetof(C, device_status), 1) == 3);
  r.write(offsetof(C, guest_feature), 1, 4);
  r.write(offsetof(C, device_status), VIRTIO_CONFIG_S_FEATURES_OK | 3, 1);
  CHECK(r.read(offsetof(C, device_status), 1) == (VIRTIO_CONFIG_S_FEATURES_OK | 3));
}

TEST_CASE("virtio-pci: a request goes through the ring, is answered and interrupts") {
  Rig r;
  r.bring_up();
  const std::uint8_t in[] = {1, 2, 3};
  REQUIRE(r.mem.write(kData, in).ok());
  r.desc(0, kData, 3, VRING_DESC_F_NEXT, 1);
  r.desc(1, kData + 0x100, 8, VRING_DESC_F_WRITE);
  r.offer(0);
  r.notify(0);
  CHECK(r.echo->handled == 1);
  CHECK(r.used_idx() == 1);
  CHECK(r.used_len(0) == 3);
  std::uint8_t out[3];
  REQUIRE(r.mem.read(kData + 0x100, out).ok());
  CHECK(std::vector<std::uint8_t>(out, out + 3) == std::vector<std::uint8_t>{2, 3, 4});
  CHECK(r.router.fired(0x40) == 1);
  CHECK(r.read(L::kIsr, 1) == 1);
  CHECK(r.read(L::kIsr, 1) == 0);  // read clears
  // The event-only queue keeps its buffers.
  r.notify(1);
  CHECK(r.echo->handled == 1);
  CHECK(r.dev->counters()["notifications"] == 2);
}

TEST_CASE("virtio-pci: a malformed request is returned empty; the queue keeps working") {
  Rig r;
  r.bring_up();
  r.desc(0, kData, 4, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
  r.desc(1, kData, 4, 0);  // readable after writable
  r.offer(0);
  r.desc(2, kData, 2, VRING_DESC_F_NEXT, 3);
  r.desc(3, kData + 0x100, 2, VRING_DESC_F_WRITE);
  r.offer(2);
  r.notify(0);
  CHECK(r.used_idx() == 2);
  CHECK(r.used_len(0) == 0);
  CHECK(r.used_len(1) == 2);
  CHECK(r.echo->handled == 1);
  auto counters = r.dev->counters();
  CHECK(counters["chains_refused"] == 1);
  CHECK(counters["chains_handled"] == 1);
}

TEST_CASE("virtio-pci: an inconsistent ring sets NEEDS_RESET and signals a config change") {
  Rig r;
  r.bring_up();
  REQUIRE(r.mem.write_obj<std::uint16_t>(kAvail + 2, 100).ok());
  r.notify(0);
  CHECK((r.read(offsetof(C, device_status), 1) & VIRTIO_CONFIG_S_NEEDS_RESET) != 0);
  CHECK(r.router.fired(0x41) == 1);
  CHECK(r.read(L::kIsr, 1) == VIRTIO_PCI_ISR_CONFIG);
  CHECK(r.echo->handled == 0);
  // Reset: the device, the queues and the status start over.
  r.write(offsetof(C, device_status), 0, 1);
  CHECK(r.read(offsetof(C, device_status), 1) == 0);
  CHECK(r.read(offsetof(C, queue_enable), 2) == 0);
  CHECK(r.read(offsetof(C, queue_size), 2) == 64);
  CHECK(r.echo->resets == 1);
}

TEST_CASE("virtio-pci: a masked vector's interrupt waits in the PBA until unmasked") {
  Rig r;
  r.bring_up();
  r.write(L::kMsixTable + 12, 1, 4);  // mask vector 0
  r.desc(0, kData, 1, VRING_DESC_F_NEXT, 1);
  r.desc(1, kData + 0x100, 1, VRING_DESC_F_WRITE);
  r.offer(0);
  r.notify(0);
  CHECK(r.router.fired(0x40) == 0);
  CHECK((r.read(L::kMsixPba, 8) & 1) == 1);
  r.write(L::kMsixTable + 12, 0, 4);
  CHECK(r.router.fired(0x40) == 1);
  CHECK((r.read(L::kMsixPba, 8) & 1) == 0);
  // Function mask through the capability holds them too.
  const std::uint16_t msix = r.caps()[0x11];
  r.cfg_write(msix + 2, 0xc000, 2);
  r.offer(0);
  r.notify(0);
  CHECK(r.router.fired(0x40) == 0);
  r.cfg_write(msix + 2, 0x8000, 2);
  CHECK(r.router.fired(0x40) == 1);
}

TEST_CASE("virtio-pci: queue fields refuse bad values and freeze once enabled") {
  Rig r;
  r.decode();
  r.write(offsetof(C, queue_select), 0, 2);
  r.write(offsetof(C, queue_size), 48, 2);  // not a power of two
  CHECK(r.read(offsetof(C, queue_size), 2) == 64);
  r.write(offsetof(C, queue_size), 128, 2);  // above the maximum
  CHECK(r.read(offsetof(C, queue_size), 2) == 64);
  r.write(offsetof(C, queue_msix_vector), 7, 2);  // no such vector
  CHECK(r.read(offsetof(C, queue_msix_vector), 2) == VIRTIO_MSI_NO_VECTOR);
  r.write(offsetof(C, queue_desc_lo), kDesc + 4, 8);  // misaligned: enable refused
  r.write(offsetof(C, queue_avail_lo), kAvail, 8);
  r.write(offsetof(C, queue_used_lo), kUsed, 8);
  r.write(offsetof(C, queue_enable), 1, 2);
  CHECK(r.read(offsetof(C, queue_enable), 2) == 0);
  r.write(offsetof(C, queue_desc_lo), kDesc, 8);
  r.write(offsetof(C, queue_enable), 1, 2);
  CHECK(r.read(offsetof(C, queue_enable), 2) == 1);
  r.write(offsetof(C, queue_desc_lo), 0x8000, 8);
  CHECK(r.read(offsetof(C, queue_desc_lo), 8) == kDesc);
  r.write(offsetof(C, queue_select), 9, 2);  // no such queue: reads as zeros
  CHECK(r.read(offsetof(C, queue_size), 2) == 0);
  CHECK(r.read(offsetof(C, num_queues), 2) == 2);
}

TEST_CASE("virtio-pci: the PCI configuration access capability reaches the BAR") {
  Rig r;
  const std::uint16_t cap = r.caps()[VIRTIO_PCI_CAP_PCI_CFG];
  r.cfg_write(cap + 4, 0, 1);
  r.cfg_write(cap + 8, offsetof(C, num_queues));
  r.cfg_write(cap + 12, 2);
  CHECK((r.cfg32(cap + 16) & 0xffff) == 2);
  r.cfg_write(cap + 8, L::kDevice + 1);
  r.cfg_write(cap + 12, 1);
  CHECK((r.cfg32(cap + 16) & 0xff) == 0x51);
  r.cfg_write(cap + 12, 3);  // not 1, 2 or 4: nothing
  CHECK(r.cfg32(cap + 16) == 0);
}

TEST_CASE("virtio-pci: a hostile driver writing anything anywhere does not break the VMM") {
  Rig r;
  r.bring_up();
  std::mt19937_64 rng(7);
  const std::size_t sizes[] = {1, 2, 4, 8};
  for (int i = 0; i < 200000; ++i) {
    const std::size_t size = sizes[rng() % 4];
    const std::uint64_t value = rng();
    if (rng() % 8 == 0) {
      const auto off = static_cast<std::uint16_t>(rng() % (4096 - 4) & ~std::uint64_t{3});
      r.cfg_write(off, static_cast<std::uint32_t>(value), std::min<std::size_t>(size, 4));
      if (rng() % 2 == 0) {
        r.decode();
        r.cfg_write(0x10, static_cast<std::uint32_t>(kBar));
        r.cfg_write(0x14, 0);
      }
      continue;
    }
    // Biased towards the registers that do something.
    const std::uint64_t regions[] = {L::kCommon,    L::kIsr,     L::kDevice, L::kNotify,
                                     L::kMsixTable, L::kMsixPba, 0x6000,     0x7ff8};
    const std::uint64_t off = regions[rng() % 8] + (rng() % 0x40);
    std::uint8_t b[8];
    std::memcpy(b, &value, 8);
    if (off + size <= L::kBarSize) {
      (void)r.mmio.write(kBar + off, std::span<const std::uint8_t>(b, size));
      (void)r.mmio.read(kBar + off, std::span(b, size));
    }
  }
  // Still a device: a reset and a fresh bring-up work.
  r.decode();
  r.cfg_write(0x10, static_cast<std::uint32_t>(kBar));
  r.cfg_write(0x14, 0);
  r.write(offsetof(C, device_status), 0, 1);
  r.avail_idx = 0;
  REQUIRE(r.mem.fill(kAvail, 0, 0x2000).ok());
  r.bring_up();
  r.desc(0, kData, 1, VRING_DESC_F_NEXT, 1);
  r.desc(1, kData + 0x100, 1, VRING_DESC_F_WRITE);
  r.offer(0);
  r.notify(0);
  CHECK(r.used_len(0) == 1);
}

// Records the ioeventfds a transport asks for; signal() plays KVM, which would signal the
// eventfd on a guest write to the address.
class RecordingIoEvents final : public devices::IoEvents {
 public:
  Status add(std::uint64_t gpa, int eventfd) override {
    std::lock_guard lock(mutex);
    live[gpa] = eventfd;
    return ok_status();
  }
  Status remove(std::uint64_t gpa, int eventfd) override {
    std::lock_guard lock(mutex);
    if (live.count(gpa) == 0 || live[gpa] != eventfd) {
      return Error::not_found("no ioeventfd at that address");
    }
    live.erase(gpa);
    return ok_status();
  }
  bool signal(std::uint64_t gpa) {
    std::lock_guard lock(mutex);
    const std::uint64_t one = 1;
    return live.count(gpa) != 0 && ::write(live[gpa], &one, sizeof one) == sizeof one;
  }
  std::map<std::uint64_t, int> addresses() {
    std::lock_guard lock(mutex);
    return live;
  }
  std::mutex mutex;
  std::map<std::uint64_t, int> live;
};

TEST_CASE("virtio-pci workers: requests are served on the queue's thread, not the notifier's") {
  Rig r(true);
  r.bring_up();
  const std::uint8_t in[] = {1, 2, 3};
  REQUIRE(r.mem.write(kData, in).ok());
  r.desc(0, kData, 3, VRING_DESC_F_NEXT, 1);
  r.desc(1, kData + 0x100, 8, VRING_DESC_F_WRITE);
  r.offer(0);
  r.echo->set_gate(false);
  r.notify(0);  // returns at once: the request waits at the gate on the worker
  REQUIRE(r.echo->wait_held());
  CHECK(r.used_idx() == 0);
  CHECK(r.echo->served_on.load() != std::this_thread::get_id());
  r.echo->set_gate(true);
  REQUIRE(r.wait_used(1));
  CHECK(r.used_len(0) == 3);
  std::uint8_t out[3];
  REQUIRE(r.mem.read(kData + 0x100, out).ok());
  CHECK(std::vector<std::uint8_t>(out, out + 3) == std::vector<std::uint8_t>{2, 3, 4});
  CHECK(r.dev->counters()["chains_handled"] == 1);  // under the lock: the interrupt went first
  CHECK(r.router.fired(0x40) == 1);
  // A malformed chain is returned empty by the worker too, and counted.
  r.desc(2, kData, 4, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 3);
  r.desc(3, kData, 4, 0);
  r.offer(2);
  r.notify(0);
  REQUIRE(r.wait_used(2));
  CHECK(r.used_len(1) == 0);
  CHECK(r.dev->counters()["chains_refused"] == 1);
}

TEST_CASE("virtio-pci workers: a device reset waits for the requests being served") {
  Rig r(true);
  r.bring_up();
  r.desc(0, kData, 1, VRING_DESC_F_NEXT, 1);
  r.desc(1, kData + 0x100, 1, VRING_DESC_F_WRITE);
  r.offer(0);
  r.echo->set_gate(false);
  r.notify(0);
  REQUIRE(r.echo->wait_held());
  // The driver resets the device while its request is in flight (another vCPU).
  auto reset = std::async(std::launch::async,
                          [&r] { r.write(offsetof(C, device_status), 0, 1); });
  CHECK(reset.wait_for(std::chrono::milliseconds(200)) == std::future_status::timeout);
  CHECK(r.echo->resets == 0);
  r.echo->set_gate(true);
  REQUIRE(reset.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  // The request was returned before the reset went through, never after.
  CHECK(r.used_idx() == 1);
  CHECK(r.echo->resets == 1);
  CHECK(r.read(offsetof(C, device_status), 1) == 0);
}

TEST_CASE("virtio-pci workers: queue notify addresses are ioeventfds that follow BAR 0") {
  RecordingIoEvents events;
  {
    Rig r(true, &events);
    CHECK(events.addresses().empty());  // not decoded yet
    r.bring_up();
    // Only queue 0 takes requests (queue 1 is the device's to fill): one worker, one address.
    auto live = events.addresses();
    REQUIRE(live.size() == 1);
    CHECK(live.begin()->first == kBar + L::kNotify);
    r.desc(0, kData, 1, VRING_DESC_F_NEXT, 1);
    r.desc(1, kData + 0x100, 1, VRING_DESC_F_WRITE);
    r.offer(0);
    REQUIRE(events.signal(kBar + L::kNotify));  // the guest's write, caught by KVM
    REQUIRE(r.wait_used(1));
    CHECK(r.dev->counters()["notifications"] == 0);  // it never reached the transport
    r.cfg_write(0x10, 0xd0000000);                     // the guest moves BAR 0
    live = events.addresses();
    REQUIRE(live.size() == 1);
    CHECK(live.begin()->first == 0xd0000000 + L::kNotify);
    r.cfg_write(0x04, 0, 2);  // decode off
    CHECK(events.addresses().empty());
    r.cfg_write(0x04, 0x6, 2);
    CHECK(events.addresses().size() == 1);
  }
  CHECK(events.addresses().empty());  // the transport went, its ioeventfds with it
}

// Its queue 0 is fed from a pipe, as a network link's receive queue is from a TAP: each request
// gets one byte of input, and only when there is one.
class PipeDevice final : public VirtioDevice {
 public:
  PipeDevice() {
    int fds[2];
    REQUIRE(::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
    read_end = fds[0];
    write_end = fds[1];
  }
  ~PipeDevice() override {
    ::close(read_end);
    ::close(write_end);
  }
  std::uint32_t device_type() const override { return 0x2b; }
  std::uint64_t device_features() const override { return 0; }
  std::uint16_t num_queues() const override { return 1; }
  std::uint16_t queue_max_size(std::uint16_t) const override { return kSize; }
  void read_config(std::uint64_t, std::span<std::uint8_t> data) const override {
    std::fill(data.begin(), data.end(), 0);
  }
  void write_config(std::uint64_t, std::span<const std::uint8_t>) override {}
  bool consumes(std::uint16_t) const override { return true; }
  bool uses_workers() const override { return true; }
  int queue_source(std::uint16_t) const override { return read_end; }
  bool has_input(std::uint16_t) override {
    ++input_checks;
    pollfd p{read_end, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
  }
  std::uint32_t serve(std::uint16_t, const Chain& chain, const memory::GuestMemory& memory) override {
    std::uint8_t byte = 0;
    if (::read(read_end, &byte, 1) != 1) {
      return 0;
    }
    return Virtqueue::write(memory, chain.writable, 0, std::span(&byte, 1)).ok() ? 1 : 0;
  }
  void reset() override {}
  int read_end = -1, write_end = -1;
  std::atomic<int> input_checks = 0;
};

TEST_CASE("virtio-pci workers: a queue fed from a source takes buffers only for input, never spins") {
  auto owned = std::make_unique<PipeDevice>();
  PipeDevice* pipe = owned.get();
  Rig r(true, nullptr, std::move(owned));
  r.bring_up();
  auto wait_for = [](auto done) {
    for (int i = 0; i < 10000 && !done(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return done();
  };
  // A buffer and no input: the buffer stays with the device's ring, unanswered.
  r.desc(0, kData, 1, VRING_DESC_F_WRITE);
  r.offer(0);
  r.notify(0);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(r.used_idx() == 0);
  // Input arrives: delivered without any kick from the driver.
  REQUIRE(::write(pipe->write_end, "a", 1) == 1);
  REQUIRE(r.wait_used(1));
  CHECK(r.used_len(0) == 1);
  CHECK(*r.mem.read_obj<std::uint8_t>(kData) == 'a');
  // Input with no buffer: the worker waits for the driver's kick, it does not spin on the
  // readable pipe (a handful of checks, not thousands).
  REQUIRE(::write(pipe->write_end, "bc", 2) == 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const int checks = pipe->input_checks.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(pipe->input_checks.load() - checks <= 2);
  CHECK(r.used_idx() == 1);
  // The driver gives two buffers and kicks: both bytes are delivered, in order.
  r.desc(1, kData + 0x10, 1, VRING_DESC_F_WRITE);
  r.desc(2, kData + 0x20, 1, VRING_DESC_F_WRITE);
  r.offer(1);
  r.offer(2);
  r.notify(0);
  REQUIRE(r.wait_used(3));
  CHECK(*r.mem.read_obj<std::uint8_t>(kData + 0x10) == 'b');
  CHECK(*r.mem.read_obj<std::uint8_t>(kData + 0x20) == 'c');
  CHECK(wait_for([&] { return r.dev->counters()["chains_handled"] == 3; }));
}

TEST_CASE("virtio-pci workers: input that waits before the driver is ready is not spun on") {
  auto owned = std::make_unique<PipeDevice>();
  PipeDevice* pipe = owned.get();
  Rig r(true, nullptr, std::move(owned));
  REQUIRE(::write(pipe->write_end, "x", 1) == 1);  // before any driver: a readable source
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const int before = pipe->input_checks.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(pipe->input_checks.load() - before <= 2);
  r.bring_up();  // DRIVER_OK: the worker looks at its source again
  r.desc(0, kData, 1, VRING_DESC_F_WRITE);
  r.offer(0);
  r.notify(0);
  REQUIRE(r.wait_used(1));
  CHECK(*r.mem.read_obj<std::uint8_t>(kData) == 'x');
}

}  // namespace
}  // namespace keel::virtio
