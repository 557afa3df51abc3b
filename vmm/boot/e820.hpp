#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "memory/guest_memory.hpp"

namespace keel::vmm::boot {

// Entry types shared by the zero page's e820 table and the PVH memmap (same numbers in both ABIs).
enum class E820Type : std::uint32_t {
  kRam = 1,
  kReserved = 2,
  kAcpi = 3,
};

struct E820Entry {
  std::uint64_t addr = 0;
  std::uint64_t size = 0;
  E820Type type = E820Type::kRam;

  std::uint64_t end() const { return addr + size; }
};

// The guest's physical memory map, sorted by address: RAM regions with the legacy area
// [kEbdaStart, kHighMemoryStart) cut out and reported reserved (EBDA, VGA hole, ACPI tables at
// kAcpiStart), and the PCI ECAM reserved (Linux refuses MMCONFIG that e820 does not reserve).
std::vector<E820Entry> build_e820(std::span<const memory::RegionPlan> ram);
std::vector<E820Entry> build_e820(const memory::GuestMemory& mem);

}  // namespace keel::vmm::boot
