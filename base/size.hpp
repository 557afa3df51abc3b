#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.hpp"

namespace keel {

inline constexpr std::uint64_t kKiB = 1024;
inline constexpr std::uint64_t kMiB = 1024 * kKiB;
inline constexpr std::uint64_t kGiB = 1024 * kMiB;

// Parses a size as cloud-hypervisor writes it: "512M", "2G", "4096", "64K" (binary units; an
// optional trailing "B"/"iB" is accepted). Rejects empty, negative, overflowing and unknown suffixes.
Result<std::uint64_t> parse_size(std::string_view text);

// Renders bytes for people: "512 MiB", "1.5 GiB", "4096 B".
std::string format_size(std::uint64_t bytes);

}  // namespace keel
