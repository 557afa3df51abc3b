#include "vmm/boot/initramfs.hpp"

#include "base/hex.hpp"
#include "base/size.hpp"
#include "vmm/boot/host_file.hpp"

namespace keel::vmm::boot {

namespace {
constexpr std::uint64_t kPageSize = 4096;
}  // namespace

std::optional<std::uint64_t> highest_fit(std::uint64_t size, std::uint64_t lowest,
                                         std::uint64_t limit_end) {
  if (size > limit_end) {
    return std::nullopt;
  }
  const std::uint64_t gpa = (limit_end - size) & ~(kPageSize - 1);
  if (gpa < lowest) {
    return std::nullopt;
  }
  return gpa;
}

Result<InitramfsPlacement> load_initramfs(const memory::GuestMemory& mem, const std::string& path,
                                          std::uint64_t lowest, std::uint64_t limit_end) {
  KEEL_TRY(auto file, open_host_file(path, "initramfs"));
  if (file.size == 0) {
    return Error::invalid(file.name() + " is empty; pass a cpio archive or no initramfs");
  }
  const auto gpa = highest_fit(file.size, lowest, limit_end);
  if (!gpa) {
    const std::uint64_t room = limit_end > lowest ? limit_end - lowest : 0;
    return Error::invalid(file.name() + " (" + format_size(file.size) + ", " +
                          std::to_string(file.size) + " bytes) does not fit in guest RAM: only " +
                          format_size(room) + " are free between the kernel's end at " +
                          hex(lowest) + " and the initramfs limit " + hex(limit_end) +
                          "; give the guest more memory or use a smaller initramfs");
  }
  KEEL_TRY_STATUS(read_into_guest(file, mem, *gpa));
  return InitramfsPlacement{*gpa, file.size};
}

}  // namespace keel::vmm::boot
