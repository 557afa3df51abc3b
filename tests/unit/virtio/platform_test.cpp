// A virtio device added to a VM that has no passthrough device: only the VM's PCI platform
// (bus 0 with its config-space access, the BAR windows, the interrupt router) is needed. Found
// and driven the way a guest would: config mechanism #1 on the port bus to enumerate, the
// capability list through ECAM, the BAR through the MMIO bus, MSI-X for the interrupt.
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_pci.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>

#include "devices/pci/platform.hpp"
#include "devices/virtio/virtio_pci.hpp"
#include "devices/virtio/virtio_rng.hpp"
#include "memory/layout.hpp"
#include "tests/unit/devices/recording_platform.hpp"
#include "tests/unit/virtio/driver_ring.hpp"

namespace keel::virtio {
namespace {

namespace layout = memory::layout;
namespace L = pci_layout;
using namespace test;  // NOLINT(google-build-using-namespace): the ring's fixed layout
using C = virtio_pci_common_cfg;

struct Vm {
  memory::GuestMemory mem = guest_ram();
  devices::Bus pio{"port I/O"}, mmio{"MMIO"};
  testing::RecordingRouter router;
  testing::RecordingSlots slots;
  std::unique_ptr<pci::Platform> platform;

  Vm() {
    auto p = pci::Platform::create(pio, mmio, router, slots,
                                   pci::Platform::BarWindows::above_ram(mem.end()));
    REQUIRE(p.ok());
    platform = std::move(p).value();
  }

