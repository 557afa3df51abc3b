#include "vmm/boot/pvh.hpp"

#include <cstdlib>

#include <catch2/catch.hpp>

#include "base/size.hpp"
#include "memory/layout.hpp"
#include "tests/unit/boot/test_support.hpp"
#include "vmm/boot/e820.hpp"
#include "vmm/boot/elf_kernel.hpp"
#include "vmm/boot/payload.hpp"
#include "vmm/boot/start_info.hpp"

namespace keel::vmm::boot {
namespace {

namespace layout = memory::layout;
using test::ElfSpec;
using test::make_elf;
using test::TempDir;

bool contains(const Error& e, const std::string& text) {
  return e.context().find(text) != std::string::npos;
}

TEST_CASE("PVH: segments at p_paddr with zeroed bss, entry from the Xen note, start info") {
  auto mem = memory::GuestMemory::create(128 * kMiB);
  REQUIRE(mem.ok());
  const ElfSpec spec;
  // Dirty the bss first so zero-filling is observable.
  REQUIRE(mem->fill(spec.paddr, 0xcc, spec.mem_size).ok());
  TempDir dir;
  const test::Bytes image = make_elf(spec);
  const std::string kernel = dir.file("vmlinux", image);
  const std::uint64_t rsdp = layout::kAcpiStart;

  auto info = load_payload(*mem, Payload{kernel, std::nullopt, "console=hvc0"}, rsdp);
  REQUIRE(info.ok());
  CHECK(info->protocol == Protocol::kPvh);
  CHECK(info->entry == spec.paddr + spec.entry_offset);
  CHECK(info->boot_struct_gpa == layout::kPvhStartInfo);

  const test::Bytes loaded = test::read_guest(*mem, spec.paddr, spec.file_size);
  CHECK(std::equal(loaded.begin(), loaded.end(), image.begin() + test::kElfSegmentOffset));
  const test::Bytes bss =
      test::read_guest(*mem, spec.paddr + spec.file_size, spec.mem_size - spec.file_size);
  CHECK(std::all_of(bss.begin(), bss.end(), [](std::uint8_t b) { return b == 0; }));

  auto si = mem->read_obj<HvmStartInfo>(layout::kPvhStartInfo);
  REQUIRE(si.ok());
  CHECK(si->magic == 0x336ec578);
  CHECK(si->version == 1);
  CHECK(si->cmdline_paddr == layout::kCmdlineStart);
  CHECK(si->rsdp_paddr == rsdp);
  CHECK(si->nr_modules == 0);
  CHECK(si->modlist_paddr == 0);

  const auto map = build_e820(*mem);
  REQUIRE(si->memmap_entries == map.size());
  REQUIRE(si->memmap_paddr != 0);
  for (std::size_t i = 0; i < map.size(); ++i) {
    auto e = mem->read_obj<HvmMemmapTableEntry>(si->memmap_paddr + i * sizeof(HvmMemmapTableEntry));
    REQUIRE(e.ok());
    CHECK(e->addr == map[i].addr);
    CHECK(e->size == map[i].size);
    CHECK(e->type == static_cast<std::uint32_t>(map[i].type));
  }
  // The start info and its arrays stay below the zero page slot.
  CHECK(si->memmap_paddr + map.size() * sizeof(HvmMemmapTableEntry) <= layout::kBootParams);

  const test::Bytes line = test::read_guest(*mem, layout::kCmdlineStart, 13);
  CHECK(std::string(line.begin(), line.end()) == std::string("console=hvc0\0", 13));
}

TEST_CASE("PVH: a 4-byte entry note works too") {
  ElfSpec spec;
  spec.note_desc_size = 4;
  auto parsed = parse_pvh_elf(make_elf(spec), "kernel k");
  REQUIRE(parsed.ok());
  CHECK(parsed->entry == spec.paddr + spec.entry_offset);
  CHECK(parsed->highest_end == spec.paddr + spec.mem_size);
}

TEST_CASE("PVH: initramfs is a module placed high, above the kernel") {
  TempDir dir;
  const test::Bytes initrd = test::pattern_bytes(2 * kMiB + 5, 0x42);
  const std::string initrd_path = dir.file("initrd", initrd);
  const std::string kernel = dir.file("vmlinux", make_elf({}));
  for (std::uint64_t ram : {64 * kMiB, 6 * kGiB}) {
    CAPTURE(ram);
    auto mem = memory::GuestMemory::create(ram);
    REQUIRE(mem.ok());
    auto info = load_payload(*mem, Payload{kernel, initrd_path, ""}, 0);
    REQUIRE(info.ok());
    auto si = mem->read_obj<HvmStartInfo>(layout::kPvhStartInfo);
    REQUIRE(si.ok());
    CHECK(si->rsdp_paddr == 0);
    REQUIRE(si->nr_modules == 1);
    auto mod = mem->read_obj<HvmModlistEntry>(si->modlist_paddr);
    REQUIRE(mod.ok());
    CHECK(mod->size == initrd.size());
    CHECK(mod->paddr % 4096 == 0);
    CHECK(mod->paddr >= ElfSpec{}.paddr + ElfSpec{}.mem_size);
    CHECK(mod->paddr + mod->size <= mem->regions()[0].end());
    CHECK(mod->paddr + mod->size + 4096 > mem->regions()[0].end());
    CHECK(test::read_guest(*mem, mod->paddr, mod->size) == initrd);
  }
}

TEST_CASE("PVH errors name the file and the fix") {
  TempDir dir;
  auto mem = memory::GuestMemory::create(32 * kMiB);
  REQUIRE(mem.ok());
  auto load_image = [&](const test::Bytes& image, std::optional<std::string> initrd = {}) {
    return load_payload(*mem, Payload{dir.file("vmlinux", image), std::move(initrd), ""}, 0);
  };

  SECTION("no PVH note") {
    ElfSpec spec;
    spec.pvh_note = false;
    auto r = load_image(make_elf(spec));
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), dir.path("vmlinux")));
    CHECK(contains(r.error(), "XEN_ELFNOTE_PHYS32_ENTRY"));
    CHECK(contains(r.error(), "CONFIG_PVH=y"));
  }
  SECTION("32-bit ELF") {
    ElfSpec spec;
    spec.elf_class = ELFCLASS32;
    auto r = load_image(make_elf(spec));
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), "32-bit"));
  }
  SECTION("another machine") {
    ElfSpec spec;
    spec.machine = EM_AARCH64;
    auto r = load_image(make_elf(spec));
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), "not x86-64"));
  }
  SECTION("truncated ELF header") {
    test::Bytes image = make_elf({});
    image.resize(40);
    auto r = load_image(image);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), "truncated"));
  }
  SECTION("program headers past the end") {
    test::Bytes image = make_elf({});
    test::store<std::uint64_t>(image, offsetof(Elf64_Ehdr, e_phoff), image.size() - 8);
    auto r = load_image(image);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), "program headers"));
  }
  SECTION("segment past the end of the file") {
    test::Bytes image = make_elf({});
    image.resize(image.size() - 1);
    auto r = load_image(image);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), "runs past the end of the file"));
  }
  SECTION("filesz larger than memsz") {
    ElfSpec spec;
    spec.mem_size = spec.file_size - 1;
    auto r = load_image(make_elf(spec));
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), "more file bytes"));
  }
  SECTION("segment outside guest RAM") {
    ElfSpec spec;
    spec.paddr = 32 * kMiB - 0x1000;
    auto r = load_image(make_elf(spec));
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), "outside guest RAM"));
    CHECK(contains(r.error(), "more memory"));
  }
  SECTION("segment below 1 MiB") {
    ElfSpec spec;
    spec.paddr = 0x8000;
    auto r = load_image(make_elf(spec));
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), "below 1 MiB"));
  }
  SECTION("initramfs too big") {
    const test::Bytes big(16 * kMiB, 0);  // 32 MiB guest, kernel ends at 16 MiB + 20 KiB
    const std::string initrd = dir.file("big.cpio", big);
    auto r = load_image(make_elf({}), initrd);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error(), initrd));
    CHECK(contains(r.error(), "16 MiB"));
    CHECK(contains(r.error(), "does not fit"));
  }
}

// A real vmlinux: $KEEL_TEST_VMLINUX (ctest sets it: tests/unit/boot/fetch_kernels.sh).
TEST_CASE("PVH: a real vmlinux's notes and segments parse and load") {
  const char* path = std::getenv("KEEL_TEST_VMLINUX");
  INFO("KEEL_TEST_VMLINUX must name a PVH vmlinux (ctest's fixture.kernels provides one)");
  REQUIRE(path != nullptr);
  auto mem = memory::GuestMemory::create(512 * kMiB);
  REQUIRE(mem.ok());
  auto info = load_payload(*mem, Payload{path, std::nullopt, "console=ttyS0"}, layout::kAcpiStart);
  REQUIRE(info.ok());
  CHECK(info->protocol == Protocol::kPvh);
  CHECK(info->entry >= layout::kHighMemoryStart);
}

}  // namespace
}  // namespace keel::vmm::boot
