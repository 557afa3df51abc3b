// A passed-through PCI function as a hostile guest drives it: configuration-space reads and
// writes of 1, 2 and 4 bytes anywhere in the 4 KiB (BAR sizing and relocation, command
// register, the ROM BAR, MSI and MSI-X capabilities, the device's own registers), and MMIO and
// port accesses wherever its BARs currently are, over the fake VFIO seam. Properties checked
// after every operation:
//   - nothing crashes, overflows or leaks (ASan, UBSan);
//   - what Keel emulates reads back as emulated, whatever was written: the expansion ROM BAR
//     stays 0 (hidden), and each memory BAR keeps its size alignment and type bits (BAR0 32-bit
//     128 KiB, BAR2 64-bit prefetchable 64 KiB, BAR4 32-bit 4 KiB);
//   - no KVM memory slot the device holds is empty.
// (Registers Keel passes through, such as the IDs, go to the fake device, which keeps writes a
// real device would ignore: they are not checked.)
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>

#include "base/log.hpp"
#include "tests/fuzz/api/fuzz_checks.hpp"
#include "tests/unit/vfio/vfio_pci_rig.hpp"

namespace t = keel::vfio::testing;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static bool quiet = [] {
    keel::log::set_level(keel::log::Level::kError);
    return true;
  }();
  (void)quiet;
  static const t::FakeFunction function = t::nic();
  FuzzedDataProvider in(data, size);
  t::PassthroughRig rig(function);
  auto device = rig.create();
  KEEL_FUZZ_CHECK(device.ok());
  keel::vfio::VfioPciDevice& d = **device;
  // Addresses worth aiming at: where the BARs start out, and the top of each window.
  static constexpr std::uint64_t kBases[] = {t::kNicBar0,     t::kNicBar2,
                                             t::kNicBar4,     t::kNicBar2 + t::kMsixTable,
                                             t::kMmio32Start, t::kMmio64Start};
  while (in.remaining_bytes() > 0) {
    const std::size_t n = in.PickValueInArray({std::size_t{1}, std::size_t{2}, std::size_t{4}});
    switch (in.ConsumeIntegralInRange<int>(0, 5)) {
      case 0:
      case 1: {  // config write, biased to the header and capabilities
        const auto off = static_cast<std::uint16_t>(
            (in.ConsumeBool() ? in.ConsumeIntegralInRange<unsigned>(0, 0xff)
                              : in.ConsumeIntegralInRange<unsigned>(0, 0xfff)) &
            ~static_cast<unsigned>(n - 1));
        t::PassthroughRig::cfg_write(d, off, in.ConsumeIntegral<std::uint32_t>(), n);
        break;
      }
      case 2:
        (void)t::PassthroughRig::cfg_read(
            d, static_cast<std::uint16_t>(in.ConsumeIntegralInRange<unsigned>(0, 0xfff) & ~3U), 4);
        break;
      case 3: {  // MMIO write where a BAR may be
        const std::uint64_t addr = in.PickValueInArray(kBases) +
                                   (in.ConsumeIntegralInRange<std::uint64_t>(0, 0x2000) & ~3ULL);
        (void)rig.mmio_write(addr, in.ConsumeIntegral<std::uint32_t>(), 4);
        break;
      }
      case 4:
        (void)rig.mmio_read(in.PickValueInArray(kBases) +
                            (in.ConsumeIntegralInRange<std::uint64_t>(0, 0x2000) & ~3ULL));
        break;
      default:
        (void)rig.pio_read(t::kNicBar1 + in.ConsumeIntegralInRange<std::uint64_t>(0, 0x1f), 1);
        break;
    }
    KEEL_FUZZ_CHECK(t::PassthroughRig::cfg_read(d, 0x30) == 0);
    KEEL_FUZZ_CHECK((t::PassthroughRig::cfg_read(d, 0x10) & 0x1ffff) == 0);
    KEEL_FUZZ_CHECK((t::PassthroughRig::cfg_read(d, 0x18) & 0xffff) == 0xc);
    KEEL_FUZZ_CHECK((t::PassthroughRig::cfg_read(d, 0x20) & 0xfff) == 0);
    for (const auto& [slot, s] : rig.slots.slots) {
      KEEL_FUZZ_CHECK(s.size > 0);
    }
  }
  return 0;
}
