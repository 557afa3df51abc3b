#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace keel::vmm::boot {

// How the boot vCPU enters the kernel.
enum class Protocol {
  kLinux64,  // bzImage, 64-bit boot protocol: long mode, paging on, RSI = zero page
  kPvh,      // ELF vmlinux with a PVH note: 32-bit protected mode, paging off, EBX = start info
};

// What loading left in guest memory that the boot vCPU needs to know.
struct BootInfo {
  Protocol protocol = Protocol::kLinux64;
  std::uint64_t entry = 0;            // guest-physical address of the first instruction
  std::uint64_t boot_struct_gpa = 0;  // zero page (kLinux64) or hvm_start_info (kPvh)
};

// What the user asked to boot.
struct Payload {
  std::string kernel;                    // path to a bzImage or a PVH vmlinux
  std::optional<std::string> initramfs;  // path, if any
  std::string cmdline;
};

}  // namespace keel::vmm::boot
