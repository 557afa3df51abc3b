#include "base/size.hpp"

#include <catch2/catch.hpp>

namespace keel {
namespace {

TEST_CASE("parse_size accepts cloud-hypervisor style sizes") {
  CHECK(*parse_size("4096") == 4096);
  CHECK(*parse_size("64K") == 64 * kKiB);
  CHECK(*parse_size("512M") == 512 * kMiB);
  CHECK(*parse_size("512m") == 512 * kMiB);
  CHECK(*parse_size("2G") == 2 * kGiB);
  CHECK(*parse_size("2GiB") == 2 * kGiB);
  CHECK(*parse_size("1T") == 1024 * kGiB);
  CHECK(*parse_size("0") == 0);
}

TEST_CASE("parse_size rejects malformed sizes with a clear message") {
  for (const char* bad : {"", "M", "-1", "12X", "1.5G", "12MM", " 1", "1 G"}) {
    INFO(bad);
    auto r = parse_size(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().context().find(std::string("\"") + bad + "\"") != std::string::npos);
  }
  auto overflow = parse_size("18446744073709551616");
  REQUIRE_FALSE(overflow.ok());
  CHECK(overflow.error().context().find("too large") != std::string::npos);
  REQUIRE_FALSE(parse_size("17179869184G").ok());
}

TEST_CASE("format_size renders binary units") {
  CHECK(format_size(4096) == "4 KiB");
  CHECK(format_size(1000) == "1000 B");
  CHECK(format_size(512 * kMiB) == "512 MiB");
  CHECK(format_size(3 * kGiB / 2) == "1.5 GiB");
}

}  // namespace
}  // namespace keel
