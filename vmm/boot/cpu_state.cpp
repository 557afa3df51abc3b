#include "vmm/boot/cpu_state.hpp"

#include <array>

#include "memory/layout.hpp"

namespace keel::vmm::boot {

namespace layout = memory::layout;

namespace {

constexpr std::uint64_t kCr0Pe = 1ULL << 0;
constexpr std::uint64_t kCr0Et = 1ULL << 4;
constexpr std::uint64_t kCr0Pg = 1ULL << 31;
constexpr std::uint64_t kCr4Pae = 1ULL << 5;
constexpr std::uint64_t kEferLme = 1ULL << 8;
constexpr std::uint64_t kEferLma = 1ULL << 10;

constexpr std::uint8_t kTypeCodeExecReadAccessed = 0xb;
constexpr std::uint8_t kTypeDataReadWriteAccessed = 0x3;
constexpr std::uint8_t kTypeBusyTss = 0xb;
constexpr std::uint32_t kTssLimit = 0x67;  // a 104-byte TSS without I/O bitmap

constexpr std::uint64_t kPagePresentWritable = 0x3;
constexpr std::uint64_t kPageSize2M = 0x80;
constexpr std::uint64_t kEntriesPerTable = 512;
// An empty IDT: an exception before the kernel installs its own triple-faults, which KVM
// reports as a shutdown exit instead of the guest running off into garbage.
constexpr std::uint64_t kIdtSize = 8;

kvm_segment flat_segment(std::uint16_t selector, std::uint8_t type, bool code64) {
  kvm_segment seg{};
  seg.base = 0;
  seg.limit = 0xffff'ffff;
  seg.selector = selector;
  seg.type = type;
  seg.present = 1;
  seg.dpl = 0;
  seg.db = code64 ? 0 : 1;  // L=1 requires D=0
  seg.s = 1;
  seg.l = code64 ? 1 : 0;
  seg.g = 1;
  return seg;
}

kvm_segment code32_segment() {
  return flat_segment(kCode32Selector, kTypeCodeExecReadAccessed, false);
}
kvm_segment code64_segment() {
  return flat_segment(kCode64Selector, kTypeCodeExecReadAccessed, true);
}
kvm_segment data_segment() {
  return flat_segment(kDataSelector, kTypeDataReadWriteAccessed, false);
}

kvm_segment tss_segment() {
  kvm_segment seg{};
  seg.selector = kTssSelector;
  seg.limit = kTssLimit;
  seg.type = kTypeBusyTss;
  seg.present = 1;
  return seg;
}

void set_common_segments(kvm_sregs& sregs, const kvm_segment& code) {
  const kvm_segment data = data_segment();
  sregs.cs = code;
  sregs.ds = data;
  sregs.es = data;
  sregs.fs = data;
  sregs.gs = data;
  sregs.ss = data;
  sregs.tr = tss_segment();
  sregs.gdt.base = layout::kGdtStart;
  sregs.gdt.limit = static_cast<std::uint16_t>(kGdtEntries * sizeof(std::uint64_t) - 1);
  sregs.idt.base = layout::kIdtStart;
  sregs.idt.limit = static_cast<std::uint16_t>(kIdtSize - 1);
}

}  // namespace

std::uint64_t gdt_entry(const kvm_segment& seg) {
  const std::uint64_t limit = seg.g != 0 ? seg.limit >> 12 : seg.limit;
  const std::uint64_t base = seg.base;
  const std::uint64_t access = (seg.type & 0xfULL) | (static_cast<std::uint64_t>(seg.s & 1) << 4) |
                               (static_cast<std::uint64_t>(seg.dpl & 3) << 5) |
                               (static_cast<std::uint64_t>(seg.present & 1) << 7);
  const std::uint64_t flags = (static_cast<std::uint64_t>(seg.avl & 1) << 0) |
                              (static_cast<std::uint64_t>(seg.l & 1) << 1) |
                              (static_cast<std::uint64_t>(seg.db & 1) << 2) |
                              (static_cast<std::uint64_t>(seg.g & 1) << 3);
  return (limit & 0xffffULL) | ((base & 0xff'ffffULL) << 16) | (access << 40) |
         (((limit >> 16) & 0xfULL) << 48) | (flags << 52) | (((base >> 24) & 0xffULL) << 56);
}

Status write_boot_cpu_tables(const memory::GuestMemory& mem) {
  const std::array<std::uint64_t, kGdtEntries> gdt{
      0, gdt_entry(code32_segment()), gdt_entry(code64_segment()), gdt_entry(data_segment())};
  KEEL_TRY_STATUS(mem.write_obj(layout::kGdtStart, gdt));
  KEEL_TRY_STATUS(mem.fill(layout::kIdtStart, 0, kIdtSize));

  std::array<std::uint64_t, kEntriesPerTable> pml4{};
  pml4[0] = layout::kPdpteStart | kPagePresentWritable;
  std::array<std::uint64_t, kEntriesPerTable> pdpte{};
  pdpte[0] = layout::kPdeStart | kPagePresentWritable;
  std::array<std::uint64_t, kEntriesPerTable> pde{};
  for (std::uint64_t i = 0; i < kEntriesPerTable; ++i) {
    pde[i] = (i << 21) | kPageSize2M | kPagePresentWritable;
  }
  KEEL_TRY_STATUS(mem.write_obj(layout::kPml4Start, pml4));
  KEEL_TRY_STATUS(mem.write_obj(layout::kPdpteStart, pdpte));
  return mem.write_obj(layout::kPdeStart, pde);
}

void setup_long_mode_sregs(kvm_sregs& sregs) {
  set_common_segments(sregs, code64_segment());
  sregs.cr0 = kCr0Pe | kCr0Et | kCr0Pg;  // CD/NW from reset cleared: caches on
  sregs.cr3 = layout::kPml4Start;
  sregs.cr4 = kCr4Pae;
  sregs.efer = kEferLme | kEferLma;
}

void setup_protected_mode_sregs(kvm_sregs& sregs) {
  set_common_segments(sregs, code32_segment());
  sregs.cr0 = kCr0Pe | kCr0Et;
  sregs.cr3 = 0;
  sregs.cr4 = 0;
  sregs.efer = 0;
}

void setup_boot_sregs(const BootInfo& info, kvm_sregs& sregs) {
  if (info.protocol == Protocol::kPvh) {
    setup_protected_mode_sregs(sregs);
  } else {
    setup_long_mode_sregs(sregs);
  }
}

kvm_regs boot_regs(const BootInfo& info) {
  kvm_regs regs{};
  regs.rflags = 0x2;  // bit 1 is reserved-one; IF clear
  regs.rip = info.entry;
  regs.rsp = layout::kBootStackTop;
  regs.rbp = layout::kBootStackTop;
  if (info.protocol == Protocol::kPvh) {
    regs.rbx = info.boot_struct_gpa;
  } else {
    regs.rsi = info.boot_struct_gpa;
  }
  return regs;
}

}  // namespace keel::vmm::boot
