#pragma once

#include <linux/kvm.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>

#include "base/mapping.hpp"

namespace keel::vmm {

// KVM's coalesced ring: the guest's writes to a registered zone (KVM_REGISTER_COALESCED_MMIO)
// are recorded in this page, shared by the whole VM, instead of exiting to the VMM. drain()
// replays them in order; a vCPU calls it after every KVM_RUN, before it handles the exit, so the
// devices see every access in the order the guest made it. Only byte-wide port zones are used:
// each record is one byte written to one port.
class CoalescedRing {
 public:
  // `port` and the bytes written to it, a run of consecutive records at a time.
  using Replay = std::function<void(std::uint16_t port, std::span<const std::uint8_t> bytes)>;

  // The ring in `page` (a vCPU's mmap page KVM_CAP_COALESCED_MMIO names).
  CoalescedRing(Mapping page, Replay replay);
  // Over a 4 KiB page the caller owns (unit tests).
  CoalescedRing(std::uint8_t* page, Replay replay);

  // Replays what the ring holds; cheap when it is empty. Safe from any thread.
  void drain();

  // The page as the kernel lays it out: `first` and `last` (u32 each), then the records. Not
  // through struct kvm_coalesced_mmio_ring: in C++ its __DECLARE_FLEX_ARRAY holds an empty
  // struct of one byte, which moves the records to offset 16 where the kernel has them at 8.
  static constexpr std::size_t kFirstOffset = 0;
  static constexpr std::size_t kLastOffset = 4;
  static constexpr std::size_t kRecordsOffset = 8;
  static constexpr std::size_t kPageSize = 4096;
  // Records in the page (KVM_COALESCED_MMIO_MAX on x86-64: 170).
  static constexpr std::uint32_t kCapacity =
      (kPageSize - kRecordsOffset) / sizeof(kvm_coalesced_mmio);

 private:
  Mapping mapping_;
  std::uint8_t* page_;
  Replay replay_;
  std::mutex mutex_;  // one reader at a time: `first` is the reader's
  bool broken_ = false;  // indexes out of range seen: the ring is no longer read
};

}  // namespace keel::vmm