  // Configuration mechanism #1, as firmware and Linux enumerate: the address at 0xcf8, the data
  // at 0xcfc.
  std::uint32_t cf8_read(std::uint8_t slot, std::uint8_t reg) {
    const std::uint32_t address = 0x8000'0000U | (std::uint32_t{slot} << 11) | reg;
    std::uint8_t a[4], v[4];
    std::memcpy(a, &address, 4);
    REQUIRE(pio.write(layout::kPciConfigAddressPort, a));
    REQUIRE(pio.read(layout::kPciConfigAddressPort + 4, v));
    std::uint32_t value = 0;
    std::memcpy(&value, v, 4);
    return value;
  }
  // ECAM on the MMIO bus, for the capability list and writes.
  std::uint32_t ecam_read(std::uint8_t slot, std::uint16_t reg) {
    std::uint8_t v[4];
    REQUIRE(mmio.read(layout::kEcamStart + (std::uint64_t{slot} << 15) + reg, v));
    std::uint32_t value = 0;
    std::memcpy(&value, v, 4);
    return value;
  }
  void ecam_write(std::uint8_t slot, std::uint16_t reg, std::uint32_t value, std::size_t size) {
    std::uint8_t v[4];
    std::memcpy(v, &value, 4);
    REQUIRE(mmio.write(layout::kEcamStart + (std::uint64_t{slot} << 15) + reg,
                       std::span<const std::uint8_t>(v, size)));
  }
  void bar_write(std::uint64_t bar, std::uint64_t offset, std::uint64_t value, std::size_t size) {
    std::uint8_t v[8];
    std::memcpy(v, &value, 8);
    REQUIRE(mmio.write(bar + offset, std::span<const std::uint8_t>(v, size)));
  }
  std::uint64_t bar_read(std::uint64_t bar, std::uint64_t offset, std::size_t size) {
    std::uint8_t v[8] = {};
    REQUIRE(mmio.read(bar + offset, std::span(v, size)));
    std::uint64_t value = 0;
    std::memcpy(&value, v, size);
    return value;
  }
};

TEST_CASE("platform: a virtio device in a VM with no passthrough device, found and used as a guest would") {
  Vm vm;
  auto rng = VirtioRng::open(VirtioRng::kDefaultSource);
  REQUIRE(rng.ok());
  auto device = VirtioPciDevice::create(std::move(rng).value(), vm.mem, *vm.platform);
  REQUIRE(device.ok());
  auto slot = vm.platform->free_slot();
  REQUIRE(slot.ok());
  REQUIRE(vm.platform->plug(*slot, *device));

  // Enumeration: the host bridge at 0, the virtio-rng (1af4:1044) at its slot, nothing else.
  CHECK(vm.cf8_read(0, 0) == 0x0d578086);
  std::uint8_t found = 0;
  for (std::uint8_t s = 1; s < pci::PciRoot::kSlots; ++s) {
    const std::uint32_t id = vm.cf8_read(s, 0);
    if (id != 0xffffffff) {
      CHECK(id == 0x10441af4);
      found = s;
    }
  }
  REQUIRE(found == *slot);

  // BAR 0, 64-bit, where the platform put it: in the 64-bit window above guest RAM.
  const std::uint64_t bar =
      (std::uint64_t{vm.ecam_read(found, 0x14)} << 32) | (vm.ecam_read(found, 0x10) & ~0xfULL);
  CHECK(bar == (*device)->bar_address());
  CHECK(bar >= layout::mmio64_start(vm.mem.end()));
  vm.ecam_write(found, 0x04, 0x6, 2);  // memory decode, bus master

  // MSI-X from the capability list: vector 0 for the queue.
  std::uint16_t msix = 0;
  for (std::uint16_t at = vm.ecam_read(found, 0x34) & 0xff; at != 0;
       at = (vm.ecam_read(found, at) >> 8) & 0xff) {
    if ((vm.ecam_read(found, at) & 0xff) == pci::kCapIdMsix) {
      msix = at;
    }
  }
  REQUIRE(msix != 0);
  vm.ecam_write(found, msix + 2, pci::kMsixEnable, 2);
  vm.bar_write(bar, L::kMsixTable, 0xfee00000, 4);
  vm.bar_write(bar, L::kMsixTable + 8, 0x41, 4);
  vm.bar_write(bar, L::kMsixTable + 12, 0, 4);

  // The driver's handshake and queue 0.
  vm.bar_write(bar, offsetof(C, device_status), VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER, 1);
  vm.bar_write(bar, offsetof(C, guest_feature_select), 1, 4);
  vm.bar_write(bar, offsetof(C, guest_feature), 1, 4);  // VERSION_1
  vm.bar_write(bar, offsetof(C, device_status),
               VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK, 1);
  REQUIRE((vm.bar_read(bar, offsetof(C, device_status), 1) & VIRTIO_CONFIG_S_FEATURES_OK) != 0);
  constexpr std::uint16_t kSize = 8;
  vm.bar_write(bar, offsetof(C, queue_select), 0, 2);
  vm.bar_write(bar, offsetof(C, queue_size), kSize, 2);
  vm.bar_write(bar, offsetof(C, queue_msix_vector), 0, 2);
  vm.bar_write(bar, offsetof(C, queue_desc_lo), kDesc, 8);
  vm.bar_write(bar, offsetof(C, queue_avail_lo), kAvail, 8);
  vm.bar_write(bar, offsetof(C, queue_used_lo), kUsed, 8);
  vm.bar_write(bar, offsetof(C, queue_enable), 1, 2);
  vm.bar_write(bar, offsetof(C, device_status),
               VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |
                   VIRTIO_CONFIG_S_DRIVER_OK,
               1);

  // 64 bytes of entropy asked for, 64 given, the interrupt on vector 0's message.
  DriverRing ring(vm.mem, kSize);
  ring.desc(0, kData, 64, kWrite);
  ring.offer(0);
  vm.bar_write(bar, L::kNotify, 0, 2);
  REQUIRE(ring.used_idx() == 1);
  CHECK(ring.used_elem(0) == std::pair<std::uint32_t, std::uint32_t>{0, 64});
  std::uint8_t entropy[64];
  REQUIRE(vm.mem.read(kData, entropy).ok());
  CHECK(std::any_of(entropy, entropy + 64, [](std::uint8_t b) { return b != 0; }));
  CHECK(vm.router.fired(0x41) == 1);

  // Unplugged: gone from the bus, its routes released.
  REQUIRE(vm.platform->unplug(found));
  device->reset();
  CHECK(vm.cf8_read(found, 0) == 0xffffffff);
  CHECK(vm.router.routes.empty());
  CHECK(vm.router.irqfds.empty());
}

TEST_CASE("virtio-rng: sources that could block or never answer are refused") {
  CHECK_FALSE(VirtioRng::open("/nonexistent/rng").ok());
  auto dir = VirtioRng::open("/tmp");
  REQUIRE_FALSE(dir.ok());
  CHECK(dir.error().kind() == ErrorKind::kInvalid);
  CHECK_THAT(dir.error().message(), Catch::Contains("neither a character device nor a regular file"));
}

}  // namespace
}  // namespace keel::virtio
