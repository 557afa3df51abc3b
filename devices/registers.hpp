#pragma once

#include <cstdint>
#include <optional>
#include <span>

namespace keel::devices {

// A guest's access to a block of 32-bit little-endian registers (the ACPI hot-plug, power
// button and vCPU blocks, whose DSDT fields are DWordAcc).

// The bytes a read of `data.size()` at byte `offset` gives: each register's bytes in order,
// zeros beyond the last register.
inline void read_registers(std::span<const std::uint32_t> regs, std::uint64_t offset,
                           std::span<std::uint8_t> data) {
  for (std::size_t i = 0; i < data.size(); ++i) {
    const std::uint64_t at = offset + i;
    data[i] = at / 4 < regs.size() ? static_cast<std::uint8_t>(regs[at / 4] >> (8 * (at % 4))) : 0;
  }
}

// The value of a write of one whole register (4 bytes at a multiple of 4); nullopt for any
// other access, which such a block ignores.
inline std::optional<std::uint32_t> whole_register_write(std::uint64_t offset,
                                                         std::span<const std::uint8_t> data) {
  if (offset % 4 != 0 || data.size() != 4) {
    return std::nullopt;
  }
  return static_cast<std::uint32_t>(data[0]) | (static_cast<std::uint32_t>(data[1]) << 8) |
         (static_cast<std::uint32_t>(data[2]) << 16) | (static_cast<std::uint32_t>(data[3]) << 24);
}

}  // namespace keel::devices
