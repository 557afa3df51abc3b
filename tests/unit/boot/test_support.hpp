#pragma once

#include <asm/bootparam.h>
#include <elf.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "base/size.hpp"
#include "memory/guest_memory.hpp"

namespace keel::vmm::boot::test {

using Bytes = std::vector<std::uint8_t>;

// A fresh directory under $TMPDIR, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "keel-boot-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name, std::span<const std::uint8_t> bytes) const {
    const std::string p = (path_ / name).string();
    std::ofstream out(p, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
    return p;
  }
  std::string path(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline Bytes pattern_bytes(std::size_t size, std::uint8_t seed) {
  Bytes b(size);
  for (std::size_t i = 0; i < size; ++i) {
    b[i] = static_cast<std::uint8_t>(seed + i * 7 + (i >> 9));
  }
  return b;
}

template <typename T>
void store(Bytes& b, std::size_t offset, const T& value) {
  if (b.size() < offset + sizeof(T)) {
    b.resize(offset + sizeof(T));
  }
  std::memcpy(b.data() + offset, &value, sizeof(T));
}

template <typename T>
T fetch(std::span<const std::uint8_t> b, std::size_t offset) {
  T value{};
  REQUIRE(offset + sizeof(T) <= b.size());
  std::memcpy(&value, b.data() + offset, sizeof(T));
  return value;
}

// ---- A minimal bzImage: setup sectors with a real setup header, then a payload ----
struct BzImageSpec {
  std::uint16_t version = 0x020f;
  std::uint8_t setup_sects = 4;
  std::uint8_t loadflags = LOADED_HIGH;
  std::uint16_t xloadflags = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G;
  std::uint8_t relocatable = 1;
  std::uint32_t kernel_alignment = 0x20'0000;
  std::uint64_t pref_address = 0x100'0000;
  std::uint32_t init_size = 0x80'0000;
  std::uint32_t initrd_addr_max = 0x7fff'ffff;
  std::uint32_t cmdline_size = 0x7ff;
  std::size_t payload_size = 0x1'0000;  // a multiple of 16, like syssize
  bool boot_flag = true;
  bool hdrs_magic = true;
};

inline Bytes make_bzimage(const BzImageSpec& spec) {
  const std::size_t setup_sects = spec.setup_sects == 0 ? 4 : spec.setup_sects;
  const std::size_t setup_size = (setup_sects + 1) * 512;
  Bytes image(setup_size, 0);
  setup_header hdr{};
  hdr.setup_sects = spec.setup_sects;
  hdr.syssize = static_cast<std::uint32_t>(spec.payload_size / 16);
  hdr.vid_mode = 0xffff;
  hdr.boot_flag = spec.boot_flag ? 0xaa55 : 0;
  hdr.jump = 0x6aeb;  // jmp short to 0x26c, the end of a 2.15 header
  hdr.header = spec.hdrs_magic ? 0x53726448 : 0;
  hdr.version = spec.version;
  hdr.loadflags = spec.loadflags;
  hdr.code32_start = 0x100000;
  hdr.initrd_addr_max = spec.initrd_addr_max;
  hdr.kernel_alignment = spec.kernel_alignment;
  hdr.relocatable_kernel = spec.relocatable;
  hdr.min_alignment = 21;
  hdr.xloadflags = spec.xloadflags;
  hdr.cmdline_size = spec.cmdline_size;
  hdr.pref_address = spec.pref_address;
  hdr.init_size = spec.init_size;
  std::memcpy(image.data() + 0x1f1, &hdr, sizeof hdr);
  const Bytes payload = pattern_bytes(spec.payload_size, 0x31);
  image.insert(image.end(), payload.begin(), payload.end());
  return image;
}

// ---- A minimal ELF64 vmlinux: one PT_LOAD, one PT_NOTE with Xen notes ----
struct ElfSpec {
  std::uint8_t elf_class = ELFCLASS64;
  std::uint16_t machine = EM_X86_64;
  bool pvh_note = true;
  std::uint32_t note_desc_size = 8;  // Linux uses _ASM_PTR: 8 bytes on x86-64
  std::uint64_t paddr = 0x100'0000;
  std::size_t file_size = 0x3000;
  std::size_t mem_size = 0x5000;  // the rest is .bss
  std::uint64_t entry_offset = 0x40;
};

inline constexpr std::size_t kElfSegmentOffset = 0x1000;

inline void add_note(Bytes& notes, const char* name, std::uint32_t type, const Bytes& desc) {
  const std::uint32_t namesz = static_cast<std::uint32_t>(std::strlen(name) + 1);
  Elf64_Nhdr nh{namesz, static_cast<std::uint32_t>(desc.size()), type};
  const std::size_t at = notes.size();
  store(notes, at, nh);
  notes.insert(notes.end(), name, name + namesz);
  notes.resize((notes.size() + 3) & ~std::size_t{3}, 0);
  notes.insert(notes.end(), desc.begin(), desc.end());
  notes.resize((notes.size() + 3) & ~std::size_t{3}, 0);
}

inline Bytes make_elf(const ElfSpec& spec) {
  Bytes notes;
  add_note(notes, "Xen", 6, Bytes{'l', 'i', 'n', 'u', 'x', 0});  // XEN_ELFNOTE_GUEST_OS
  add_note(notes, "GNU", 3, Bytes(20, 0xab));                    // a build id
  if (spec.pvh_note) {
    const std::uint64_t entry = spec.paddr + spec.entry_offset;
    Bytes desc(spec.note_desc_size, 0);
    std::memcpy(desc.data(), &entry, std::min<std::size_t>(desc.size(), sizeof entry));
    add_note(notes, "Xen", 18, desc);
  }
  constexpr std::size_t kNotesOffset = 0x200;

  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = spec.elf_class;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = spec.machine;
  eh.e_version = EV_CURRENT;
  eh.e_entry = 0xffffffff81000000ULL;
  eh.e_phoff = sizeof(Elf64_Ehdr);
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = 2;

  Elf64_Phdr load{};
  load.p_type = PT_LOAD;
  load.p_flags = PF_R | PF_X;
  load.p_offset = kElfSegmentOffset;
  load.p_vaddr = 0xffffffff80000000ULL + spec.paddr;
  load.p_paddr = spec.paddr;
  load.p_filesz = spec.file_size;
  load.p_memsz = spec.mem_size;
  load.p_align = 0x1000;
  Elf64_Phdr note{};
  note.p_type = PT_NOTE;
  note.p_offset = kNotesOffset;
  note.p_filesz = notes.size();
  note.p_align = 4;

  Bytes image;
  store(image, 0, eh);
  store(image, sizeof eh, load);
  store(image, sizeof eh + sizeof load, note);
  image.resize(kNotesOffset, 0);
  image.insert(image.end(), notes.begin(), notes.end());
  image.resize(kElfSegmentOffset, 0);
  const Bytes body = pattern_bytes(spec.file_size, 0x5a);
  image.insert(image.end(), body.begin(), body.end());
  return image;
}

// ---- Reading back guest memory ----
inline Bytes read_guest(const memory::GuestMemory& mem, std::uint64_t gpa, std::size_t size) {
  Bytes out(size);
  REQUIRE(mem.read(gpa, out).ok());
  return out;
}

inline std::uint8_t byte_sum(std::span<const std::uint8_t> bytes) {
  std::uint8_t sum = 0;
  for (std::uint8_t b : bytes) {
    sum = static_cast<std::uint8_t>(sum + b);
  }
  return sum;
}

}  // namespace keel::vmm::boot::test
