#pragma once

#include <cstddef>
#include <cstdint>

namespace keel::fuzz {

// The fuzzer's bytes, taken a few at a time (little-endian); zeros once they run out.
struct Input {
  const std::uint8_t* p;
  std::size_t n;
  std::uint64_t take(int bytes) {
    std::uint64_t v = 0;
    for (int i = 0; i < bytes && n > 0; ++i, ++p, --n) {
      v |= static_cast<std::uint64_t>(*p) << (8 * i);
    }
    return v;
  }
};

}  // namespace keel::fuzz
