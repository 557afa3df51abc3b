#include "vmm/boot/elf_kernel.hpp"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "base/hex.hpp"

namespace keel::vmm::boot {

namespace {

constexpr char kXenNoteName[] = "Xen";  // with its NUL, namesz 4

template <typename T>
T load(std::span<const std::uint8_t> bytes, std::uint64_t offset) {
  T value{};
  std::memcpy(&value, bytes.data() + offset, sizeof value);
  return value;
}

// True if [offset, offset+size) lies inside a file of `file_size` bytes, without overflow.
bool in_file(std::uint64_t offset, std::uint64_t size, std::uint64_t file_size) {
  return offset <= file_size && size <= file_size - offset;
}

std::uint64_t align_up(std::uint64_t value, std::uint64_t align) {
  return (value + align - 1) & ~(align - 1);
}

Error corrupt(const std::string& name, const std::string& what) {
  return Error::invalid(name + ": " + what + "; the ELF file is corrupt or truncated");
}

// Finds the PVH entry among the notes in [offset, offset+size). `align` is the note alignment
// (4 for the Linux notes; 8 where the segment says so).
Result<std::optional<std::uint32_t>> scan_notes(std::span<const std::uint8_t> image,
                                                std::uint64_t offset, std::uint64_t size,
                                                std::uint64_t align, const std::string& name) {
  const std::uint64_t end = offset + size;
  std::uint64_t pos = offset;
  while (end - pos >= sizeof(Elf64_Nhdr)) {
    const auto note = load<Elf64_Nhdr>(image, pos);
    const std::uint64_t name_pos = pos + sizeof(Elf64_Nhdr);
    const std::uint64_t desc_pos = align_up(name_pos + note.n_namesz, align);
    const std::uint64_t next = align_up(desc_pos + note.n_descsz, align);
    if (desc_pos > end || note.n_descsz > end - desc_pos) {
      return corrupt(name, "ELF note at offset " + hex(pos) + " runs past its segment");
    }
    const bool is_xen =
        note.n_namesz == sizeof kXenNoteName &&
        std::memcmp(image.data() + name_pos, kXenNoteName, sizeof kXenNoteName) == 0;
    if (is_xen && note.n_type == kXenElfNotePhys32Entry) {
      if (note.n_descsz == sizeof(std::uint32_t)) {
        return std::optional<std::uint32_t>(load<std::uint32_t>(image, desc_pos));
      }
      if (note.n_descsz == sizeof(std::uint64_t)) {
        const auto entry = load<std::uint64_t>(image, desc_pos);
        if (entry > 0xffff'ffffULL) {
          return Error::invalid(name + ": PVH entry " + hex(entry) +
                                " is above 4 GiB, out of reach of a 32-bit entry");
        }
        return std::optional<std::uint32_t>(static_cast<std::uint32_t>(entry));
      }
      return corrupt(name, "PVH entry note has a " + std::to_string(note.n_descsz) +
                               "-byte descriptor (expected 4 or 8)");
    }
    if (next > end) {
      break;  // the last note's padding may be cut off at the segment end
    }
    pos = next;
  }
  return std::optional<std::uint32_t>();
}

}  // namespace

Result<PvhElfKernel> parse_pvh_elf(std::span<const std::uint8_t> image, const std::string& name) {
  if (image.size() < SELFMAG || std::memcmp(image.data(), ELFMAG, SELFMAG) != 0) {
    return Error::invalid(name + " is not an ELF file (no \\x7fELF magic)");
  }
  if (image.size() < EI_NIDENT) {
    return Error::invalid(name + " is truncated: " + std::to_string(image.size()) +
                          " bytes, less than an ELF identification (" + std::to_string(EI_NIDENT) +
                          ")");
  }
  if (image[EI_CLASS] != ELFCLASS64) {
    return Error::invalid(
        name + " is a " +
        (image[EI_CLASS] == ELFCLASS32 ? std::string("32-bit")
                                       : "class-" + std::to_string(image[EI_CLASS])) +
        " ELF; Keel boots 64-bit x86 kernels: pass a 64-bit vmlinux or a bzImage");
  }
  if (image.size() < sizeof(Elf64_Ehdr)) {
    return Error::invalid(name + " is truncated: " + std::to_string(image.size()) +
                          " bytes, less than an ELF64 header (" +
                          std::to_string(sizeof(Elf64_Ehdr)) + ")");
  }
  const auto ehdr = load<Elf64_Ehdr>(image, 0);
  if (ehdr.e_ident[EI_DATA] != ELFDATA2LSB) {
    return Error::invalid(name + " is a big-endian ELF; pass an x86-64 vmlinux");
  }
  if (ehdr.e_machine != EM_X86_64) {
    return Error::invalid(name + " is an ELF for machine " + std::to_string(ehdr.e_machine) +
                          ", not x86-64 (" + std::to_string(EM_X86_64) + ")");
  }
  if (ehdr.e_type != ET_EXEC) {
    return Error::invalid(name + " is an ELF of type " + std::to_string(ehdr.e_type) +
                          ", not an executable; pass the vmlinux from the top of the kernel build");
  }
  if (ehdr.e_phnum == 0) {
    return Error::invalid(name + " has no ELF program headers, so nothing to load");
  }
  if (ehdr.e_phentsize != sizeof(Elf64_Phdr)) {
    return corrupt(name, "program header size is " + std::to_string(ehdr.e_phentsize) + ", not " +
                             std::to_string(sizeof(Elf64_Phdr)));
  }
  const std::uint64_t ph_bytes = static_cast<std::uint64_t>(ehdr.e_phnum) * sizeof(Elf64_Phdr);
  if (!in_file(ehdr.e_phoff, ph_bytes, image.size())) {
    return corrupt(name, std::to_string(ehdr.e_phnum) + " program headers at offset " +
                             hex(ehdr.e_phoff) + " run past the end of the file (" +
                             std::to_string(image.size()) + " bytes)");
  }

  PvhElfKernel kernel;
  std::optional<std::uint32_t> entry;
  for (std::uint64_t i = 0; i < ehdr.e_phnum; ++i) {
    const auto ph = load<Elf64_Phdr>(image, ehdr.e_phoff + i * sizeof(Elf64_Phdr));
    const std::string where = "segment " + std::to_string(i) + " (offset " + hex(ph.p_offset) +
                              ", " + std::to_string(ph.p_filesz) + " bytes)";
    if (ph.p_type != PT_LOAD && ph.p_type != PT_NOTE) {
      continue;
    }
    if (!in_file(ph.p_offset, ph.p_filesz, image.size())) {
      return corrupt(name, where + " runs past the end of the file (" +
                               std::to_string(image.size()) + " bytes)");
    }
    if (ph.p_type == PT_NOTE) {
      if (entry) {
        continue;
      }
      KEEL_TRY(auto found,
               scan_notes(image, ph.p_offset, ph.p_filesz, ph.p_align == 8 ? 8 : 4, name));
      entry = found;
      continue;
    }
    if (ph.p_memsz == 0) {
      continue;
    }
    if (ph.p_filesz > ph.p_memsz) {
      return corrupt(name, where + " has more file bytes than memory bytes (" +
                               std::to_string(ph.p_memsz) + ")");
    }
    if (ph.p_paddr > ~0ULL - ph.p_memsz) {
      return corrupt(name, where + " at physical address " + hex(ph.p_paddr) + " wraps around");
    }
    kernel.segments.push_back({ph.p_offset, ph.p_filesz, ph.p_paddr, ph.p_memsz});
    kernel.highest_end = std::max(kernel.highest_end, ph.p_paddr + ph.p_memsz);
  }
  if (kernel.segments.empty()) {
    return Error::invalid(name + " has no loadable (PT_LOAD) segments");
  }
  if (!entry) {
    return Error::invalid(name + ": ELF kernel has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); " +
                          "build with CONFIG_PVH=y or pass a bzImage");
  }
  bool entry_loaded = false;
  for (const ElfLoadSegment& seg : kernel.segments) {
    entry_loaded = entry_loaded || (*entry >= seg.paddr && *entry - seg.paddr < seg.file_size);
  }
  if (!entry_loaded) {
    return Error::invalid(name + ": PVH entry " + hex(*entry) +
                          " is not inside any loaded segment; the ELF file is corrupt");
  }
  kernel.entry = *entry;
  return kernel;
}

}  // namespace keel::vmm::boot
