#include "vmm/boot/payload.hpp"

#include "base/size.hpp"
#include "vmm/boot/bzimage.hpp"
#include "vmm/boot/cpu_state.hpp"
#include "vmm/boot/host_file.hpp"
#include "vmm/boot/kernel_format.hpp"
#include "vmm/boot/pvh.hpp"

namespace keel::vmm::boot {

Status check_payload_files(const Payload& payload) {
  KEEL_TRY_STATUS(open_host_file(payload.kernel, "kernel"));
  if (payload.initramfs) {
    KEEL_TRY_STATUS(open_host_file(*payload.initramfs, "initramfs"));
  }
  return ok_status();
}

Result<BootInfo> load_payload(const memory::GuestMemory& mem, const Payload& payload,
                              std::uint64_t rsdp_gpa) {
  KEEL_TRY(auto file, open_host_file(payload.kernel, "kernel"));
  // Checked before reading so a mistyped path to a disk image fails fast instead of buffering it.
  if (file.size > mem.ram_size()) {
    return Error::invalid(file.name() + " is " + format_size(file.size) +
                          ", larger than guest RAM (" + format_size(mem.ram_size()) +
                          "); pass the kernel image or give the guest more memory");
  }
  KEEL_TRY(auto image, read_all(file));
  const std::string name = file.name();
  KEEL_TRY(auto format, detect_kernel_format(image, name));
  KEEL_TRY(auto info, format == KernelFormat::kElf
                          ? load_pvh(mem, image, name, payload, rsdp_gpa)
                          : load_bzimage(mem, image, name, payload, rsdp_gpa));
  KEEL_TRY_STATUS(write_boot_cpu_tables(mem));
  return info;
}

}  // namespace keel::vmm::boot
