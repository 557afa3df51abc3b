#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/result.hpp"
#include "memory/guest_memory.hpp"

namespace keel::vmm::boot {

struct InitramfsPlacement {
  std::uint64_t gpa = 0;
  std::uint64_t size = 0;
};

// The highest page-aligned address at which `size` bytes fit inside [lowest, limit_end), or
// nothing. High placement leaves the most room below for the kernel to decompress and grow into.
std::optional<std::uint64_t> highest_fit(std::uint64_t size, std::uint64_t lowest,
                                         std::uint64_t limit_end);

// Reads the initramfs at `path` into guest RAM at the highest fitting page inside
// [lowest, limit_end). Fails with both sizes when it does not fit.
Result<InitramfsPlacement> load_initramfs(const memory::GuestMemory& mem, const std::string& path,
                                          std::uint64_t lowest, std::uint64_t limit_end);

}  // namespace keel::vmm::boot
