#pragma once

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cstdint>

// <linux/kvm.h> declares kvm_cpuid2, kvm_msrs and kvm_irq_routing with __DECLARE_FLEX_ARRAY,
// which in C++ puts a one-byte empty struct before the array: the entries land at offset 12
// instead of 8 and the ioctl numbers built from those structs encode size 12, so the kernel
// answers EINVAL. Keel declares the same kernel ABI here with plain headers followed by the
// entries, and builds the ioctl numbers from them.
namespace keel::vmm::abi {

struct CountHeader {  // kvm_cpuid2, kvm_msrs and kvm_irq_routing all start like this
  std::uint32_t count;
  std::uint32_t flags_or_padding;
};
static_assert(sizeof(CountHeader) == 8);

inline constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, CountHeader);
inline constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, CountHeader);
inline constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, CountHeader);
inline constexpr unsigned long kGetMsrs = _IOWR(KVMIO, 0x88, CountHeader);
inline constexpr unsigned long kSetGsiRouting = _IOW(KVMIO, 0x6a, CountHeader);

// The numbers C headers produce (checked against a C build of <linux/kvm.h>).
static_assert(kGetSupportedCpuid == 0xc008ae05);
static_assert(kSetCpuid2 == 0x4008ae90);
static_assert(kSetMsrs == 0x4008ae89);
static_assert(kSetGsiRouting == 0x4008ae6a);

}  // namespace keel::vmm::abi
