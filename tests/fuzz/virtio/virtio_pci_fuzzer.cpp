// The virtio-pci transport with the virtio-iommu device behind it, driven as a hostile guest
// would: BAR and configuration-space accesses of every size at offsets near the registers,
// arbitrary bytes written over the rings and buffers in guest memory, and queue notifications;
// a "bring-up" operation walks the normal driver handshake so that inputs reach the request
// path quickly. Properties checked after every operation:
//   - nothing crashes, leaks or overflows (ASan, UBSan);
//   - while the device needs a reset, a notification handles no request.
#include <fuzzer/FuzzedDataProvider.h>
#include <linux/virtio_config.h>
#include <linux/virtio_pci.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "base/log.hpp"
#include "devices/virtio/virtio_iommu.hpp"
#include "devices/virtio/virtio_iommu_device.hpp"
#include "devices/virtio/virtio_pci.hpp"
#include "tests/fuzz/api/fuzz_checks.hpp"
#include "tests/unit/devices/recording_platform.hpp"

namespace {

namespace L = keel::virtio::pci_layout;
using keel::Result;
using keel::Status;
using C = virtio_pci_common_cfg;

constexpr std::uint64_t kBar = 0xc0000000;
constexpr std::uint64_t kRam = 16 << 20;
constexpr std::uint64_t kDesc = 0x1000, kAvail = 0x2000, kUsed = 0x3000;

class Backend final : public keel::devices::DmaMappingBackend {
 public:
  bool has_endpoint(std::uint32_t endpoint) const override { return endpoint == 8; }
  keel::devices::DmaStatus map(std::uint32_t, const keel::devices::DmaMapping&) override {
    return keel::devices::DmaStatus::kOk;
  }
  keel::devices::DmaStatus unmap(std::uint32_t, const keel::devices::DmaMapping&) override {
    return keel::devices::DmaStatus::kOk;
  }
};

struct Rig {
  keel::memory::GuestMemory mem;
  keel::devices::Bus mmio{"mmio"}, pio{"pio"};
  keel::testing::RecordingRouter router;
  keel::testing::RecordingSlots slots;
  std::unique_ptr<keel::pci::Platform> platform;
  Backend backend;
  std::shared_ptr<keel::virtio::VirtioPciDevice> dev;

