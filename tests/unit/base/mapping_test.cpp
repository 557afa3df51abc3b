#include "base/mapping.hpp"

#include <catch2/catch.hpp>

namespace keel {
namespace {

TEST_CASE("Mapping maps zeroed memory and unmaps it") {
  auto m = Mapping::anonymous(8192, "test buffer");
  REQUIRE(m.ok());
  CHECK(m->size() == 8192);
  CHECK(m->data()[0] == 0);
  m->data()[8191] = 0xab;
  Mapping moved = std::move(m).value();
  CHECK(moved.data()[8191] == 0xab);
  moved.reset();
  CHECK_FALSE(moved.valid());
}

TEST_CASE("Mapping refuses a zero size and reports mmap errors") {
  auto zero = Mapping::anonymous(0, "empty");
  REQUIRE_FALSE(zero.ok());
  CHECK(zero.error().context() == "map empty: size is 0");

  auto bad = Mapping::create(4096, PROT_READ, MAP_SHARED, /*fd=*/-1, 0, "bad fd");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().errno_value() == EBADF);
}

TEST_CASE("Mapping::anonymous_aligned returns memory at the alignment") {
  for (std::size_t align : {std::size_t{4096}, std::size_t{2} << 20}) {
    auto m = Mapping::anonymous_aligned(3 << 20, align, 0, "aligned");
    REQUIRE(m.ok());
    CHECK(reinterpret_cast<std::uintptr_t>(m->data()) % align == 0);
    CHECK(m->size() == (3U << 20));
    m->data()[m->size() - 1] = 1;  // the whole range is usable
  }
  CHECK_FALSE(Mapping::anonymous_aligned(4096, 3000, 0, "bad").ok());
  CHECK_FALSE(Mapping::anonymous_aligned(0, 4096, 0, "empty").ok());
}

}  // namespace
}  // namespace keel
