#pragma once

#include <cstdint>
#include <mutex>
#include <set>

#include "devices/memory_slots.hpp"
#include "vmm/kvm.hpp"

namespace keel::vmm {

// MemorySlots over KVM user memory regions. Slots below `first_slot` belong to guest RAM.
class KvmMemorySlots : public devices::MemorySlots {
 public:
  KvmMemorySlots(KvmVm& vm, std::uint32_t first_slot) : vm_(vm), first_slot_(first_slot) {}

  Result<std::uint32_t> add(std::uint64_t gpa, std::uint64_t size, void* host) override;
  Status remove(std::uint32_t slot) override;

 private:
  KvmVm& vm_;
  std::uint32_t first_slot_;
  std::mutex mutex_;
  std::set<std::uint32_t> used_;
};

}  // namespace keel::vmm
