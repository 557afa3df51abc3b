#pragma once

#include <cstdint>
#include <string_view>

#include "base/result.hpp"
#include "memory/guest_memory.hpp"

namespace keel::vmm::boot {

// Writes the NUL-terminated kernel command line at layout::kCmdlineStart. `max_len` is the
// longest line (without the NUL) the kernel accepts; the layout's buffer caps it further.
Status write_cmdline(const memory::GuestMemory& mem, std::string_view cmdline,
                     std::uint64_t max_len);

}  // namespace keel::vmm::boot
