#include "devices/bus.hpp"

#include <vector>

#include <catch2/catch.hpp>

namespace keel::devices {
namespace {

struct Recorder : BusDevice {
  std::vector<std::uint64_t> reads, writes;
  void read(std::uint64_t offset, std::span<std::uint8_t> data) override {
    reads.push_back(offset);
    std::fill(data.begin(), data.end(), 0x5a);
  }
  void write(std::uint64_t offset, std::span<const std::uint8_t>) override { writes.push_back(offset); }
};

TEST_CASE("Bus dispatches by range and passes offsets") {
  Bus bus("pio");
  auto dev = std::make_shared<Recorder>();
  REQUIRE(bus.insert(dev, 0x3f8, 8).ok());
  std::uint8_t b = 0;
  CHECK(bus.read(0x3fd, std::span(&b, 1)));
  CHECK(b == 0x5a);
  CHECK(dev->reads == std::vector<std::uint64_t>{5});
  CHECK(bus.write(0x3f8, std::span<const std::uint8_t>(&b, 1)));
  CHECK(dev->writes == std::vector<std::uint64_t>{0});
  CHECK_FALSE(bus.read(0x3f7, std::span(&b, 1)));
  CHECK_FALSE(bus.read(0x400, std::span(&b, 1)));
  std::uint32_t wide = 0;
  // An access that starts inside but runs past the end is not claimed.
  CHECK_FALSE(bus.read(0x3fe, std::span(reinterpret_cast<std::uint8_t*>(&wide), 4)));
}

TEST_CASE("Bus refuses empty, overflowing and overlapping ranges") {
  Bus bus("mmio");
  auto dev = std::make_shared<Recorder>();
  REQUIRE(bus.insert(dev, 0x1000, 0x100).ok());

  auto empty = bus.insert(dev, 0x5000, 0);
  REQUIRE_FALSE(empty.ok());
  CHECK(empty.error().context() == "mmio range 0x5000+0x0 is empty");

  auto overflow = bus.insert(dev, ~0ULL - 1, 4);
  REQUIRE_FALSE(overflow.ok());
  CHECK(overflow.error().context().find("overflows") != std::string::npos);

  for (auto [base, len] : {std::pair<std::uint64_t, std::uint64_t>{0x1000, 1}, {0xfff, 2}, {0x10ff, 1},
                           {0x800, 0x1000}, {0x1050, 0x10}}) {
    INFO(base << "+" << len);
    auto r = bus.insert(dev, base, len);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().errno_value() == EEXIST);
  }
  CHECK(bus.insert(dev, 0x1100, 0x10).ok());  // adjacent is fine
  CHECK(bus.insert(dev, 0xf00, 0x100).ok());
  CHECK(bus.remove(0x1000).ok());
  CHECK_FALSE(bus.remove(0x1000).ok());
  CHECK(bus.insert(dev, 0x1000, 0x100).ok());
}

}  // namespace
}  // namespace keel::devices