  explicit Rig(keel::memory::GuestMemory m) : mem(std::move(m)) {
    // The transport's BAR is the first in the 64-bit window, at kBar.
    auto p = keel::pci::Platform::create(pio, mmio, router, slots,
                                         {{0x1000'0000, 0x2000'0000}, {kBar, kBar + 0x10'0000}, {0xc000, 0x10000}});
    KEEL_FUZZ_CHECK(p.ok());
    platform = std::move(p).value();
    auto iommu = keel::virtio::VirtioIommu::create({}, backend);
    KEEL_FUZZ_CHECK(iommu.ok());
    auto d = keel::virtio::VirtioPciDevice::create(
        std::make_unique<keel::virtio::VirtioIommuDevice>(std::move(iommu).value()), mem, *platform);
    KEEL_FUZZ_CHECK(d.ok());
    KEEL_FUZZ_CHECK(d.value()->bar_address() == kBar);
    dev = std::move(d).value();
    std::uint8_t command[2] = {0x6, 0};
    dev->write_config(0x04, command);
  }
  void write(std::uint64_t off, std::uint64_t v, std::size_t size) {
    std::uint8_t b[8];
    std::memcpy(b, &v, 8);
    (void)mmio.write(kBar + off, std::span<const std::uint8_t>(b, size));
  }
  void bring_up() {
    std::uint8_t msix[2] = {0x00, 0x80};
    dev->write_config(0x98 + 2, msix);
    write(offsetof(C, device_status), 0, 1);
    write(offsetof(C, device_status), 3, 1);
    write(offsetof(C, guest_feature_select), 1, 4);
    write(offsetof(C, guest_feature), 1, 4);
    write(offsetof(C, device_status), 0xb, 1);
    write(offsetof(C, queue_select), 0, 2);
    write(offsetof(C, queue_size), 16, 2);
    write(offsetof(C, queue_desc_lo), kDesc, 8);
    write(offsetof(C, queue_avail_lo), kAvail, 8);
    write(offsetof(C, queue_used_lo), kUsed, 8);
    write(offsetof(C, queue_enable), 1, 2);
    write(offsetof(C, device_status), 0xf, 1);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static bool quiet = [] {
    keel::log::set_level(keel::log::Level::kError);
    return true;
  }();
  (void)quiet;
  FuzzedDataProvider in(data, size);
  auto m = keel::memory::GuestMemory::create(kRam);
  KEEL_FUZZ_CHECK(m.ok());
  Rig rig(std::move(m).value());
  static constexpr std::uint64_t kOffsets[] = {L::kCommon, L::kIsr,        L::kDevice,
                                               L::kNotify, L::kMsixTable,  L::kMsixPba,
                                               0x6000,     L::kBarSize - 8};
  static constexpr std::size_t kSizes[] = {1, 2, 4, 8};
  while (in.remaining_bytes() > 0) {
    const std::uint64_t handled_before = rig.dev->counters()["chains_handled"];
    const bool needed_reset = (rig.dev->device_status() & VIRTIO_CONFIG_S_NEEDS_RESET) != 0;
    bool notified = false;
    switch (in.ConsumeIntegralInRange<int>(0, 6)) {
      case 0: {  // BAR write
        const std::uint64_t off =
            in.PickValueInArray(kOffsets) + in.ConsumeIntegralInRange<std::uint64_t>(0, 0x40);
        const std::size_t n = in.PickValueInArray(kSizes);
        const std::uint64_t value = in.ConsumeIntegral<std::uint64_t>();
        rig.write(off, value, n);
        notified = off >= L::kNotify && off < L::kNotify + 0x1000;
        break;
      }
      case 1: {  // BAR read
        std::uint8_t b[8];
        const std::uint64_t off =
            in.PickValueInArray(kOffsets) + in.ConsumeIntegralInRange<std::uint64_t>(0, 0x40);
        (void)rig.mmio.read(kBar + off, std::span(b, in.PickValueInArray(kSizes)));
        break;
      }
      case 2: {  // configuration space write, within a dword as the root guarantees
        const auto off =
            static_cast<std::uint16_t>(in.ConsumeIntegralInRange<unsigned>(0, 0x3ff) & ~3U);
        const std::size_t n = in.PickValueInArray({std::size_t{1}, std::size_t{2}, std::size_t{4}});
        const std::uint32_t value = in.ConsumeIntegral<std::uint32_t>();
        std::uint8_t b[4];
        std::memcpy(b, &value, 4);
        rig.dev->write_config(off, std::span<const std::uint8_t>(b, n));
        break;
      }
      case 3: {  // configuration space read
        std::uint8_t b[4];
        rig.dev->read_config(
            static_cast<std::uint16_t>(in.ConsumeIntegralInRange<unsigned>(0, 0x3ff) & ~3U), b);
        break;
      }
      case 4: {  // the guest scribbles over its rings and buffers
        const std::uint64_t at = in.ConsumeIntegralInRange<std::uint64_t>(0, 0x1ffff);
        std::vector<std::uint8_t> bytes =
            in.ConsumeBytes<std::uint8_t>(in.ConsumeIntegralInRange<std::size_t>(1, 64));
        if (!bytes.empty() && at + bytes.size() <= 0x20000) {
          KEEL_FUZZ_CHECK(rig.mem.write(at, bytes).ok());
        }
        break;
      }
      case 5:
        rig.write(L::kNotify, 0, 2);
        notified = true;
        break;
      default:
        rig.bring_up();
        break;
    }
    if (needed_reset && notified) {
      KEEL_FUZZ_CHECK(rig.dev->counters()["chains_handled"] == handled_before);
    }
  }
  return 0;
}
