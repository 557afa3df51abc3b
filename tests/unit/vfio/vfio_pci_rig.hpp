#pragma once

#include <linux/vfio.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "devices/bus.hpp"
#include "devices/interrupt_router.hpp"
#include "devices/memory_slots.hpp"
#include "devices/vfio/container_fd.hpp"
#include "devices/vfio/group.hpp"
#include "devices/vfio/vfio_pci_device.hpp"
#include "tests/unit/devices/recording_platform.hpp"
#include "tests/unit/vfio/fake_vfio_sys.hpp"

// What the VfioPciDevice tests share: recorders standing in for KVM's interrupt routing and
// memory slots, a builder for the PCI function the fake kernel serves, and a rig that opens it
// through a fake container and group and wires it to real buses.
namespace keel::vfio::testing {

using keel::testing::RecordingRouter;
using keel::testing::RecordingSlots;

// A 256-byte type 0 header (plus capabilities) the way the fake device holds it.
class ConfigBytes {
 public:
  ConfigBytes() : bytes_(256, 0) {}
  void set8(std::size_t at, std::uint8_t v) { bytes_.at(at) = v; }
  void set16(std::size_t at, std::uint16_t v);
  void set32(std::size_t at, std::uint32_t v);
  // Links a capability `id` at `at` behind the previous one (or the capabilities pointer).
  void add_cap(std::uint8_t id, std::uint8_t at);
  const std::vector<std::uint8_t>& bytes() const { return bytes_; }

 private:
  std::vector<std::uint8_t> bytes_;
  std::uint8_t last_cap_ = 0;
};

// One BAR as VFIO describes it: the region, and the BAR register's type bits in the config space.
struct FakeBar {
  std::uint64_t size = 0;       // 0: absent
  std::uint32_t type_bits = 0;  // PCI_BASE_ADDRESS_* low bits: I/O, 64-bit, prefetch
  bool mmappable = false;
  std::optional<std::vector<SparseMmapArea>> sparse;
  bool msix_mappable = false;
};

// A PCI function for the fake to serve: config space, BARs (a 64-bit BAR takes two slots of
// `bars`; leave the upper one absent), interrupts.
struct FakeFunction {
  std::string bdf = "0000:01:00.0";
  ConfigBytes config;
  std::uint64_t config_size = 4096;
  std::array<FakeBar, 6> bars{};
  std::uint32_t intx = 1, msi = 1, msix = 0;  // vector counts VFIO reports

  FakeDevice build() const;
};

// The test device: an Intel-like NIC at 8086:10d3, class 020000, revision 3, INTA.
//   BAR0  32-bit memory, 128 KiB, sparse mmap {0, 64 KiB} and {96 KiB, 32 KiB}
//   BAR1  I/O, 32 bytes
//   BAR2  64-bit prefetchable memory, 64 KiB, mmappable as a whole (MSIX_MAPPABLE); the MSI-X
//         table (4 vectors) at 0x8000 and the PBA at 0x9000
//   BAR4  32-bit memory, 4 KiB, not mmappable (every access traps)
//   MSI   at 0x50: 64-bit, per-vector mask, Multiple Message Capable = 4
//   MSI-X at 0x70: 4 vectors
// The ROM BAR and the interrupt line hold junk the device must hide.
inline constexpr std::uint8_t kMsiCap = 0x50;
inline constexpr std::uint8_t kMsixCap = 0x70;
inline constexpr std::uint64_t kMsixTable = 0x8000;
inline constexpr std::uint64_t kMsixPba = 0x9000;
FakeFunction nic();

// Where the rig's BarAllocator puts BARs (windows start unaligned on purpose).
inline constexpr std::uint64_t kMmio32Start = 0xc000'1000, kMmio32End = 0xe000'0000;
inline constexpr std::uint64_t kMmio64Start = 0x40'0000'0800, kMmio64End = 0x48'0000'0000;
inline constexpr std::uint64_t kIoStart = 0xc001, kIoEnd = 0x10000;
// Where nic()'s BARs land with them.
inline constexpr std::uint64_t kNicBar0 = 0xc002'0000;
inline constexpr std::uint64_t kNicBar1 = 0xc020;
inline constexpr std::uint64_t kNicBar2 = 0x40'0001'0000;
inline constexpr std::uint64_t kNicBar4 = 0xc004'0000;

struct PassthroughRig {
  explicit PassthroughRig(const FakeFunction& function, std::uint8_t slot = 3);

  // VfioPciDevice::create with the rig's wiring (opens the device fd anew each time).
  Result<std::shared_ptr<VfioPciDevice>> create();

  // Config space accessors as the PCI root would call them.
  static std::uint32_t cfg_read(VfioPciDevice& d, std::uint16_t offset, std::size_t size = 4);
  static void cfg_write(VfioPciDevice& d, std::uint16_t offset, std::uint32_t value,
                        std::size_t size = 4);
  // MMIO / port I/O through the real buses; reads of nothing return nullopt.
  std::optional<std::uint64_t> mmio_read(std::uint64_t addr, std::size_t size = 4) const;
  bool mmio_write(std::uint64_t addr, std::uint64_t value, std::size_t size = 4);
  std::optional<std::uint64_t> pio_read(std::uint64_t addr, std::size_t size = 4) const;
  // The device's own config bytes (what reached it).
  std::uint32_t device_config(std::uint16_t offset, std::size_t size = 4) const;
  // SET_IRQS calls for `index` that the fake accepted, since call number `from`.
  std::vector<FakeIrqSet> accepted_sets(std::uint32_t index, std::size_t from = 0) const;

  std::string bdf;
  std::shared_ptr<FakeVfioSys> fake = std::make_shared<FakeVfioSys>();
  std::optional<ContainerFd> container;
  std::optional<Group> group;
  RecordingRouter router;
  RecordingSlots slots;
  devices::Bus mmio{"mmio"}, pio{"pio"};
  std::unique_ptr<pci::Platform> platform;
  std::uint8_t pci_slot;
};

}  // namespace keel::vfio::testing
