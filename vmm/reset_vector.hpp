#pragma once

#include "base/result.hpp"
#include "memory/guest_memory.hpp"

namespace keel::vmm {

// Writes a 16-byte stub at the BIOS reset vector (layout::kResetVector) that writes the ACPI
// reset value to the reset register and halts. Keel has no firmware; without the stub a guest
// that reboots "through the BIOS" (Linux on hardware-reduced ACPI without EFI does) would run
// zeroed memory forever instead of resetting.
Status write_reset_vector(const memory::GuestMemory& memory);

}  // namespace keel::vmm
