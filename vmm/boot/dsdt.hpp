#pragma once

#include <cstdint>
#include <vector>

#include "vmm/boot/acpi.hpp"

namespace keel::vmm::boot {

// The DSDT (complete table, header included): \_S5_, \_SB_.PCI0 with its windows and _PRT,
// the ECAM as a motherboard resource, optionally COM1, and optionally the GED with the PCI
// hot-plug slots and the power button it signals. `top` (the end of guest memory, the
// hot-pluggable region included) places the 64-bit window.
std::vector<std::uint8_t> build_dsdt(const AcpiConfig& config, std::uint64_t top);

}  // namespace keel::vmm::boot
