#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "base/result.hpp"
#include "memory/guest_memory.hpp"
#include "vmm/boot/boot_info.hpp"

namespace keel::vmm::boot {

// The bzImage protected-mode part is loaded here. Not pref_address: a relocatable kernel's
// decompressor moves itself to max(pref_address, load address) anyway, and a non-relocatable one
// runs at pref_address regardless of where it was loaded, so 1 MiB (where the boot protocol puts
// every bzImage) works for both without a second code path.
inline constexpr std::uint64_t kBzImageLoadAddress = 0x100000;
// The 64-bit entry point is 0x200 bytes into the protected-mode part (boot protocol 2.12+).
inline constexpr std::uint64_t kBzImage64BitEntryOffset = 0x200;
inline constexpr std::uint16_t kMinBootProtocol = 0x020c;       // 2.12: XLF_KERNEL_64
inline constexpr std::uint16_t kAcpiRsdpBootProtocol = 0x020e;  // 2.14: acpi_rsdp_addr

// What the loader needs from a bzImage's setup header, checked.
struct BzImageHeader {
  std::uint16_t version = 0;          // boot protocol, 0x020f = 2.15
  std::uint64_t setup_size = 0;       // real-mode setup bytes that precede the kernel proper
  std::uint64_t kernel_size = 0;      // protected-mode bytes that follow, loaded at 1 MiB
  std::uint64_t header_size = 0;      // setup header bytes to copy into the zero page
  std::uint32_t initrd_addr_max = 0;  // highest byte an initramfs may occupy
  std::uint32_t cmdline_size = 0;     // longest command line without the NUL
  std::uint32_t kernel_alignment = 0;
  bool relocatable = false;
  std::uint64_t pref_address = 0;
  std::uint32_t init_size = 0;  // bytes the kernel needs from where it decompresses to
};

// Validates the setup header of `image`. `name` ("kernel /path") starts every error.
Result<BzImageHeader> parse_bzimage_header(std::span<const std::uint8_t> image,
                                           const std::string& name);

// The first byte past what the kernel occupies while booting from `load_address`: its
// decompressor runs at max(load address rounded up to kernel_alignment, pref_address) and needs
// init_size bytes there. An initramfs must start at or above this.
std::uint64_t bzimage_footprint_end(const BzImageHeader& header, std::uint64_t load_address);

// Loads the kernel at 1 MiB, the initramfs as high as it may go, the command line, and the zero
// page (setup header, e820, RSDP) at layout::kBootParams. `rsdp_gpa` 0 means no ACPI.
Result<BootInfo> load_bzimage(const memory::GuestMemory& mem, std::span<const std::uint8_t> image,
                              const std::string& name, const Payload& payload,
                              std::uint64_t rsdp_gpa);

}  // namespace keel::vmm::boot
