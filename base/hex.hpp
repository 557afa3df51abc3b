#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace keel {

// "0x1f": how addresses, ports and register values appear in messages and logs.
inline std::string hex(std::uint64_t value) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(value));
  return buf;
}

}  // namespace keel
