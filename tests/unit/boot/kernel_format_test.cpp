#include "vmm/boot/kernel_format.hpp"

#include <fstream>

#include <catch2/catch.hpp>

#include "base/size.hpp"
#include "tests/unit/boot/test_support.hpp"
#include "vmm/boot/payload.hpp"

namespace keel::vmm::boot {
namespace {

using test::TempDir;

bool contains(const Error& e, const std::string& text) {
  return e.context().find(text) != std::string::npos;
}

TEST_CASE("format detection tells bzImage from ELF by content") {
  CHECK(*detect_kernel_format(test::make_bzimage({}), "k") == KernelFormat::kBzImage);
  CHECK(*detect_kernel_format(test::make_elf({}), "k") == KernelFormat::kElf);
  // A 32-bit ELF is still an ELF here; its loader rejects it with the reason.
  test::ElfSpec elf32;
  elf32.elf_class = ELFCLASS32;
  CHECK(*detect_kernel_format(test::make_elf(elf32), "k") == KernelFormat::kElf);
  // A bzImage too old for "HdrS" still has the boot flag: the bzImage loader explains.
  test::BzImageSpec old;
  old.hdrs_magic = false;
  CHECK(*detect_kernel_format(test::make_bzimage(old), "k") == KernelFormat::kBzImage);
}

TEST_CASE("unusable kernel files give errors that name the path and the fix") {
  TempDir dir;
  auto mem = memory::GuestMemory::create(16 * kMiB);
  REQUIRE(mem.ok());
  auto load = [&](const std::string& path) {
    return load_payload(*mem, Payload{path, std::nullopt, ""}, 0);
  };

  SECTION("missing") {
    const std::string path = dir.path("no-such-kernel");
    auto r = load(path);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().errno_value() == ENOENT);
    CHECK(contains(r.error(), "kernel " + path));
  }
  SECTION("a directory") {
    auto r = load(dir.path(""));
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), "not a regular file"));
  }
  SECTION("empty") {
    const std::string path = dir.file("empty", test::Bytes{});
    auto r = load(path);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), path));
    CHECK(contains(r.error(), "empty"));
    CHECK(contains(r.error(), "bzImage"));
  }
  SECTION("too short") {
    const std::string path = dir.file("short", test::Bytes(100, 0x90));
    auto r = load(path);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), "too short"));
    CHECK(contains(r.error(), "100 bytes"));
  }
  SECTION("random data") {
    const std::string path = dir.file("random", test::pattern_bytes(64 * 1024, 3));
    auto r = load(path);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), path));
    CHECK(contains(r.error(), "neither a bzImage"));
    CHECK(contains(r.error(), "CONFIG_PVH=y"));
  }
  SECTION("compressed") {
    test::Bytes gz = test::pattern_bytes(4096, 9);
    gz[0] = 0x1f;
    gz[1] = 0x8b;
    auto r = load(dir.file("vmlinux.gz", gz));
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), "compressed"));
    CHECK(contains(r.error(), "gzip -d"));
  }
  SECTION("larger than guest RAM") {
    const std::string path = dir.path("disk.img");
    {
      std::ofstream out(path, std::ios::binary);
      out.seekp(static_cast<std::streamoff>(32 * kMiB));
      out.put(0);
    }
    auto r = load(path);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), "larger than guest RAM"));
    CHECK(contains(r.error(), "16 MiB"));
  }
  SECTION("truncated ELF magic only") {
    const std::string path = dir.file("elf-stub", test::Bytes{0x7f, 'E', 'L', 'F', 2});
    auto r = load(path);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), "truncated"));
  }
}

}  // namespace
}  // namespace keel::vmm::boot
