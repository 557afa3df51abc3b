#include "vmm/boot/cpu_state.hpp"

#include <array>

#include <catch2/catch.hpp>

#include "base/size.hpp"
#include "memory/layout.hpp"

namespace keel::vmm::boot {
namespace {

namespace layout = memory::layout;

// Walks the guest's 4-level page tables as the CPU would; returns the physical address or ~0.
std::uint64_t walk(const memory::GuestMemory& mem, std::uint64_t cr3, std::uint64_t va) {
  std::uint64_t table = cr3 & ~0xfffULL;
  for (int level = 3; level >= 0; --level) {
    const std::uint64_t index = (va >> (12 + 9 * level)) & 0x1ff;
    auto entry = mem.read_obj<std::uint64_t>(table + index * 8);
    REQUIRE(entry.ok());
    if ((*entry & 1) == 0) {
      return ~0ULL;
    }
    if (level == 1 && (*entry & 0x80) != 0) {  // 2 MiB page
      return (*entry & 0x000f'ffff'ffe0'0000ULL) | (va & 0x1f'ffff);
    }
    table = *entry & 0x000f'ffff'ffff'f000ULL;
  }
  return table | (va & 0xfff);
}

TEST_CASE("boot page tables identity-map the first GiB with 2 MiB pages") {
  auto mem = memory::GuestMemory::create(64 * kMiB);
  REQUIRE(mem.ok());
  REQUIRE(write_boot_cpu_tables(*mem).ok());
  kvm_sregs sregs{};
  setup_long_mode_sregs(sregs);
  for (std::uint64_t va :
       std::initializer_list<std::uint64_t>{0x0, layout::kBootParams, layout::kCmdlineStart,
                                            0x100200, 0x1234567, kIdentityMapEnd - 1}) {
    CHECK(walk(*mem, sregs.cr3, va) == va);
  }
  CHECK(walk(*mem, sregs.cr3, kIdentityMapEnd) == ~0ULL);
}

TEST_CASE("the GDT in memory holds the descriptors the segment registers cache") {
  auto mem = memory::GuestMemory::create(16 * kMiB);
  REQUIRE(mem.ok());
  REQUIRE(write_boot_cpu_tables(*mem).ok());
  auto gdt = mem->read_obj<std::array<std::uint64_t, kGdtEntries>>(layout::kGdtStart);
  REQUIRE(gdt.ok());
  CHECK((*gdt)[0] == 0);
  // The well-known flat descriptors: 32-bit code, 64-bit code, data.
  CHECK((*gdt)[kCode32Selector >> 3] == 0x00cf9b000000ffffULL);
  CHECK((*gdt)[kCode64Selector >> 3] == 0x00af9b000000ffffULL);
  CHECK((*gdt)[kDataSelector >> 3] == 0x00cf93000000ffffULL);
  // The GDT ends where the IDT starts.
  CHECK(layout::kGdtStart + kGdtEntries * 8 <= layout::kIdtStart);

  kvm_sregs lm{};
  setup_long_mode_sregs(lm);
  CHECK(gdt_entry(lm.cs) == (*gdt)[lm.cs.selector >> 3]);
  CHECK(gdt_entry(lm.ds) == (*gdt)[lm.ds.selector >> 3]);
  kvm_sregs pm{};
  setup_protected_mode_sregs(pm);
  CHECK(gdt_entry(pm.cs) == (*gdt)[pm.cs.selector >> 3]);
  CHECK(gdt_entry(pm.ss) == (*gdt)[pm.ss.selector >> 3]);
  CHECK(lm.gdt.limit + 1 == kGdtEntries * 8);
}

TEST_CASE("long-mode sregs follow the 64-bit boot protocol") {
  kvm_sregs s{};
  s.cr0 = 0x60000010;  // reset value: CD, NW, ET
  s.apic_base = 0xfee00900;
  setup_long_mode_sregs(s);
  CHECK((s.cr0 & 1) == 1);             // PE
  CHECK((s.cr0 & (1ULL << 31)) != 0);  // PG
  CHECK((s.cr0 & (3ULL << 29)) == 0);  // caches enabled
  CHECK(s.cr3 == layout::kPml4Start);
  CHECK((s.cr4 & (1ULL << 5)) != 0);  // PAE
  CHECK((s.efer & 0x500) == 0x500);   // LME | LMA
  CHECK(s.cs.selector == 0x10);       // __BOOT_CS
  CHECK(s.cs.l == 1);
  CHECK(s.cs.db == 0);
  CHECK(s.ds.selector == 0x18);  // __BOOT_DS
  CHECK(s.ss.selector == 0x18);
  CHECK(s.es.selector == 0x18);
  CHECK(s.tr.type == 11);
  CHECK(s.tr.present == 1);
  CHECK(s.apic_base == 0xfee00900);  // untouched
}

TEST_CASE("protected-mode sregs give PVH flat 32-bit segments without paging") {
  kvm_sregs s{};
  s.cr0 = 0x60000010;
  s.efer = 0x500;
  s.cr4 = 0x20;
  setup_protected_mode_sregs(s);
  CHECK((s.cr0 & 1) == 1);
  CHECK((s.cr0 & (1ULL << 31)) == 0);
  CHECK(s.efer == 0);
  CHECK(s.cr4 == 0);
  CHECK(s.cs.db == 1);
  CHECK(s.cs.l == 0);
  CHECK(s.cs.base == 0);
  CHECK(s.cs.limit == 0xffffffff);
  CHECK(s.cs.g == 1);
  CHECK(s.ds.limit == 0xffffffff);
  CHECK((s.ds.type & 0x2) != 0);  // writable
  CHECK(s.tr.type == 11);

  kvm_sregs via{};
  setup_boot_sregs(BootInfo{Protocol::kPvh, 0x1000000, layout::kPvhStartInfo}, via);
  CHECK(via.cs.selector == s.cs.selector);
  setup_boot_sregs(BootInfo{Protocol::kLinux64, 0x100200, layout::kBootParams}, via);
  CHECK(via.cs.l == 1);
}

TEST_CASE("boot_regs puts the boot structure where each protocol expects it") {
  const kvm_regs lin = boot_regs(BootInfo{Protocol::kLinux64, 0x100200, layout::kBootParams});
  CHECK(lin.rip == 0x100200);
  CHECK(lin.rsi == layout::kBootParams);
  CHECK(lin.rbx == 0);
  CHECK(lin.rflags == 2);
  CHECK(lin.rsp == layout::kBootStackTop);

  const kvm_regs pvh = boot_regs(BootInfo{Protocol::kPvh, 0x1000850, layout::kPvhStartInfo});
  CHECK(pvh.rip == 0x1000850);
  CHECK(pvh.rbx == layout::kPvhStartInfo);
  CHECK(pvh.rsi == 0);
  CHECK(pvh.rflags == 2);
}

}  // namespace
}  // namespace keel::vmm::boot
