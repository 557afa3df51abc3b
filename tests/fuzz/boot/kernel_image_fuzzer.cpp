// Kernel images as a user might pass them (truncated, foreign, corrupt or hostile): format
// detection, the bzImage setup-header parser and the ELF/PVH parser on arbitrary bytes.
// Properties:
//   - nothing crashes, overflows or reads outside the image (ASan, UBSan);
//   - every refusal is an error with a message that names the image;
//   - a bzImage header that parses has its setup and protected-mode parts inside the image;
//   - an ELF that parses has every segment's file bytes inside the image, mem_size >= file_size,
//     and highest_end at or past every segment's end.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "tests/fuzz/api/fuzz_checks.hpp"
#include "vmm/boot/bzimage.hpp"
#include "vmm/boot/elf_kernel.hpp"
#include "vmm/boot/kernel_format.hpp"

namespace boot = keel::vmm::boot;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> image(data, size);
  const std::string name = "kernel /fuzz";
  auto named = [&](const keel::Error& e) { return e.context().find(name) != std::string::npos; };

  auto format = boot::detect_kernel_format(image, name);
  if (!format.ok()) {
    KEEL_FUZZ_CHECK(named(format.error()));
  }
  auto bz = boot::parse_bzimage_header(image, name);
  if (bz.ok()) {
    KEEL_FUZZ_CHECK(bz->setup_size <= size);
    KEEL_FUZZ_CHECK(bz->kernel_size <= size - bz->setup_size);
    KEEL_FUZZ_CHECK(bz->header_size <= bz->setup_size);
  } else {
    KEEL_FUZZ_CHECK(named(bz.error()));
  }
  auto elf = boot::parse_pvh_elf(image, name);
  if (elf.ok()) {
    for (const boot::ElfLoadSegment& s : elf->segments) {
      KEEL_FUZZ_CHECK(s.file_offset <= size && s.file_size <= size - s.file_offset);
      KEEL_FUZZ_CHECK(s.mem_size >= s.file_size);
      KEEL_FUZZ_CHECK(elf->highest_end >= s.paddr + s.mem_size);
    }
  } else {
    KEEL_FUZZ_CHECK(named(elf.error()));
  }
  return 0;
}
