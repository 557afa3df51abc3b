#pragma once

#include <cstdint>

// The PVH boot ABI, as Xen's public header xen/include/public/arch-x86/hvm/start_info.h defines
// it (struct hvm_start_info, hvm_modlist_entry, hvm_memmap_table_entry). Linux reads these when
// entered at its XEN_ELFNOTE_PHYS32_ENTRY with EBX pointing at HvmStartInfo.
namespace keel::vmm::boot {

inline constexpr std::uint32_t kHvmStartMagic = 0x336ec578;  // "xEn3" with 0x80 set in "E"
inline constexpr std::uint32_t kHvmStartInfoVersion = 1;     // version 1 adds the memmap

struct HvmStartInfo {
  std::uint32_t magic = kHvmStartMagic;
  std::uint32_t version = kHvmStartInfoVersion;
  std::uint32_t flags = 0;
  std::uint32_t nr_modules = 0;
  std::uint64_t modlist_paddr = 0;  // array of HvmModlistEntry
  std::uint64_t cmdline_paddr = 0;  // NUL-terminated
  std::uint64_t rsdp_paddr = 0;
  std::uint64_t memmap_paddr = 0;  // array of HvmMemmapTableEntry (version 1)
  std::uint32_t memmap_entries = 0;
  std::uint32_t reserved = 0;
};
static_assert(sizeof(HvmStartInfo) == 56);

struct HvmModlistEntry {
  std::uint64_t paddr = 0;
  std::uint64_t size = 0;
  std::uint64_t cmdline_paddr = 0;
  std::uint64_t reserved = 0;
};
static_assert(sizeof(HvmModlistEntry) == 32);

// `type` uses the e820 numbers (XEN_HVM_MEMMAP_TYPE_RAM = 1, _RESERVED = 2, _ACPI = 3).
struct HvmMemmapTableEntry {
  std::uint64_t addr = 0;
  std::uint64_t size = 0;
  std::uint32_t type = 0;
  std::uint32_t reserved = 0;
};
static_assert(sizeof(HvmMemmapTableEntry) == 24);

}  // namespace keel::vmm::boot
