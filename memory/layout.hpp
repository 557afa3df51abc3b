#pragma once

#include <cstdint>
#include <utility>

// The guest-physical address map, in one place. Everything that places something in the guest
// (RAM, boot structures, ACPI tables, MMIO windows, ECAM) takes its address from here.
namespace keel::memory::layout {

// ---- Low memory used during boot (all below 1 MiB, inside the first RAM region) ----
inline constexpr std::uint64_t kGdtStart = 0x500;
inline constexpr std::uint64_t kIdtStart = 0x520;
inline constexpr std::uint64_t kPvhStartInfo = 0x6000;       // hvm_start_info + memmap
inline constexpr std::uint64_t kBootParams = 0x7000;         // Linux zero page
inline constexpr std::uint64_t kPml4Start = 0x9000;          // identity page tables
inline constexpr std::uint64_t kPdpteStart = 0xa000;
inline constexpr std::uint64_t kPdeStart = 0xb000;
inline constexpr std::uint64_t kBootStackTop = 0x8ff0;
inline constexpr std::uint64_t kCmdlineStart = 0x20000;
inline constexpr std::uint64_t kCmdlineMaxSize = 0x10000;    // 64 KiB
inline constexpr std::uint64_t kEbdaStart = 0x9fc00;         // end of usable low RAM
inline constexpr std::uint64_t kLegacyHoleStart = 0xa0000;   // VGA + BIOS area, not RAM
inline constexpr std::uint64_t kAcpiStart = 0xe0000;         // RSDP is found by scanning here
inline constexpr std::uint64_t kAcpiMaxSize = 0x1f000;       // up to 0xfefff (the reset vector's page after)
// Where a real-mode jump to the BIOS reset vector (f000:fff0) lands. Linux reboots through it
// when ACPI is hardware-reduced (its BOOT_EFI -> BOOT_BIOS fallback); Keel puts a stub there.
inline constexpr std::uint64_t kResetVector = 0xffff0;
inline constexpr std::uint64_t kHighMemoryStart = 0x100000;  // 1 MiB: kernels load here

// ---- The 32-bit hole: everything between the end of low RAM and 4 GiB ----
inline constexpr std::uint64_t kRam32End = 0xc000'0000;      // low RAM ends at 3 GiB at most
inline constexpr std::uint64_t kMmio32Start = 0xc000'0000;   // 32-bit PCI BARs
inline constexpr std::uint64_t kMmio32Size = 0x2000'0000;    // 512 MiB
inline constexpr std::uint64_t kEcamStart = 0xe000'0000;     // PCI ECAM, bus 0 only
inline constexpr std::uint64_t kEcamSize = 0x10'0000;        // 1 MiB = 32 devices x 8 fn x 4 KiB
// PCI segments (cloud-hypervisor's platform.num_pci_segments): each has a bus 0 of its own, its
// ECAM after segment 0's; the whole area is reserved (e820, the DSDT) whatever the count.
inline constexpr std::uint16_t kMaxPciSegments = 16;
inline constexpr std::uint64_t kEcamAreaSize = kEcamSize * kMaxPciSegments;  // to 0xe0ff'ffff
constexpr std::uint64_t ecam_start(std::uint16_t segment) { return kEcamStart + segment * kEcamSize; }
inline constexpr std::uint64_t kIoapicStart = 0xfec0'0000;
inline constexpr std::uint64_t kLapicStart = 0xfee0'0000;
inline constexpr std::uint64_t kMsiWindowStart = 0xfee0'0000;  // an IOVA hole on x86
inline constexpr std::uint64_t kMsiWindowEnd = 0xfeef'ffff;

// ---- Above 4 GiB ----
inline constexpr std::uint64_t kRam64Start = 0x1'0000'0000;  // RAM beyond kRam32End goes here
inline constexpr std::uint64_t kMmio64Align = 0x4000'0000;   // 64-bit BAR window starts 1 GiB-aligned
inline constexpr std::uint64_t kMmio64Size = 0x40'0000'0000;  // 256 GiB

// ---- Port I/O ----
inline constexpr std::uint16_t kCom1Port = 0x3f8;
inline constexpr std::uint16_t kCom1Irq = 4;
inline constexpr std::uint16_t kI8042Port = 0x60;           // data 0x60, command/status 0x64
inline constexpr std::uint16_t kPciConfigAddressPort = 0xcf8;  // 0xcf8..0xcff
inline constexpr std::uint32_t kPciIoStart = 0xc000;           // PCI I/O BARs, above the legacy
inline constexpr std::uint32_t kPciIoEnd = 0x10000;            //   ports, to the end of port space
inline constexpr std::uint16_t kAcpiPmPort = 0x600;           // hardware-reduced ACPI registers:
inline constexpr std::uint16_t kAcpiPmSize = 4;
inline constexpr std::uint8_t kAcpiSleepControlOffset = 0;     //   FADT SLEEP_CONTROL_REG
inline constexpr std::uint8_t kAcpiSleepStatusOffset = 1;      //   FADT SLEEP_STATUS_REG
inline constexpr std::uint8_t kAcpiResetOffset = 2;            //   FADT RESET_REG
inline constexpr std::uint8_t kAcpiResetValue = 1;             //   FADT RESET_VALUE
inline constexpr std::uint8_t kAcpiS5SleepType = 5;            //   SLP_TYP of \_S5 in the DSDT
inline constexpr std::uint32_t kAcpiSciIrq = 9;
// PCI hot-plug (devices/pci/acpi_hotplug.hpp, the DSDT's \_SB_.GED_): three 32-bit registers,
// slots announced (PCIU, cleared by reading), slots to eject (PCID), slots ejected (B0EJ, write),
// and the Generic Event Device's interrupt, an ISA line nothing else uses.
inline constexpr std::uint16_t kPciHotplugPort = 0x610;
inline constexpr std::uint16_t kPciHotplugSize = 12;
inline constexpr std::uint8_t kPciHotplugUpOffset = 0;
inline constexpr std::uint8_t kPciHotplugDownOffset = 4;
inline constexpr std::uint8_t kPciHotplugEjectOffset = 8;
inline constexpr std::uint32_t kGedIrq = 5;
// The power button (devices/power_button.hpp, the DSDT's \_SB_.PWRB): one 32-bit register,
// PBST, bit 0 set when the button was pressed (cleared by reading); it raises the GED's line too.
inline constexpr std::uint16_t kPowerButtonPort = 0x61c;
inline constexpr std::uint16_t kPowerButtonSize = 4;
// ACPI hot-plug slots (devices/acpi_slots.hpp): one 32-bit register per slot, these bits.
inline constexpr std::uint32_t kSlotEnabled = 1U << 0;    // read: it is there (_STA)
inline constexpr std::uint32_t kSlotInserting = 1U << 1;  // read: announced; write: seen
inline constexpr std::uint32_t kSlotRemoving = 1U << 2;   // read: to eject; write: seen
inline constexpr std::uint32_t kSlotEject = 1U << 3;      // write: the guest let it go (_EJ0)
// vCPU hot-plug (the DSDT's \_SB_.CPxx): a slot per possible vCPU at kCpuHotplugPort + 4 * id;
// 254 vCPUs end at 0x13f8.
inline constexpr std::uint16_t kCpuHotplugPort = 0x1000;
// Memory hot-plug by ACPI (the DSDT's \_SB_.MBxx, PNP0C80 memory devices): a slot per DIMM of
// the hot-pluggable region at kMemoryHotplugPort + 4 * n; 64 at most.
inline constexpr std::uint16_t kMemoryHotplugPort = 0x1400;
inline constexpr std::uint32_t kMaxMemorySlots = 64;

// ---- Shared by the ACPI tables (vmm/boot) and the devices they describe ----
// PCI INTx: slot `slot` pin `pin` (0 = INTA .. 3 = INTD) raises IOAPIC GSI 16..23, swizzled so
// neighbouring slots spread over the eight lines. The DSDT _PRT and the PCI code both use this, so
// the guest's idea of a device's line and the line the VMM raises cannot drift apart. _PRT entries
// without a link device are level-triggered, active-low.
inline constexpr std::uint32_t kPciIntxGsiBase = 16;
inline constexpr std::uint32_t kPciIntxGsiCount = 8;
constexpr std::uint32_t pci_intx_gsi(std::uint32_t slot, std::uint32_t pin) {
  return kPciIntxGsiBase + (slot + pin) % kPciIntxGsiCount;
}

// The first kMmio64Align boundary at or above `end`, never below 4 GiB (a small guest's RAM ends
// below the 32-bit hole, which must stay out of what comes above RAM).
constexpr std::uint64_t above_ram(std::uint64_t end) {
  const std::uint64_t floor = end > kRam64Start ? end : kRam64Start;
  return (floor + kMmio64Align - 1) / kMmio64Align * kMmio64Align;
}
// The hot-pluggable memory region (virtio-mem), when the VM has one: above boot RAM.
constexpr std::uint64_t hotplug_start(std::uint64_t ram_end) { return above_ram(ram_end); }
// The 64-bit PCI window: above everything the guest may have as memory (`top`: the end of boot
// RAM, or of the hot-pluggable region).
constexpr std::uint64_t mmio64_start(std::uint64_t top) { return above_ram(top); }
// Segment `segment`'s part of the 64-bit window, with `segments` in all: [first, second).
// Segments 1 and up hold only virtio functions (32 KiB BARs): 1 GiB each at the top of the
// window; segment 0 (passthrough GPUs with 128 GiB BARs among them) keeps the rest, and alone
// has the 32-bit window and the I/O ports.
inline constexpr std::uint64_t kSegmentMmio64Size = std::uint64_t{1} << 30;
constexpr std::pair<std::uint64_t, std::uint64_t> mmio64_window(std::uint64_t top,
                                                                std::uint16_t segment,
                                                                std::uint16_t segments) {
  const std::uint64_t start = mmio64_start(top);
  const std::uint64_t others = kSegmentMmio64Size * (segments > 1 ? segments - 1U : 0U);
  if (segment == 0) {
    return {start, start + kMmio64Size - others};
  }
  const std::uint64_t at = start + kMmio64Size - others + (segment - 1U) * kSegmentMmio64Size;
  return {at, at + kSegmentMmio64Size};
}

// What the guest writes to the sleep control register to power off (hardware-reduced ACPI):
// SLP_TYP of \_S5 in bits 4:2 and SLP_EN in bit 5.
inline constexpr std::uint8_t kAcpiSleepTypeShift = 2;
inline constexpr std::uint8_t kAcpiSleepEnable = 1U << 5;
inline constexpr std::uint8_t kAcpiS5SleepControlValue =
    static_cast<std::uint8_t>((kAcpiS5SleepType << kAcpiSleepTypeShift) | kAcpiSleepEnable);

}  // namespace keel::memory::layout
