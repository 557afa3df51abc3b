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

// Whether the payload's files can be read: each is opened and checked to be a regular file (a
// FIFO or a device is refused without blocking), nothing more. Cheap: run before building a VM,
// so that a path the user mistyped is a request error even on a host without /dev/kvm.
Status check_payload_files(const Payload& payload);

}  // namespace keel::vmm::boot
