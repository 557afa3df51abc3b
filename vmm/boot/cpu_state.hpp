#pragma once

#include <linux/kvm.h>

#include <cstdint>

#include "base/result.hpp"
#include "memory/guest_memory.hpp"
#include "vmm/boot/boot_info.hpp"

namespace keel::vmm::boot {

// The boot GDT at layout::kGdtStart: four entries fill the 32 bytes before kIdtStart.
// 0x10 and 0x18 are the __BOOT_CS/__BOOT_DS selectors the 64-bit boot protocol names.
inline constexpr std::uint16_t kCode32Selector = 0x08;  // flat 32-bit code, PVH entry
inline constexpr std::uint16_t kCode64Selector = 0x10;  // 64-bit code
inline constexpr std::uint16_t kDataSelector = 0x18;    // flat 32-bit data, both protocols
// TR must hold a usable busy TSS for VM entry, but nothing loads it from the GDT before the
// kernel installs its own, so its descriptor lives only in the segment cache (index 4, past the
// four entries that fit).
inline constexpr std::uint16_t kTssSelector = 0x20;
inline constexpr int kGdtEntries = 4;

// The boot page tables identity-map [0, kIdentityMapEnd) with 2 MiB pages: the kernel, the zero
// page and the command line must lie below it for the 64-bit entry.
inline constexpr std::uint64_t kIdentityMapEnd = 0x4000'0000;  // 1 GiB

// The GDT entry (a 64-bit descriptor) for `seg`; exposed so tests can check the two agree.
std::uint64_t gdt_entry(const kvm_segment& seg);

// Writes the GDT, an empty IDT and the identity page tables into low guest memory.
Status write_boot_cpu_tables(const memory::GuestMemory& mem);

// Long mode for the bzImage 64-bit entry: CS=0x10 (L=1), data segments 0x18, paging on with
// CR3 = layout::kPml4Start, PAE, EFER.LME|LMA. Fields unrelated to boot (APIC base) are kept.
void setup_long_mode_sregs(kvm_sregs& sregs);
// Flat 32-bit protected mode for the PVH entry: CS=0x08, data 0x18, CR0.PE, paging off.
void setup_protected_mode_sregs(kvm_sregs& sregs);
// The one of the two that `info.protocol` needs.
void setup_boot_sregs(const BootInfo& info, kvm_sregs& sregs);

// RIP = entry, RFLAGS = 0x2 (interrupts off), RSP = layout::kBootStackTop, and the boot structure
// in RSI (bzImage) or RBX (PVH).
kvm_regs boot_regs(const BootInfo& info);

}  // namespace keel::vmm::boot
