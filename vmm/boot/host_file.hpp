#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "memory/guest_memory.hpp"

namespace keel::vmm::boot {

// A regular host file (kernel, initramfs) opened for loading. `what` names its role in errors.
struct HostFile {
  UniqueFd fd;
  std::uint64_t size = 0;
  std::string path;
  std::string what;

  // "kernel /boot/vmlinuz": how every error about this file starts.
  std::string name() const { return what + " " + path; }
};

// Opens `path` read-only; fails on a missing file, a directory or a device.
Result<HostFile> open_host_file(const std::string& path, std::string_view what);

// Reads exactly out.size() bytes at `offset`; a short file is an error, not a short read.
Status read_at(const HostFile& file, std::uint64_t offset, std::span<std::uint8_t> out);

// The whole file in memory. Kernels are tens of MiB; initramfs images go to the guest directly.
Result<std::vector<std::uint8_t>> read_all(const HostFile& file);

// Copies the whole file to guest-physical `gpa` without an intermediate buffer.
Status read_into_guest(const HostFile& file, const memory::GuestMemory& mem, std::uint64_t gpa);

}  // namespace keel::vmm::boot
