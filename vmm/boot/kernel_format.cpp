#include "vmm/boot/kernel_format.hpp"

#include <array>
#include <cstring>
#include <string_view>

namespace keel::vmm::boot {

namespace {

constexpr std::array<std::uint8_t, 4> kElfMagic{0x7f, 'E', 'L', 'F'};
constexpr std::size_t kBootFlagOffset = 0x1fe;
constexpr std::size_t kHeaderMagicOffset = 0x202;
constexpr std::size_t kBzImageMinSize = 0x206;

struct Compression {
  std::string_view magic;
  std::string_view tool;
};
constexpr std::array<Compression, 4> kCompressions{{
    {"\x1f\x8b", "gzip -d"},
    {"\xfd\x37\x7a\x58\x5a", "xz -d"},
    {"\x28\xb5\x2f\xfd", "zstd -d"},
    {"\x02\x21\x4c\x18", "lz4 -d"},
}};

bool starts_with(std::span<const std::uint8_t> image, std::string_view magic) {
  return image.size() >= magic.size() && std::memcmp(image.data(), magic.data(), magic.size()) == 0;
}

}  // namespace

Result<KernelFormat> detect_kernel_format(std::span<const std::uint8_t> image,
                                          const std::string& name) {
  const std::string expected =
      "pass an x86-64 bzImage (arch/x86/boot/bzImage) or a vmlinux built with CONFIG_PVH=y";
  if (image.empty()) {
    return Error::invalid(name + " is empty (0 bytes); " + expected);
  }
  if (image.size() >= kElfMagic.size() &&
      std::memcmp(image.data(), kElfMagic.data(), kElfMagic.size()) == 0) {
    return KernelFormat::kElf;
  }
  if (image.size() >= kBzImageMinSize &&
      (image[kBootFlagOffset] == 0x55 && image[kBootFlagOffset + 1] == 0xaa)) {
    return KernelFormat::kBzImage;
  }
  if (image.size() >= kBzImageMinSize &&
      std::memcmp(image.data() + kHeaderMagicOffset, "HdrS", 4) == 0) {
    return KernelFormat::kBzImage;  // its loader reports the missing boot flag
  }
  for (const Compression& c : kCompressions) {
    if (starts_with(image, c.magic)) {
      return Error::invalid(name + " is compressed data, not a kernel image; decompress it (" +
                            std::string(c.tool) + ") or " + expected);
    }
  }
  if (image.size() < kBzImageMinSize) {
    return Error::invalid(name + " is too short to be a kernel (" + std::to_string(image.size()) +
                          " bytes, not even a bzImage setup header); it may be truncated; " +
                          expected);
  }
  return Error::invalid(name + " is neither a bzImage (no boot flag 0xaa55 at 0x1fe) nor an ELF " +
                        "file; " + expected);
}

}  // namespace keel::vmm::boot
