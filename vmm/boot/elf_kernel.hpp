#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.hpp"

namespace keel::vmm::boot {

// Xen's ELF note (name "Xen") whose descriptor is the 32-bit physical PVH entry point.
inline constexpr std::uint32_t kXenElfNotePhys32Entry = 18;

// One PT_LOAD segment, bounds-checked against the file.
struct ElfLoadSegment {
  std::uint64_t file_offset = 0;
  std::uint64_t file_size = 0;
  std::uint64_t paddr = 0;
  std::uint64_t mem_size = 0;  // >= file_size; the rest is zero-filled
};

struct PvhElfKernel {
  std::vector<ElfLoadSegment> segments;
  std::uint32_t entry = 0;        // from XEN_ELFNOTE_PHYS32_ENTRY
  std::uint64_t highest_end = 0;  // first byte past the highest segment
};

// Parses an x86-64 ELF vmlinux: header, program headers, PT_LOAD segments and the PVH note.
// Every offset and size is checked against the file; `name` ("kernel /path") starts each error.
Result<PvhElfKernel> parse_pvh_elf(std::span<const std::uint8_t> image, const std::string& name);

}  // namespace keel::vmm::boot
