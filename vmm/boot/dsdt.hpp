#pragma once

#include <cstdint>
#include <vector>

#include "vmm/boot/acpi.hpp"

namespace keel::vmm::boot {

// The DSDT (complete table, header included): \_S5_, \_SB_.PCI0 with its windows and _PRT,
// the ECAM as a motherboard resource, and optionally COM1. `ram_end` places the 64-bit window.
std::vector<std::uint8_t> build_dsdt(const AcpiConfig& config, std::uint64_t ram_end);

}  // namespace keel::vmm::boot
