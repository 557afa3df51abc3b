#include "vmm/boot/pvh.hpp"

#include <algorithm>
#include <vector>

#include "base/hex.hpp"
#include "base/size.hpp"
#include "memory/layout.hpp"
#include "vmm/boot/cmdline.hpp"
#include "vmm/boot/e820.hpp"
#include "vmm/boot/elf_kernel.hpp"
#include "vmm/boot/initramfs.hpp"
#include "vmm/boot/start_info.hpp"

namespace keel::vmm::boot {

namespace layout = memory::layout;

namespace {

constexpr std::uint64_t k4GiB = 0x1'0000'0000;
// hvm_start_info, then the module list, then the memory map, all before the zero page's slot.
constexpr std::uint64_t kModlistGpa = layout::kPvhStartInfo + sizeof(HvmStartInfo);
constexpr std::uint64_t kMemmapGpa = kModlistGpa + sizeof(HvmModlistEntry);
constexpr std::uint64_t kStartInfoEnd = layout::kBootParams;

Status load_segments(const memory::GuestMemory& mem, std::span<const std::uint8_t> image,
                     const std::string& name, const PvhElfKernel& kernel) {
  for (const ElfLoadSegment& seg : kernel.segments) {
    const std::string where = "segment at " + hex(seg.paddr) + ".." + hex(seg.paddr + seg.mem_size);
    if (seg.paddr < layout::kHighMemoryStart) {
      return Error::invalid(name + ": " + where + " lies below 1 MiB, where the boot structures " +
                            "live; link the kernel at 1 MiB or above");
    }
    if (!mem.contains(seg.paddr, seg.mem_size)) {
      return Error::invalid(name + ": " + where + " is outside guest RAM (" +
                            format_size(mem.ram_size()) + "); give the guest more memory");
    }
    KEEL_TRY_STATUS(mem.write(seg.paddr, image.subspan(seg.file_offset, seg.file_size)));
    KEEL_TRY_STATUS(mem.fill(seg.paddr + seg.file_size, 0, seg.mem_size - seg.file_size));
  }
  return ok_status();
}

}  // namespace

Result<BootInfo> load_pvh(const memory::GuestMemory& mem, std::span<const std::uint8_t> image,
                          const std::string& name, const Payload& payload, std::uint64_t rsdp_gpa) {
  KEEL_TRY(auto kernel, parse_pvh_elf(image, name));
  KEEL_TRY_STATUS(load_segments(mem, image, name, kernel));

  KEEL_TRY_STATUS_WRAP(write_cmdline(mem, payload.cmdline, layout::kCmdlineMaxSize - 1), name);

  HvmStartInfo info;
  info.cmdline_paddr = layout::kCmdlineStart;
  info.rsdp_paddr = rsdp_gpa;
  if (payload.initramfs) {
    const std::uint64_t limit_end = std::min(mem.regions().front().end(), k4GiB);
    KEEL_TRY(auto initrd, load_initramfs(mem, *payload.initramfs, kernel.highest_end, limit_end));
    HvmModlistEntry module;
    module.paddr = initrd.gpa;
    module.size = initrd.size;
    KEEL_TRY_STATUS(mem.write_obj(kModlistGpa, module));
    info.nr_modules = 1;
    info.modlist_paddr = kModlistGpa;
  }

  const std::vector<E820Entry> map = build_e820(mem);
  const std::uint64_t capacity = (kStartInfoEnd - kMemmapGpa) / sizeof(HvmMemmapTableEntry);
  if (map.size() > capacity) {
    return Error::invalid("guest memory map has " + std::to_string(map.size()) +
                          " entries; the PVH start info page holds " + std::to_string(capacity));
  }
  std::vector<HvmMemmapTableEntry> memmap;
  for (const E820Entry& e : map) {
    memmap.push_back({e.addr, e.size, static_cast<std::uint32_t>(e.type), 0});
  }
  KEEL_TRY_STATUS(
      mem.write(kMemmapGpa, std::span(reinterpret_cast<const std::uint8_t*>(memmap.data()),
                                      memmap.size() * sizeof(HvmMemmapTableEntry))));
  info.memmap_paddr = kMemmapGpa;
  info.memmap_entries = static_cast<std::uint32_t>(memmap.size());
  KEEL_TRY_STATUS(mem.write_obj(layout::kPvhStartInfo, info));

  return BootInfo{Protocol::kPvh, kernel.entry, layout::kPvhStartInfo};
}

}  // namespace keel::vmm::boot
