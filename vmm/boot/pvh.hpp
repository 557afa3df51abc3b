#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "base/result.hpp"
#include "memory/guest_memory.hpp"
#include "vmm/boot/boot_info.hpp"

namespace keel::vmm::boot {

// Loads a PVH vmlinux: its PT_LOAD segments at their physical addresses, the command line, the
// initramfs (as a module) as high as it may go below 4 GiB, and the hvm_start_info with the
// memory map at layout::kPvhStartInfo. `rsdp_gpa` 0 means no ACPI.
Result<BootInfo> load_pvh(const memory::GuestMemory& mem, std::span<const std::uint8_t> image,
                          const std::string& name, const Payload& payload, std::uint64_t rsdp_gpa);

}  // namespace keel::vmm::boot
