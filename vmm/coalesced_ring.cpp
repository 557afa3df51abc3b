#include "vmm/coalesced_ring.hpp"

#include <array>
#include <atomic>

#include "base/hex.hpp"
#include "base/log.hpp"

namespace keel::vmm {

CoalescedRing::CoalescedRing(Mapping page, Replay replay)
    : page_(std::move(page)), ring_(reinterpret_cast<kvm_coalesced_mmio_ring*>(page_.data())),
      replay_(std::move(replay)) {}

CoalescedRing::CoalescedRing(kvm_coalesced_mmio_ring* ring, Replay replay)
    : ring_(ring), replay_(std::move(replay)) {}

void CoalescedRing::drain() {
  // KVM writes a record, then publishes it by moving `last` (after a write barrier); the reader
  // moves `first` once it has copied the record out.
  std::atomic_ref<std::uint32_t> first(ring_->first);
  std::atomic_ref<std::uint32_t> last(ring_->last);
  if (first.load(std::memory_order_relaxed) == last.load(std::memory_order_acquire)) {
    return;
  }
  std::lock_guard lock(mutex_);
  std::array<std::uint8_t, kCapacity> bytes{};
  std::size_t count = 0;
  std::uint16_t port = 0;
  const auto flush = [&] {
    if (count != 0) {
      replay_(port, std::span<const std::uint8_t>(bytes.data(), count));
      count = 0;
    }
  };
  std::uint32_t at = first.load(std::memory_order_relaxed);
  const std::uint32_t end = last.load(std::memory_order_acquire);
  // Values out of range would come from a broken kernel; never read past the page.
  if (at >= kCapacity || end >= kCapacity) {
    log::warn("vcpu", "coalesced ring indexes out of range; dropped", {{"first", at}, {"last", end}});
    first.store(end < kCapacity ? end : 0, std::memory_order_release);
    return;
  }
  while (at != end) {
    const kvm_coalesced_mmio& record = ring_->coalesced_mmio[at];
    const auto record_port = static_cast<std::uint16_t>(record.phys_addr);
    if (record.pio != 1 || record.len != 1 || record.phys_addr > 0xffff) {
      log::debug("vcpu", "coalesced record that is not a byte written to a port; skipped",
                 {{"addr", hex(record.phys_addr)}, {"len", record.len}});
    } else {
      if (count != 0 && record_port != port) {
        flush();
      }
      port = record_port;
      bytes[count++] = record.data[0];
    }
    at = (at + 1) % kCapacity;
  }
  flush();
  first.store(end, std::memory_order_release);
}

}  // namespace keel::vmm
