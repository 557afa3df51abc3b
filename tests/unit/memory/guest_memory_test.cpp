#include "memory/guest_memory.hpp"

#include <stdlib.h>

#include <array>
#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>

#include "base/size.hpp"
#include "memory/layout.hpp"

namespace keel::memory {
namespace {

TEST_CASE("plan_ram keeps RAM out of the 32-bit hole") {
  auto small = plan_ram(512 * kMiB);
  REQUIRE(small.size() == 1);
  CHECK(small[0].gpa == 0);
  CHECK(small[0].size == 512 * kMiB);

  auto exact = plan_ram(3 * kGiB);
  REQUIRE(exact.size() == 1);
  CHECK(exact[0].size == layout::kRam32End);

  auto big = plan_ram(6 * kGiB);
  REQUIRE(big.size() == 2);
  CHECK(big[0].gpa == 0);
  CHECK(big[0].size == 3 * kGiB);
  CHECK(big[1].gpa == 4 * kGiB);
  CHECK(big[1].size == 3 * kGiB);
}

TEST_CASE("GuestMemory translates and bounds-checks guest addresses") {
  auto mem = GuestMemory::create(64 * kMiB);
  REQUIRE(mem.ok());
  CHECK(mem->ram_size() == 64 * kMiB);
  CHECK(mem->end() == 64 * kMiB);

  CHECK(mem->translate(0, 1) == mem->regions()[0].host());
  CHECK(mem->translate(64 * kMiB - 4, 4) != nullptr);
  CHECK(mem->translate(64 * kMiB - 4, 5) == nullptr);
  CHECK(mem->translate(64 * kMiB, 1) == nullptr);
  CHECK(mem->translate(~0ULL, 2) == nullptr);

  const std::array<std::uint8_t, 4> data{1, 2, 3, 4};
  REQUIRE(mem->write(0x1000, data).ok());
  std::array<std::uint8_t, 4> back{};
  REQUIRE(mem->read(0x1000, back).ok());
  CHECK(back == data);

  auto v = mem->read_obj<std::uint32_t>(0x1000);
  REQUIRE(v.ok());
  CHECK(*v == 0x04030201);

  Status outside = mem->write(64 * kMiB - 2, data);
  REQUIRE_FALSE(outside.ok());
  CHECK(outside.error().errno_value() == EFAULT);
  CHECK(outside.error().context() == "guest write of 4 bytes at 0x3fffffe is outside guest RAM");
}

TEST_CASE("GuestMemory above 3 GiB splits around the hole") {
  auto mem = GuestMemory::create(3 * kGiB + 16 * kMiB);
  REQUIRE(mem.ok());
  REQUIRE(mem->regions().size() == 2);
  CHECK(mem->regions()[1].gpa() == layout::kRam64Start);
  CHECK(mem->translate(layout::kRam32End, 1) == nullptr);
  CHECK(mem->translate(layout::kRam64Start + 16 * kMiB - 1, 1) != nullptr);
  CHECK(mem->end() == layout::kRam64Start + 16 * kMiB);
}

TEST_CASE("GuestMemory refuses bad sizes with the number and the fix") {
  auto zero = GuestMemory::create(0);
  REQUIRE_FALSE(zero.ok());
  CHECK(zero.error().context().find("--memory size=") != std::string::npos);

  auto odd = GuestMemory::create(64 * kMiB + 100);
  REQUIRE_FALSE(odd.ok());
  CHECK(odd.error().context().find("67108964") != std::string::npos);

  auto tiny = GuestMemory::create(4 * kMiB);
  REQUIRE_FALSE(tiny.ok());
}

TEST_CASE("anonymous guest RAM starts 2 MiB-aligned (large pages for KVM)") {
  auto mem = GuestMemory::create(64 * kMiB);
  REQUIRE(mem.ok());
  CHECK(reinterpret_cast<std::uintptr_t>(mem->regions()[0].host()) % (2 * kMiB) == 0);
}

TEST_CASE("shared memory is backed by a memfd") {
  auto mem = GuestMemory::create(32 * kMiB, Backing{.shared = true});
  REQUIRE(mem.ok());
  CHECK(mem->regions()[0].fd() >= 0);
  auto anon = GuestMemory::create(32 * kMiB);
  REQUIRE(anon.ok());
  CHECK(anon->regions()[0].fd() == -1);
}

}  // namespace
}  // namespace keel::memory

namespace keel::memory {
namespace {

// A pool directory as sysfs shows it.
struct FakePool {
  std::filesystem::path dir;
  FakePool(std::uint64_t free, std::uint64_t reserved) {
    char tmpl[] = "/tmp/keel-hugepool.XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    std::ofstream(dir / "free_hugepages") << free << "\n";
    std::ofstream(dir / "resv_hugepages") << reserved << "\n";
  }
  ~FakePool() { std::filesystem::remove_all(dir); }
};

TEST_CASE("hugepages: the pool is checked before guest RAM is mapped, with the numbers and the fix") {
  FakePool pool(300, 50);  // 250 may still be reserved
  CHECK(check_hugepages(250, pool.dir).ok());
  Status short_pool = check_hugepages(256, pool.dir);
  REQUIRE_FALSE(short_pool.ok());
  CHECK(short_pool.error().kind() == ErrorKind::kInvalid);
  CHECK(short_pool.error().message() ==
        "hugepages=on needs 256 free 2 MiB hugepages for 512 MiB of guest RAM, and the host has "
        "250; reserve them (echo 256 > /proc/sys/vm/nr_hugepages, or more if others use them) or "
        "leave hugepages off");
  // A host without the pool has none.
  CHECK_FALSE(check_hugepages(1, pool.dir / "absent").ok());
}

TEST_CASE("hugepages: more guest RAM than the host's pool is an error, not a SIGBUS later") {
  // More pages than this host has free: refused before anything is mapped or touched.
  std::uint64_t free = 0;
  std::ifstream(std::string(kHugepagePool) + "/free_hugepages") >> free;
  const std::uint64_t size = (free + 8) * 2 * kMiB;
  auto memory = GuestMemory::create(size, Backing{false, true});
  REQUIRE_FALSE(memory.ok());
  CHECK_THAT(memory.error().message(), Catch::Contains("/proc/sys/vm/nr_hugepages"));
  auto shared = GuestMemory::create(size, Backing{true, true});
  REQUIRE_FALSE(shared.ok());
  CHECK_THAT(shared.error().message(), Catch::Contains("/proc/sys/vm/nr_hugepages"));
}

}  // namespace
}  // namespace keel::memory
