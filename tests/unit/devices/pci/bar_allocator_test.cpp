#include <catch2/catch.hpp>

#include "devices/pci/bar_allocator.hpp"

namespace keel::pci {
namespace {

TEST_CASE("BarAllocator: natural alignment, one window per space, a clear error when full") {
  BarAllocator bars({0xc000'0800, 0xc010'0000}, {0x1'0000'0000, 0x1'0010'0000}, {0x1001, 0x1100});
  auto a = bars.allocate(0x1000, BarSpace::kMmio32);
  auto b = bars.allocate(0x8000, BarSpace::kMmio64);
  auto c = bars.allocate(0x10, BarSpace::kIo);
  auto e = bars.allocate(0x10000, BarSpace::kMmio32);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  REQUIRE(c.ok());
  REQUIRE(e.ok());
  CHECK(*a == 0xc000'1000);
  CHECK(*b == 0x1'0000'0000);
  CHECK(*c == 0x1010);
  CHECK(*e == 0xc001'0000);
  auto full = bars.allocate(0x100000, BarSpace::kMmio32);
  REQUIRE_FALSE(full.ok());
  CHECK(full.error().kind() == ErrorKind::kInvalid);
  CHECK_THAT(full.error().message(), Catch::Contains("32-bit PCI MMIO window 0xc0000800-0xc00fffff"));
  CHECK_THAT(full.error().message(), Catch::Contains("0x100000 bytes"));
  auto io_full = bars.allocate(0x100, BarSpace::kIo);
  REQUIRE_FALSE(io_full.ok());
  CHECK_THAT(io_full.error().message(), Catch::Contains("PCI I/O window"));
  // A refused BAR takes nothing: a smaller one still fits where the next one would have gone.
  auto after = bars.allocate(0x1000, BarSpace::kMmio32);
  REQUIRE(after.ok());
  CHECK(*after == 0xc002'0000);
}

TEST_CASE("BarAllocator: sizes that are not powers of two are refused") {
  BarAllocator bars({0x1000, 0x10'0000}, {0x1'0000'0000, 0x2'0000'0000}, {0x1000, 0x2000});
  for (std::uint64_t size : {std::uint64_t{0}, std::uint64_t{3}, std::uint64_t{0x3000}}) {
    auto r = bars.allocate(size, BarSpace::kMmio32);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().message(), Catch::Contains("power of two"));
  }
}

TEST_CASE("BarAllocator: windows at the top of the address space do not wrap") {
  const std::uint64_t top = ~std::uint64_t{0};
  BarAllocator bars({0x1000, 0x2000}, {top - 0xfff, top}, {0x1000, 0x2000});
  // Aligning up 2^64 - 4096 to 8 KiB would wrap to 0: refused, not placed at 0.
  auto wraps = bars.allocate(0x2000, BarSpace::kMmio64);
  REQUIRE_FALSE(wraps.ok());
  auto huge = bars.allocate(std::uint64_t{1} << 63, BarSpace::kMmio64);
  REQUIRE_FALSE(huge.ok());
  auto fits = bars.allocate(0x800, BarSpace::kMmio64);
  REQUIRE(fits.ok());
  CHECK(*fits == top - 0xfff);
}

TEST_CASE("BarAllocator: a released BAR's place is taken by the next of its size and space") {
  BarAllocator bars({0x1000'0000, 0x1040'0000}, {0x1'0000'0000, 0x2'0000'0000}, {0xc000, 0x10000});
  auto a = bars.allocate(0x10'0000, BarSpace::kMmio32);
  auto b = bars.allocate(0x10'0000, BarSpace::kMmio32);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  bars.release(*a, 0x10'0000, BarSpace::kMmio32);
  // Another size, or another space, does not take it.
  auto other = bars.allocate(0x1000, BarSpace::kMmio32);
  REQUIRE(other.ok());
  CHECK(*other != *a);
  auto io = bars.allocate(0x10'0000, BarSpace::kMmio64);
  REQUIRE(io.ok());
  auto again = bars.allocate(0x10'0000, BarSpace::kMmio32);
  REQUIRE(again.ok());
  CHECK(*again == *a);
  // Plug and unplug cycles do not use the window up: 4 MiB holds 3 such BARs at once, ever.
  for (int cycle = 0; cycle < 100; ++cycle) {
    auto c = bars.allocate(0x10'0000, BarSpace::kMmio32);
    REQUIRE(c.ok());
    bars.release(*c, 0x10'0000, BarSpace::kMmio32);
  }
}

}  // namespace
}  // namespace keel::pci
