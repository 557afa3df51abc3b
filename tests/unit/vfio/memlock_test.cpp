#include "devices/vfio/memlock.hpp"

#include <sys/resource.h>

#include <catch2/catch.hpp>

namespace keel::vfio {
namespace {

TEST_CASE("memlock: CAP_IPC_LOCK from /proc/self/status") {
  CHECK(*cap_ipc_lock_in_status("Name:\tkeel\nCapEff:\t0000000000004000\n"));
  CHECK(*cap_ipc_lock_in_status("CapEff:\t000001ffffffffff\n"));
  CHECK_FALSE(*cap_ipc_lock_in_status("CapInh:\t0000000000004000\nCapEff:\t0000000000000000\n"));
  CHECK_FALSE(cap_ipc_lock_in_status("Name:\tkeel\n").ok());
  CHECK_FALSE(cap_ipc_lock_in_status("CapEff:\tzz\n").ok());
}

TEST_CASE("memlock: the process's own limit") {
  auto limit = read_memlock_limit();
  REQUIRE(limit.ok());
  rlimit raw{};
  REQUIRE(::getrlimit(RLIMIT_MEMLOCK, &raw) == 0);
  CHECK(limit->limit_bytes == (raw.rlim_cur == RLIM_INFINITY ? kMemlockUnlimited : raw.rlim_cur));
}

TEST_CASE("memlock: allows") {
  CHECK(MemlockLimit{100, false}.allows(100));
  CHECK_FALSE(MemlockLimit{100, false}.allows(101));
  CHECK(MemlockLimit{100, true}.allows(1'000'000));
  CHECK(MemlockLimit{kMemlockUnlimited, false}.allows(~0ULL));
}

}  // namespace
}  // namespace keel::vfio
