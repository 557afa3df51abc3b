#include "vmm/boot/bzimage.hpp"

#include <unistd.h>

#include <asm/bootparam.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include <catch2/catch.hpp>

#include "base/hex.hpp"
#include "base/size.hpp"
#include "memory/layout.hpp"
#include "tests/unit/boot/test_support.hpp"
#include "vmm/boot/e820.hpp"
#include "vmm/boot/host_file.hpp"
#include "vmm/boot/payload.hpp"

namespace keel::vmm::boot {
namespace {

namespace layout = memory::layout;
using test::BzImageSpec;
using test::make_bzimage;
using test::TempDir;

bool contains(const Error& e, const std::string& text) {
  return e.context().find(text) != std::string::npos;
}

Result<boot_params> zero_page(const memory::GuestMemory& mem) {
  return mem.read_obj<boot_params>(layout::kBootParams);
}

TEST_CASE("bzImage: kernel at 1 MiB, entry +0x200, zero page with header, cmdline and e820") {
  auto mem = memory::GuestMemory::create(256 * kMiB);
  REQUIRE(mem.ok());
  TempDir dir;
  const test::Bytes image = make_bzimage({});
  const std::string kernel = dir.file("bzImage", image);
  const std::uint64_t rsdp = layout::kAcpiStart;

  auto info = load_payload(*mem, Payload{kernel, std::nullopt, "console=ttyS0 quiet"}, rsdp);
  REQUIRE(info.ok());
  CHECK(info->protocol == Protocol::kLinux64);
  CHECK(info->entry == kBzImageLoadAddress + 0x200);
  CHECK(info->boot_struct_gpa == layout::kBootParams);

  const std::size_t setup_size = (4 + 1) * 512;
  const test::Bytes loaded = test::read_guest(*mem, kBzImageLoadAddress, image.size() - setup_size);
  CHECK(std::equal(loaded.begin(), loaded.end(), image.begin() + setup_size));

  auto zp = zero_page(*mem);
  REQUIRE(zp.ok());
  CHECK(zp->hdr.boot_flag == 0xaa55);
  CHECK(zp->hdr.header == 0x53726448);
  CHECK(zp->hdr.version == 0x020f);
  CHECK(zp->hdr.init_size == 0x800000);
  CHECK(zp->hdr.type_of_loader == 0xff);
  CHECK(zp->hdr.cmd_line_ptr == layout::kCmdlineStart);
  CHECK(zp->ext_cmd_line_ptr == 0);
  CHECK(zp->hdr.ramdisk_image == 0);
  CHECK(zp->hdr.ramdisk_size == 0);
  CHECK(zp->acpi_rsdp_addr == rsdp);
  CHECK(zp->sentinel == 0);

  const std::string cmdline = "console=ttyS0 quiet";
  const test::Bytes line = test::read_guest(*mem, layout::kCmdlineStart, cmdline.size() + 1);
  CHECK(std::string(line.begin(), line.end() - 1) == cmdline);
  CHECK(line.back() == 0);

  const auto map = build_e820(*mem);
  REQUIRE(zp->e820_entries == map.size());
  for (std::size_t i = 0; i < map.size(); ++i) {
    CHECK(zp->e820_table[i].addr == map[i].addr);
    CHECK(zp->e820_table[i].size == map[i].size);
    CHECK(zp->e820_table[i].type == static_cast<std::uint32_t>(map[i].type));
  }

  // The boot page tables are part of loading.
  auto pml4 = mem->read_obj<std::uint64_t>(layout::kPml4Start);
  REQUIRE(pml4.ok());
  CHECK((*pml4 & ~0xfffULL) == layout::kPdpteStart);
}

TEST_CASE("bzImage: setup_sects 0 means 4") {
  BzImageSpec spec;
  spec.setup_sects = 0;
  const test::Bytes image = make_bzimage(spec);
  auto header = parse_bzimage_header(image, "kernel x");
  REQUIRE(header.ok());
  CHECK(header->setup_size == 5 * 512);
  CHECK(header->kernel_size == image.size() - 5 * 512);
}

TEST_CASE("bzImage: protocol 2.12/2.13 gets no acpi_rsdp_addr") {
  auto mem = memory::GuestMemory::create(64 * kMiB);
  REQUIRE(mem.ok());
  TempDir dir;
  BzImageSpec spec;
  spec.version = 0x020c;
  const std::string kernel = dir.file("bzImage", make_bzimage(spec));
  auto info = load_payload(*mem, Payload{kernel, std::nullopt, ""}, layout::kAcpiStart);
  REQUIRE(info.ok());
  auto zp = zero_page(*mem);
  REQUIRE(zp.ok());
  CHECK(zp->acpi_rsdp_addr == 0);
}

TEST_CASE("bzImage: initramfs sits page-aligned, as high as allowed, clear of the kernel") {
  TempDir dir;
  const test::Bytes initrd = test::pattern_bytes(3 * kMiB + 123, 0x77);
  const std::string initrd_path = dir.file("initrd", initrd);

  struct Case {
    std::uint64_t ram;
    std::uint32_t initrd_addr_max;
  };
  for (const Case c :
       {Case{256 * kMiB, 0x7fffffff}, Case{512 * kMiB, 0x0fffffff}, Case{6 * kGiB, 0x7fffffff}}) {
    CAPTURE(c.ram, c.initrd_addr_max);
    auto mem = memory::GuestMemory::create(c.ram);
    REQUIRE(mem.ok());
    BzImageSpec spec;
    spec.initrd_addr_max = c.initrd_addr_max;
    const std::string kernel = dir.file("bzImage", make_bzimage(spec));
    auto info = load_payload(*mem, Payload{kernel, initrd_path, "root=/dev/ram0"}, 0);
    REQUIRE(info.ok());
    auto zp = zero_page(*mem);
    REQUIRE(zp.ok());
    const std::uint64_t start = zp->hdr.ramdisk_image;
    const std::uint64_t size = zp->hdr.ramdisk_size;
    const std::uint64_t limit =
        std::min<std::uint64_t>(std::uint64_t{c.initrd_addr_max} + 1, mem->regions()[0].end());
    CHECK(size == initrd.size());
    CHECK(start % 4096 == 0);
    CHECK(start + size <= limit);
    CHECK(start + size + 4096 > limit);                  // as high as possible
    CHECK(start >= spec.pref_address + spec.init_size);  // above the decompressed kernel
    CHECK(zp->ext_ramdisk_image == 0);
    CHECK(test::read_guest(*mem, start, size) == initrd);
  }
}

TEST_CASE("bzImage: footprint follows where the decompressor runs") {
  BzImageSpec spec;
  auto reloc = parse_bzimage_header(make_bzimage(spec), "k");
  REQUIRE(reloc.ok());
  CHECK(bzimage_footprint_end(*reloc, kBzImageLoadAddress) == spec.pref_address + spec.init_size);
  // Loaded above pref_address, a relocatable kernel runs where it was loaded (aligned up).
  CHECK(bzimage_footprint_end(*reloc, 0x3100000) == 0x3200000 + spec.init_size);

  // A fixed kernel decompresses to pref_address wherever it was loaded.
  spec.relocatable = 0;
  auto fixed = parse_bzimage_header(make_bzimage(spec), "k");
  REQUIRE(fixed.ok());
  CHECK(bzimage_footprint_end(*fixed, kBzImageLoadAddress) == spec.pref_address + spec.init_size);
  CHECK(bzimage_footprint_end(*fixed, 0x100000 + 0x200000) == spec.pref_address + spec.init_size);
}

TEST_CASE("bzImage: a pref_address near 2^64 is refused, not wrapped into RAM") {
  BzImageSpec spec;
  spec.relocatable = 0;
  spec.pref_address = ~std::uint64_t{0} - 0x1000;  // + init_size would wrap to a small address
  auto header = parse_bzimage_header(make_bzimage(spec), "k");
  REQUIRE(header.ok());
  CHECK(bzimage_footprint_end(*header, kBzImageLoadAddress) == ~std::uint64_t{0});
  TempDir dir;
  auto mem = memory::GuestMemory::create(64 * kMiB);
  REQUIRE(mem.ok());
  const std::string path = dir.file("wrap", make_bzimage(spec));
  auto loaded = load_payload(*mem, Payload{path, std::nullopt, "console=ttyS0"}, layout::kAcpiStart);
  REQUIRE_FALSE(loaded.ok());
  CHECK(loaded.error().message().find("to decompress") != std::string::npos);
}

TEST_CASE("bzImage errors name the file, the numbers and the fix") {
  TempDir dir;
  auto mem = memory::GuestMemory::create(64 * kMiB);
  REQUIRE(mem.ok());
  auto load = [&](const BzImageSpec& spec, const test::Bytes* override_image = nullptr,
                  std::optional<std::string> initrd = std::nullopt, std::string cmdline = "") {
    const std::string path =
        dir.file("bzImage", override_image != nullptr ? *override_image : make_bzimage(spec));
    return load_payload(*mem, Payload{path, std::move(initrd), std::move(cmdline)}, 0);
  };

  SECTION("protocol too old") {
    BzImageSpec spec;
    spec.version = 0x020b;
    auto r = load(spec);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), "bzImage"));
    CHECK(contains(r.error(), "2.11"));
    CHECK(contains(r.error(), "2.12"));
  }
  SECTION("no HdrS: pre-2.00") {
    BzImageSpec spec;
    spec.hdrs_magic = false;
    auto r = load(spec);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), "older than 2.00"));
  }
  SECTION("no boot flag") {
    BzImageSpec spec;
    spec.boot_flag = false;
    auto r = load(spec);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), "0xaa55"));
  }
  SECTION("zImage") {
    BzImageSpec spec;
    spec.loadflags = 0;
    auto r = load(spec);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), "LOADED_HIGH"));
  }
  SECTION("no 64-bit entry") {
    BzImageSpec spec;
    spec.xloadflags = 0;
    auto r = load(spec);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), "XLF_KERNEL_64"));
  }
  SECTION("truncated payload") {
    test::Bytes image = make_bzimage({});
    image.resize(image.size() - 100);
    auto r = load({}, &image);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), "truncated"));
    CHECK(contains(r.error(), std::to_string(image.size())));
  }
  SECTION("truncated inside the setup header") {
    test::Bytes image = make_bzimage({});
    image.resize(0x240);
    auto r = load({}, &image);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), "truncated"));
  }
  SECTION("command line longer than cmdline_size") {
    BzImageSpec spec;
    spec.cmdline_size = 16;
    auto r = load(spec, nullptr, std::nullopt, std::string(17, 'x'));
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), "17 bytes"));
    CHECK(contains(r.error(), "at most 16"));
    CHECK(load(spec, nullptr, std::nullopt, std::string(16, 'x')).ok());
  }
  SECTION("kernel needs more RAM than the guest has") {
    BzImageSpec spec;
    spec.init_size = 60 * kMiB;  // 16 MiB + 60 MiB > 64 MiB
    auto r = load(spec);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), "more memory"));
    CHECK(contains(r.error(), hex(spec.pref_address + spec.init_size)));
  }
  SECTION("initramfs too big") {
    // The kernel occupies up to pref_address + init_size = 24 MiB; 40 MiB remain below 64 MiB.
    const test::Bytes big(40 * kMiB + 1, 0x11);
    const std::string initrd = dir.file("big.cpio", big);
    auto r = load({}, nullptr, initrd);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), initrd));
    CHECK(contains(r.error(), std::to_string(big.size())));
    CHECK(contains(r.error(), "does not fit"));
    const test::Bytes fits(40 * kMiB, 0x11);
    CHECK(load({}, nullptr, dir.file("fits.cpio", fits)).ok());
  }
  SECTION("initramfs missing or empty") {
    auto missing = load({}, nullptr, dir.path("nope.cpio"));
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().errno_value() == ENOENT);
    CHECK(contains(missing.error(), "initramfs " + dir.path("nope.cpio")));
    auto empty = load({}, nullptr, dir.file("empty.cpio", test::Bytes{}));
    REQUIRE_FALSE(empty.ok());
    CHECK(contains(empty.error(), "empty"));
  }
}

