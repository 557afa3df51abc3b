#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

namespace keel::vmm {

struct CpuTopology {
  std::uint32_t vcpu_id;     // also the APIC id
  std::uint32_t vcpu_count;  // one socket, one thread per core, vcpu_count cores
  bool tsc_deadline = false;  // KVM_CAP_TSC_DEADLINE_TIMER: the guest may use TSC-deadline mode
};

// Turns KVM's supported CPUID into what one vCPU should see: its APIC id, a topology that agrees
// across leaves 1, 4, 0xB, 0x1F, 0x80000008 and 0x8000001E, and the hypervisor bit.
std::vector<kvm_cpuid_entry2> cpuid_for_vcpu(std::vector<kvm_cpuid_entry2> supported,
                                             const CpuTopology& topology);

}  // namespace keel::vmm
