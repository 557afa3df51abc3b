#include "vmm/cpuid.hpp"

#include <bit>

namespace keel::vmm {
namespace {

constexpr std::uint32_t kLeafFeatures = 0x1;
constexpr std::uint32_t kLeafCacheParams = 0x4;
constexpr std::uint32_t kLeafTopology = 0xb;
constexpr std::uint32_t kLeafTopologyV2 = 0x1f;
constexpr std::uint32_t kLeafAmdSizes = 0x8000'0008;
constexpr std::uint32_t kLeafAmdTopology = 0x8000'001e;

constexpr std::uint32_t kEcxHypervisor = 1U << 31;
constexpr std::uint32_t kEcxTscDeadline = 1U << 24;
constexpr std::uint32_t kEdxHtt = 1U << 28;

// Topology level types of leaf 0xB / 0x1F, ECX[15:8].
constexpr std::uint32_t kLevelSmt = 1;
constexpr std::uint32_t kLevelCore = 2;

void set_topology_leaf(kvm_cpuid_entry2& e, const CpuTopology& t) {
  const std::uint32_t core_shift = static_cast<std::uint32_t>(std::bit_width(t.vcpu_count - 1));
  e.edx = t.vcpu_id;  // x2APIC id
  switch (e.index) {
    case 0:  // SMT level: one thread per core
      e.eax = 0;
      e.ebx = 1;
      e.ecx = (kLevelSmt << 8) | e.index;
      break;
    case 1:  // core level: all vCPUs in one package
      e.eax = core_shift;
      e.ebx = t.vcpu_count;
      e.ecx = (kLevelCore << 8) | e.index;
      break;
    default:  // invalid level terminates the enumeration
      e.eax = 0;
      e.ebx = 0;
      e.ecx = e.index;
      break;
  }
}

}  // namespace

std::vector<kvm_cpuid_entry2> cpuid_for_vcpu(std::vector<kvm_cpuid_entry2> entries,
                                             const CpuTopology& t) {
  const std::uint32_t count = t.vcpu_count == 0 ? 1 : t.vcpu_count;
  for (kvm_cpuid_entry2& e : entries) {
    switch (e.function) {
      case kLeafFeatures:
        e.ebx = (e.ebx & 0x0000ffffU) | (t.vcpu_id << 24) | ((count & 0xff) << 16);
        e.ecx |= kEcxHypervisor;
        if (t.tsc_deadline) {
          e.ecx |= kEcxTscDeadline;
        }
        if (count > 1) {
          e.edx |= kEdxHtt;
        } else {
          e.edx &= ~kEdxHtt;
        }
        break;
      case kLeafCacheParams:
        // EAX[31:26]: cores per package minus one.
        e.eax = (e.eax & 0x03ffffffU) | (((count - 1) & 0x3f) << 26);
        break;
      case kLeafTopology:
      case kLeafTopologyV2:
        set_topology_leaf(e, CpuTopology{t.vcpu_id, count, t.tsc_deadline});
        break;
      case kLeafAmdSizes:
        // ECX[7:0] NC: cores minus one; ECX[15:12] ApicIdCoreIdSize.
        e.ecx = (e.ecx & ~0xf0ffU) | ((count - 1) & 0xff) |
                (static_cast<std::uint32_t>(std::bit_width(count - 1)) << 12);
        break;
      case kLeafAmdTopology:
        e.eax = t.vcpu_id;         // extended APIC id
        e.ebx = t.vcpu_id & 0xff;  // compute unit id; one thread per unit
        e.ecx = 0;                 // node 0
        break;
      default:
        break;
    }
  }
  return entries;
}

}  // namespace keel::vmm