// A real distribution kernel: $KEEL_TEST_BZIMAGE (ctest sets it: Debian's cloud kernel, from
// tests/unit/boot/fetch_kernels.sh), and this host's own /boot/vmlinuz-* where readable.
TEST_CASE("bzImage: a real kernel's setup header parses and loads") {
  std::vector<std::string> candidates;
  const char* env = std::getenv("KEEL_TEST_BZIMAGE");
  INFO("KEEL_TEST_BZIMAGE must name a bzImage (ctest's fixture.kernels provides one)");
  REQUIRE(env != nullptr);
  candidates.emplace_back(env);
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/boot", ec)) {
    if (entry.path().filename().string().rfind("vmlinuz-", 0) == 0 &&
        ::access(entry.path().c_str(), R_OK) == 0) {
      candidates.push_back(entry.path().string());
    }
  }
  for (const std::string& path : candidates) {
    CAPTURE(path);
    auto file = open_host_file(path, "kernel");
    REQUIRE(file.ok());
    auto image = read_all(*file);
    REQUIRE(image.ok());
    auto header = parse_bzimage_header(*image, file->name());
    REQUIRE(header.ok());
    CHECK(header->version >= kMinBootProtocol);
    CHECK(header->init_size > header->kernel_size);
    CHECK(header->setup_size + header->kernel_size == image->size());

    auto mem = memory::GuestMemory::create(512 * kMiB);
    REQUIRE(mem.ok());
    auto info =
        load_payload(*mem, Payload{path, std::nullopt, "console=ttyS0"}, layout::kAcpiStart);
    REQUIRE(info.ok());
    auto zp = zero_page(*mem);
    REQUIRE(zp.ok());
    CHECK(zp->hdr.version == header->version);
    CHECK(zp->hdr.type_of_loader == 0xff);
  }
}

}  // namespace
}  // namespace keel::vmm::boot
