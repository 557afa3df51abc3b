#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include <catch2/catch.hpp>

// Just enough AML and resource-descriptor decoding to check what the encoder wrote.
namespace keel::vmm::boot::test {

struct PkgLength {
  std::size_t value = 0;  // includes the encoding's own bytes
  std::size_t bytes = 0;
};

inline PkgLength decode_pkg_length(std::span<const std::uint8_t> b, std::size_t at) {
  REQUIRE(at < b.size());
  const std::uint8_t lead = b[at];
  const std::size_t follow = lead >> 6;
  if (follow == 0) {
    return {static_cast<std::size_t>(lead & 0x3f), 1};
  }
  REQUIRE(at + follow < b.size());
  std::size_t value = lead & 0xf;
  for (std::size_t i = 0; i < follow; ++i) {
    value |= static_cast<std::size_t>(b[at + 1 + i]) << (4 + 8 * i);
  }
  return {value, follow + 1};
}

inline std::uint64_t decode_integer(std::span<const std::uint8_t> b, std::size_t& at) {
  REQUIRE(at < b.size());
  const std::uint8_t op = b[at++];
  std::size_t width = 0;
  switch (op) {
    case 0x00:
      return 0;
    case 0x01:
      return 1;
    case 0xff:
      return ~0ULL;
    case 0x0a:
      width = 1;
      break;
    case 0x0b:
      width = 2;
      break;
    case 0x0c:
      width = 4;
      break;
    case 0x0e:
      width = 8;
      break;
    default:
      FAIL("not an AML integer: opcode " << int(op));
      return 0;
  }
  REQUIRE(at + width <= b.size());
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < width; ++i) {
    value |= static_cast<std::uint64_t>(b[at + i]) << (8 * i);
  }
  at += width;
  return value;
}

// One decoded resource descriptor: address spaces fill space/min/max/length; IO fills
// min/max/length; IRQ puts its mask in min.
struct Resource {
  std::uint8_t tag = 0;
  std::uint8_t space = 0;
  std::uint8_t general_flags = 0;
  std::uint64_t min = 0;
  std::uint64_t max = 0;
  std::uint64_t length = 0;
};

inline std::uint64_t le(std::span<const std::uint8_t> b, std::size_t at, std::size_t width) {
  REQUIRE(at + width <= b.size());
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < width; ++i) {
    v |= static_cast<std::uint64_t>(b[at + i]) << (8 * i);
  }
  return v;
}

// Walks descriptors up to and including the end tag; fails on anything malformed.
inline std::vector<Resource> parse_resources(std::span<const std::uint8_t> b) {
  std::vector<Resource> out;
  std::size_t at = 0;
  while (true) {
    REQUIRE(at < b.size());
    const std::uint8_t tag = b[at];
    if ((tag & 0x80) == 0) {  // small descriptor
      const std::size_t len = tag & 0x7;
      REQUIRE(at + 1 + len <= b.size());
      if ((tag >> 3) == 0xf) {  // end tag
        REQUIRE(len == 1);
        REQUIRE(at + 2 == b.size());
        return out;
      }
      Resource r;
      r.tag = tag;
      if (tag == 0x47) {
        r.min = le(b, at + 2, 2);
        r.max = le(b, at + 4, 2);
        r.length = b[at + 7];
      } else if (tag == 0x22) {
        r.min = le(b, at + 1, 2);
      } else {
        FAIL("unexpected small descriptor " << int(tag));
      }
      out.push_back(r);
      at += 1 + len;
      continue;
    }
    const std::size_t len = le(b, at + 1, 2);
    REQUIRE(at + 3 + len <= b.size());
    std::size_t width = 0;
    switch (tag) {
      case 0x88:
        width = 2;
        break;
      case 0x87:
        width = 4;
        break;
      case 0x8a:
        width = 8;
        break;
      default:
        FAIL("unexpected large descriptor " << int(tag));
    }
    REQUIRE(len == 3 + 5 * width);
    Resource r;
    r.tag = tag;
    r.space = b[at + 3];
    r.general_flags = b[at + 4];
    const std::size_t fields = at + 6;
    r.min = le(b, fields + width, width);
    r.max = le(b, fields + 2 * width, width);
    r.length = le(b, fields + 4 * width, width);
    out.push_back(r);
    at += 3 + len;
  }
}

}  // namespace keel::vmm::boot::test
