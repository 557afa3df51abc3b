#pragma once

#include <cstdint>

#include "base/result.hpp"
#include "memory/guest_memory.hpp"
#include "vmm/boot/boot_info.hpp"

namespace keel::vmm::boot {

// Everything that goes into guest memory to boot `payload`: the kernel (bzImage or PVH
// vmlinux, told apart by content), initramfs, command line, zero page or hvm_start_info with the
// e820 map, and the boot GDT/IDT/page tables. `rsdp_gpa` is what write_acpi_tables returned (0:
// no ACPI). The result tells the boot vCPU where to start: see setup_boot_sregs and boot_regs.
Result<BootInfo> load_payload(const memory::GuestMemory& mem, const Payload& payload,
                              std::uint64_t rsdp_gpa);

}  // namespace keel::vmm::boot
