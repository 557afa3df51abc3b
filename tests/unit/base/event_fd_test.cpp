#include "base/event_fd.hpp"

#include <sys/eventfd.h>

#include <catch2/catch.hpp>

namespace keel {
namespace {

TEST_CASE("EventFd accumulates signals until consumed") {
  auto efd = EventFd::create(EFD_NONBLOCK);
  REQUIRE(efd.ok());
  REQUIRE(efd->signal().ok());
  REQUIRE(efd->signal(2).ok());
  auto value = efd->consume();
  REQUIRE(value.ok());
  CHECK(*value == 3);

  auto empty = efd->consume();
  REQUIRE_FALSE(empty.ok());
  CHECK(empty.error().errno_value() == EAGAIN);
}

}  // namespace
}  // namespace keel
