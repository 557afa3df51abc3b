#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "base/result.hpp"

namespace keel::vmm::boot {

enum class KernelFormat {
  kBzImage,  // Linux x86 boot protocol image (arch/x86/boot/bzImage)
  kElf,      // ELF vmlinux, booted through its PVH note
};

// Tells a bzImage from an ELF by their magic numbers; anything else (empty, too short,
// compressed, foreign) is an error that says what the file looks like and what to pass instead.
// Whether the image is usable (protocol version, PVH note) is the format's loader's call.
Result<KernelFormat> detect_kernel_format(std::span<const std::uint8_t> image,
                                          const std::string& name);

}  // namespace keel::vmm::boot
