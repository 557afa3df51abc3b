#include "vmm/kvm_memory_slots.hpp"

namespace keel::vmm {

namespace {
constexpr std::uint32_t kMaxSlots = 509;  // KVM_USER_MEM_SLOTS on x86 (512 minus private slots)
}  // namespace

Result<std::uint32_t> KvmMemorySlots::add(std::uint64_t gpa, std::uint64_t size, void* host) {
  std::lock_guard lock(mutex_);
  std::uint32_t slot = first_slot_;
  while (used_.count(slot) != 0) {
    ++slot;
  }
  if (slot >= kMaxSlots) {
    return Error::from_errno(ENOSPC, "all " + std::to_string(kMaxSlots) + " KVM memory slots are in use");
  }
  KEEL_TRY_STATUS(vm_.set_memory_region(slot, gpa, size, host));
  used_.insert(slot);
  return slot;
}

Status KvmMemorySlots::remove(std::uint32_t slot) {
  std::lock_guard lock(mutex_);
  if (used_.erase(slot) == 0) {
    return Error::not_found("KVM memory slot " + std::to_string(slot) + " is not in use");
  }
  // A zero size deletes the slot.
  return vm_.set_memory_region(slot, 0, 0, nullptr);
}

}  // namespace keel::vmm
