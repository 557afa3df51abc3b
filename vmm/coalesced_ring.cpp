#include "vmm/coalesced_ring.hpp"

#include <array>
#include <atomic>
#include <cstring>

#include "base/hex.hpp"
#include "base/log.hpp"

namespace keel::vmm {

static_assert(sizeof(kvm_coalesced_mmio) == 24, "a coalesced record is 24 bytes");

CoalescedRing::CoalescedRing(Mapping page, Replay replay)
    : mapping_(std::move(page)), page_(static_cast<std::uint8_t*>(mapping_.data())),
      replay_(std::move(replay)) {}

CoalescedRing::CoalescedRing(std::uint8_t* page, Replay replay)
    : page_(page), replay_(std::move(replay)) {}

void CoalescedRing::drain() {
  // KVM writes a record, then publishes it by moving `last` (after a write barrier); the reader
  // moves `first` once it has copied the record out.
  std::atomic_ref<std::uint32_t> first(*reinterpret_cast<std::uint32_t*>(page_ + kFirstOffset));
  std::atomic_ref<std::uint32_t> last(*reinterpret_cast<std::uint32_t*>(page_ + kLastOffset));
  if (first.load(std::memory_order_acquire) == last.load(std::memory_order_acquire)) {
    return;
  }
  std::lock_guard lock(mutex_);
  if (broken_) {
    return;
  }
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
  // Values out of range would come from a broken kernel: never read past the page, and stop
  // reading the ring (said once; the writes it held are lost).
  if (at >= kCapacity || end >= kCapacity) {
    log::error("vcpu", "coalesced ring indexes out of range; the ring is no longer read",
               {{"first", at}, {"last", end}});
    broken_ = true;
    return;
  }
  while (at != end) {
    kvm_coalesced_mmio record{};
    std::memcpy(&record, page_ + kRecordsOffset + at * sizeof(record), sizeof(record));
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
