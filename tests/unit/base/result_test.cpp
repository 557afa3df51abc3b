#include "base/result.hpp"

#include <catch2/catch.hpp>

namespace keel {
namespace {

Result<int> half(int x) {
  if (x % 2 != 0) {
    return Error::invalid("half of " + std::to_string(x) + ": odd number");
  }
  return x / 2;
}

Status chain(int x) {
  KEEL_TRY_STATUS(half(x));
  return ok_status();
}

TEST_CASE("Result carries a value or an error") {
  auto good = half(8);
  REQUIRE(good.ok());
  CHECK(*good == 4);

  auto bad = half(7);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().errno_value() == EINVAL);
  CHECK(bad.error().context() == "half of 7: odd number");
  CHECK(bad.error().message() == "half of 7: odd number");  // no strerror for bad input
}

TEST_CASE("Error keeps errno and builds messages with context") {
  errno = ENOSPC;
  Error e = Error::from_errno("VFIO_IOMMU_MAP_DMA iova 0x1000");
  CHECK(e.errno_value() == ENOSPC);
  CHECK(e.message() == "VFIO_IOMMU_MAP_DMA iova 0x1000: " + std::error_code(ENOSPC, std::system_category()).message());
  CHECK(e.wrap("map guest RAM").context() == "map guest RAM: VFIO_IOMMU_MAP_DMA iova 0x1000");
  CHECK(e.wrap("x").errno_value() == ENOSPC);
}

TEST_CASE("Status propagates through KEEL_TRY_STATUS") {
  CHECK(chain(2).ok());
  Status failed = chain(3);
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.error().context() == "half of 3: odd number");
}

TEST_CASE("Result holds move-only values") {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(5);
  REQUIRE(r.ok());
  std::unique_ptr<int> p = std::move(r).value();
  CHECK(*p == 5);
}

}  // namespace
}  // namespace keel

namespace keel {
namespace {

TEST_CASE("Error: a path the user named is the user's to fix, unless the host ran out") {
  CHECK(Error::opening_user_path(ENOENT, "open /k").kind() == ErrorKind::kInvalid);
  CHECK(Error::opening_user_path(EACCES, "open /k").kind() == ErrorKind::kInvalid);
  CHECK(Error::opening_user_path(ENOENT, "open /k").errno_value() == ENOENT);
  CHECK(Error::opening_user_path(ENOENT, "open /k").message() == "open /k: No such file or directory");
  for (int host : {EMFILE, ENFILE, ENOMEM, EIO}) {
    CHECK(Error::opening_user_path(host, "open /k").kind() == ErrorKind::kHost);
  }
}

}  // namespace
}  // namespace keel
