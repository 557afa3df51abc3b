#include "vmm/cpuid.hpp"

#include <catch2/catch.hpp>

namespace keel::vmm {
namespace {

kvm_cpuid_entry2 entry(std::uint32_t function, std::uint32_t index = 0) {
  kvm_cpuid_entry2 e{};
  e.function = function;
  e.index = index;
  return e;
}

const kvm_cpuid_entry2& find(const std::vector<kvm_cpuid_entry2>& v, std::uint32_t f, std::uint32_t i = 0) {
  for (const auto& e : v) {
    if (e.function == f && e.index == i) {
      return e;
    }
  }
  FAIL("leaf missing");
  return v.front();
}

TEST_CASE("cpuid gives each vCPU its APIC id and a consistent topology") {
  std::vector<kvm_cpuid_entry2> supported = {entry(0x1), entry(0x4, 0), entry(0xb, 0), entry(0xb, 1),
                                             entry(0xb, 2), entry(0x80000008), entry(0x8000001e)};
  supported[0].ebx = 0x00000800;  // CLFLUSH line size 8 qwords, kept
  supported[0].edx = 1U << 28;
  auto v = cpuid_for_vcpu(supported, CpuTopology{3, 4, true});

  const auto& l1 = find(v, 0x1);
  CHECK(l1.ebx >> 24 == 3);
  CHECK(((l1.ebx >> 16) & 0xff) == 4);
  CHECK((l1.ebx & 0xffff) == 0x0800);
  CHECK((l1.ecx & (1U << 31)) != 0);
  CHECK((l1.ecx & (1U << 24)) != 0);
  CHECK((l1.edx & (1U << 28)) != 0);

  CHECK(find(v, 0x4).eax >> 26 == 3);
  CHECK(find(v, 0xb, 0).ebx == 1);
  CHECK(find(v, 0xb, 0).edx == 3);
  CHECK(find(v, 0xb, 1).ebx == 4);
  CHECK(find(v, 0xb, 1).eax == 2);  // shift: 4 cores need 2 bits
  CHECK(((find(v, 0xb, 1).ecx >> 8) & 0xff) == 2);
  CHECK(find(v, 0xb, 2).ebx == 0);
  CHECK((find(v, 0x80000008).ecx & 0xff) == 3);
  CHECK(find(v, 0x8000001e).eax == 3);
}

TEST_CASE("cpuid for a single vCPU clears HTT and leaves TSC deadline alone when unsupported") {
  std::vector<kvm_cpuid_entry2> supported = {entry(0x1), entry(0xb, 1)};
  supported[0].edx = 1U << 28;
  auto v = cpuid_for_vcpu(supported, CpuTopology{0, 1, false});
  CHECK((find(v, 0x1).edx & (1U << 28)) == 0);
  CHECK((find(v, 0x1).ecx & (1U << 24)) == 0);
  CHECK(find(v, 0xb, 1).eax == 0);
  CHECK(find(v, 0xb, 1).ebx == 1);
}

}  // namespace
}  // namespace keel::vmm
