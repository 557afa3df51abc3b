#include "vmm/boot/bzimage.hpp"

#include <asm/bootparam.h>

#include <algorithm>
#include <cstring>

#include "base/hex.hpp"
#include "base/size.hpp"
#include "memory/layout.hpp"
#include "vmm/boot/cmdline.hpp"
#include "vmm/boot/cpu_state.hpp"
#include "vmm/boot/e820.hpp"
#include "vmm/boot/initramfs.hpp"

namespace keel::vmm::boot {

namespace layout = memory::layout;

namespace {

// Offsets into the image (and the zero page) fixed by the boot protocol.
constexpr std::size_t kSetupHeaderOffset = 0x1f1;
constexpr std::size_t kBootFlagOffset = 0x1fe;
constexpr std::size_t kJumpOffset = 0x200;  // "jmp short", whose target ends the header
constexpr std::size_t kHeaderMagicOffset = 0x202;
constexpr std::size_t kMinImageSize = 0x206;  // through the "HdrS" magic
constexpr std::uint16_t kBootFlag = 0xaa55;
constexpr std::uint32_t kHeaderMagic = 0x53726448;  // "HdrS"
constexpr std::uint8_t kDefaultSetupSects = 4;      // setup_sects 0 means 4
constexpr std::uint64_t kSectorSize = 512;
constexpr std::uint8_t kUndefinedLoader = 0xff;

std::string protocol_string(std::uint16_t version) {
  return std::to_string(version >> 8) + "." + std::to_string(version & 0xff);
}

template <typename T>
T load_le(std::span<const std::uint8_t> bytes, std::size_t offset) {
  T value{};
  std::memcpy(&value, bytes.data() + offset, sizeof value);
  return value;
}

Error truncated(const std::string& name, std::uint64_t have, std::uint64_t need,
                const std::string& what) {
  return Error::invalid(name + " is truncated: " + std::to_string(have) + " bytes, but " + what +
                        " needs " + std::to_string(need) + "; copy the bzImage again");
}

}  // namespace

Result<BzImageHeader> parse_bzimage_header(std::span<const std::uint8_t> image,
                                           const std::string& name) {
  if (image.size() < kMinImageSize) {
    return truncated(name, image.size(), kMinImageSize, "a bzImage setup header");
  }
  if (load_le<std::uint16_t>(image, kBootFlagOffset) != kBootFlag) {
    return Error::invalid(name + " is not a bzImage: no boot signature 0xaa55 at offset 0x1fe");
  }
  if (load_le<std::uint32_t>(image, kHeaderMagicOffset) != kHeaderMagic) {
    return Error::invalid(name + " uses a boot protocol older than 2.00 (no \"HdrS\" at 0x202); " +
                          "Keel needs 2.12 or later: use a Linux 3.8+ bzImage");
  }
  const std::uint64_t header_end = kHeaderMagicOffset + image[kJumpOffset + 1];
  if (image.size() < header_end) {
    return truncated(name, image.size(), header_end, "its setup header");
  }
  setup_header hdr{};
  const std::uint64_t header_size =
      std::min<std::uint64_t>(header_end - kSetupHeaderOffset, sizeof hdr);
  std::memcpy(&hdr, image.data() + kSetupHeaderOffset, header_size);

  if (hdr.version < kMinBootProtocol) {
    return Error::invalid(name + " uses boot protocol " + protocol_string(hdr.version) +
                          ", which has no 64-bit entry; Keel needs 2.12 or later (Linux 3.8+) " +
                          "or a PVH vmlinux");
  }
  if ((hdr.loadflags & LOADED_HIGH) == 0) {
    return Error::invalid(name + " is a zImage that loads below 1 MiB (LOADED_HIGH clear); " +
                          "build a bzImage");
  }
  if ((hdr.xloadflags & XLF_KERNEL_64) == 0) {
    return Error::invalid(name + " has no 64-bit entry point (XLF_KERNEL_64 clear in xloadflags " +
                          hex(hdr.xloadflags) + "); pass an x86-64 bzImage");
  }
  const std::uint64_t setup_sects = hdr.setup_sects == 0 ? kDefaultSetupSects : hdr.setup_sects;
  const std::uint64_t setup_size = (setup_sects + 1) * kSectorSize;
  const std::uint64_t kernel_need = static_cast<std::uint64_t>(hdr.syssize) * 16;
  if (image.size() <= setup_size || image.size() - setup_size < kernel_need) {
    return truncated(name, image.size(), setup_size + std::max<std::uint64_t>(kernel_need, 1),
                     "its setup code (" + std::to_string(setup_size) + " bytes) plus kernel (" +
                         std::to_string(kernel_need) + " bytes)");
  }
  if (hdr.init_size == 0) {
    return Error::invalid(name + " has init_size 0 in its setup header; the image is corrupt");
  }
  if (hdr.relocatable_kernel != 0 &&
      (hdr.kernel_alignment == 0 || (hdr.kernel_alignment & (hdr.kernel_alignment - 1)) != 0)) {
    return Error::invalid(name + " has kernel_alignment " + hex(hdr.kernel_alignment) +
                          ", not a power of two; the image is corrupt");
  }

  BzImageHeader out;
  out.version = hdr.version;
  out.setup_size = setup_size;
  out.kernel_size = image.size() - setup_size;
  out.header_size = header_size;
  out.initrd_addr_max = hdr.initrd_addr_max;
  out.cmdline_size = hdr.cmdline_size;
  out.kernel_alignment = hdr.kernel_alignment;
  out.relocatable = hdr.relocatable_kernel != 0;
  out.pref_address = hdr.pref_address;
  out.init_size = hdr.init_size;
  return out;
}

std::uint64_t bzimage_footprint_end(const BzImageHeader& header, std::uint64_t load_address) {
  // Saturating: a header's addresses near 2^64 must make the footprint huge (refused), never
  // wrap around to a small one that passes the check.
  constexpr std::uint64_t kMax = ~std::uint64_t{0};
  const auto add = [](std::uint64_t a, std::uint64_t b) { return a > kMax - b ? kMax : a + b; };
  std::uint64_t run_address = header.pref_address;
  if (header.relocatable) {
    const std::uint64_t align = header.kernel_alignment == 0 ? 1 : header.kernel_alignment;
    const std::uint64_t up = add(load_address, align - 1);
    run_address = std::max(run_address, up == kMax ? kMax : up / align * align);
  }
  return std::max(add(run_address, header.init_size), add(load_address, header.kernel_size));
}

Result<BootInfo> load_bzimage(const memory::GuestMemory& mem, std::span<const std::uint8_t> image,
                              const std::string& name, const Payload& payload,
                              std::uint64_t rsdp_gpa) {
  KEEL_TRY(auto parsed, parse_bzimage_header(image, name));
  const BzImageHeader& header = parsed;
  const std::uint64_t low_ram_end = mem.regions().front().end();
  const std::uint64_t footprint_end = bzimage_footprint_end(header, kBzImageLoadAddress);
  const std::uint64_t usable_end = std::min(low_ram_end, kIdentityMapEnd);
  if (footprint_end > usable_end) {
    return Error::invalid(name + " needs guest RAM up to " + hex(footprint_end) + " (" +
                          format_size(footprint_end) + ") to decompress, but " +
                          (usable_end == low_ram_end ? "guest RAM below the PCI hole ends at "
                                                     : "the boot page tables map only up to ") +
                          hex(usable_end) + " (" + format_size(usable_end) +
                          "); give the guest more memory");
  }
  KEEL_TRY_STATUS(mem.write(kBzImageLoadAddress, image.subspan(header.setup_size)));

  boot_params params{};
  std::memcpy(&params.hdr, image.data() + kSetupHeaderOffset, header.header_size);
  params.hdr.type_of_loader = kUndefinedLoader;
  params.hdr.code32_start = static_cast<std::uint32_t>(kBzImageLoadAddress);

  KEEL_TRY_STATUS_WRAP(write_cmdline(mem, payload.cmdline, header.cmdline_size), name);
  params.hdr.cmd_line_ptr = static_cast<std::uint32_t>(layout::kCmdlineStart);

  if (payload.initramfs) {
    const std::uint64_t limit_end =
        std::min(static_cast<std::uint64_t>(header.initrd_addr_max) + 1, low_ram_end);
    KEEL_TRY(auto initrd, load_initramfs(mem, *payload.initramfs, footprint_end, limit_end));
    // Placed below initrd_addr_max (< 4 GiB), so the ext_ high halves stay zero.
    params.hdr.ramdisk_image = static_cast<std::uint32_t>(initrd.gpa);
    params.hdr.ramdisk_size = static_cast<std::uint32_t>(initrd.size);
  }

  if (rsdp_gpa != 0 && header.version >= kAcpiRsdpBootProtocol) {
    params.acpi_rsdp_addr = rsdp_gpa;
  }

  const std::vector<E820Entry> map = build_e820(mem);
  if (map.size() > E820_MAX_ENTRIES_ZEROPAGE) {
    return Error::invalid("guest memory map has " + std::to_string(map.size()) +
                          " entries; the zero page holds " +
                          std::to_string(E820_MAX_ENTRIES_ZEROPAGE));
  }
  for (std::size_t i = 0; i < map.size(); ++i) {
    params.e820_table[i].addr = map[i].addr;
    params.e820_table[i].size = map[i].size;
    params.e820_table[i].type = static_cast<std::uint32_t>(map[i].type);
  }
  params.e820_entries = static_cast<std::uint8_t>(map.size());

  KEEL_TRY_STATUS(mem.write_obj(layout::kBootParams, params));
  return BootInfo{Protocol::kLinux64, kBzImageLoadAddress + kBzImage64BitEntryOffset,
                  layout::kBootParams};
}

}  // namespace keel::vmm::boot
