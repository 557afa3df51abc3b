#include "vmm/reset_vector.hpp"

#include <array>

#include "memory/layout.hpp"

namespace keel::vmm {

Status write_reset_vector(const memory::GuestMemory& memory) {
  namespace layout = keel::memory::layout;
  constexpr std::uint16_t kPort = layout::kAcpiPmPort + layout::kAcpiResetOffset;
  // Real-mode code.
  const std::array<std::uint8_t, 9> stub = {
      0xba, kPort & 0xff, kPort >> 8,   // mov dx, reset register
      0xb0, layout::kAcpiResetValue,    // mov al, reset value
      0xee,                             // out dx, al
      0xf4,                             // hlt
      0xeb, 0xfd,                       // jmp back to hlt
  };
  return memory.write(layout::kResetVector, stub);
}

}  // namespace keel::vmm
