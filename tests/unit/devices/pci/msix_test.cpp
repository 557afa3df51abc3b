#include "devices/pci/msix.hpp"

#include <catch2/catch.hpp>

#include <cstring>

#include "tests/unit/devices/recording_platform.hpp"

namespace keel::pci {
namespace {

using testing::RecordingRouter;

constexpr std::uint64_t kMsiAddress = 0xfee0'0000;

MsixTable::Change write32(MsixTable& t, std::uint64_t offset, std::uint32_t value) {
  std::uint8_t b[4];
  std::memcpy(b, &value, 4);
  return t.write_table(offset, b);
}

std::uint32_t read32(const MsixTable& t, std::uint64_t offset) {
  std::uint8_t b[4] = {0xaa, 0xaa, 0xaa, 0xaa};
  (void)t.read_table(offset, b);
  std::uint32_t v = 0;
  std::memcpy(&v, b, 4);
  return v;
}

// Programs vector `v` with address kMsiAddress and data 0x40 + v, leaving its mask as it is.
void program(MsixTable& t, std::uint16_t v) {
  REQUIRE(write32(t, v * 16 + 0, kMsiAddress).routing.ok());
  REQUIRE(write32(t, v * 16 + 4, 0).routing.ok());
  REQUIRE(write32(t, v * 16 + 8, 0x40U + v).routing.ok());
}

TEST_CASE("MsixTable: power-on state, layout and the accesses it takes") {
  RecordingRouter router;
  MsixTable t(router, 3);
  CHECK(t.size() == 3);
  CHECK(t.table_bytes() == 48);
  CHECK(t.pba_bytes() == 8);
  CHECK_FALSE(t.enabled());
  for (std::uint16_t v = 0; v < 3; ++v) {
    CHECK(t.masked(v));
    CHECK(read32(t, v * 16 + 12) == 1);
  }
  program(t, 1);
  CHECK(read32(t, 16) == kMsiAddress);
  CHECK(read32(t, 24) == 0x41);
  std::uint8_t q[8];
  CHECK(t.read_table(16, q).accepted);  // a qword: address low and high
  std::uint64_t address = 0;
  std::memcpy(&address, q, 8);
  CHECK(address == kMsiAddress);
  // Unaligned, odd-sized and out-of-table accesses are not taken: reads return zeros, writes
  // change nothing.
  std::uint8_t two[2] = {0xff, 0xff};
  CHECK_FALSE(t.read_table(16, two).accepted);
  CHECK(two[0] == 0);
  CHECK_FALSE(t.write_table(18, two).accepted);
  CHECK_FALSE(write32(t, 17, 0xdead).accepted);
  CHECK_FALSE(write32(t, 48, 0xdead).accepted);
  CHECK_FALSE(t.write_table(44 - 4 + 8, q).accepted);  // a qword past the end
  CHECK(read32(t, 16) == kMsiAddress);
  CHECK(router.routes.empty());  // nothing is routed before MSI-X is enabled
}

TEST_CASE("MsixTable: routes follow enable, function mask, vector mask and the message") {
  RecordingRouter router;
  MsixTable t(router, 2);
  program(t, 0);
  program(t, 1);
  auto enabled = t.set_control(kMsixEnable);
  CHECK(enabled.routing.ok());
  CHECK_FALSE(enabled.eventfds_changed);  // every vector still masked
  CHECK(router.routes.empty());

  auto unmasked = write32(t, 12, 0);
  CHECK(unmasked.eventfds_changed);
  REQUIRE(router.routes.size() == 1);
  CHECK(router.routes.begin()->second.data == 0x40);
  CHECK(t.eventfds()[0] >= 0);
  CHECK(t.eventfds()[1] == -1);

  // Masking keeps the route (unmasking again costs nothing), but VFIO must stop delivering.
  CHECK(write32(t, 12, 1).eventfds_changed);
  CHECK(router.routes.size() == 1);
  CHECK(t.eventfds()[0] == -1);
  CHECK(write32(t, 12, 0).eventfds_changed);
  CHECK(router.routes_added == 1);

  // A new message retargets the same route.
  CHECK_FALSE(write32(t, 8, 0x50).eventfds_changed);
  CHECK(router.routes.begin()->second.data == 0x50);
  CHECK(router.route_updates == 1);

  // The function mask stops every vector; disabling releases every route and irqfd.
  CHECK(t.set_control(kMsixEnable | kMsixFunctionMask).eventfds_changed);
  CHECK(t.eventfds()[0] == -1);
  CHECK(t.set_control(0).routing.ok());
  CHECK(router.routes.empty());
  CHECK(router.irqfds.empty());
  CHECK(router.refused == 0);
}

TEST_CASE("MsixTable: what Keel raises while it cannot be delivered waits in the PBA") {
  RecordingRouter router;
  MsixTable t(router, 70);  // two PBA qwords
  CHECK(t.pba_bytes() == 16);
  program(t, 0);
  program(t, 65);

  // Disabled: pending.
  auto r = t.raise(65);
  REQUIRE(r.ok());
  CHECK(*r == MsixTable::Raised::kPending);
  std::uint8_t pba[16] = {};
  t.read_pba(0, pba);
  CHECK(pba[8] == 0x02);  // bit 65
  CHECK(t.pending(65));

  // Enabled but masked: still pending; unmasking delivers it once and clears the bit.
  (void)t.set_control(kMsixEnable);
  CHECK(t.pending(65));
  (void)write32(t, 65 * 16 + 12, 0);
  CHECK_FALSE(t.pending(65));
  CHECK(router.fired(0x40 + 65) == 1);
  t.read_pba(8, std::span(pba, 1));
  CHECK(pba[0] == 0);

  // Deliverable: straight through.
  r = t.raise(65);
  REQUIRE(r.ok());
  CHECK(*r == MsixTable::Raised::kDelivered);
  CHECK(router.fired(0x40 + 65) == 1);

  // The function mask holds it back until it is lifted.
  (void)t.set_control(kMsixEnable | kMsixFunctionMask);
  CHECK(*t.raise(65) == MsixTable::Raised::kPending);
  CHECK(router.fired(0x40 + 65) == 0);
  (void)t.set_control(kMsixEnable);
  CHECK(router.fired(0x40 + 65) == 1);

  // A vector with no address cannot be delivered, and NO_VECTOR is ignored.
  (void)write32(t, 3 * 16 + 12, 0);
  CHECK(*t.raise(3) == MsixTable::Raised::kPending);
  CHECK(*t.raise(0xffff) == MsixTable::Raised::kIgnored);
}

TEST_CASE("MsixTable: a routing failure is reported, nothing is half-wired, the next change retries") {
  RecordingRouter router;
  MsixTable t(router, 1);
  program(t, 0);
  (void)t.set_control(kMsixEnable);
  router.fail_add_route = ENOSPC;
  auto failed = write32(t, 12, 0);
  REQUIRE_FALSE(failed.routing.ok());
  CHECK(failed.routing.error().errno_value() == ENOSPC);
  CHECK(t.eventfds()[0] == -1);
  CHECK(router.irqfds.empty());
  CHECK(*t.raise(0) == MsixTable::Raised::kPending);

  router.fail_add_route.reset();
  auto retried = write32(t, 8, 0x40);
  CHECK(retried.routing.ok());
  CHECK(retried.eventfds_changed);
  CHECK(router.fired(0x40) == 1);  // what was pending went out with the route
  CHECK_FALSE(t.pending(0));
}

TEST_CASE("MsixTable: reset returns to power-on and releases everything") {
  RecordingRouter router;
  {
    MsixTable t(router, 4);
    for (std::uint16_t v = 0; v < 4; ++v) {
      program(t, v);
      (void)write32(t, v * 16 + 12, 0);
    }
    (void)t.set_control(kMsixEnable);
    CHECK(router.routes.size() == 4);
    t.reset();
    CHECK(router.routes.empty());
    CHECK_FALSE(t.enabled());
    CHECK(t.masked(2));
    CHECK(read32(t, 2 * 16) == 0);
    program(t, 1);
    (void)write32(t, 16 + 12, 0);
    (void)t.set_control(kMsixEnable);
    CHECK(router.routes.size() == 1);
  }
  // Destroyed while enabled: its routes and irqfds go with it.
  CHECK(router.routes.empty());
  CHECK(router.irqfds.empty());
  CHECK(router.refused == 0);
}

}  // namespace
}  // namespace keel::pci
