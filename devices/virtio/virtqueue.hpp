#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/result.hpp"
#include "memory/guest_memory.hpp"

namespace keel::virtio {

// One request the driver made available: its device-readable bytes (copied out of guest
// memory, so that the guest changing them meanwhile cannot change what the device sees) and
// where its device-writable buffers are.
struct Chain {
  std::uint16_t head = 0;
  std::vector<std::uint8_t> readable;
  std::vector<std::pair<std::uint64_t, std::uint32_t>> writable;  // guest-physical, length
  std::uint32_t writable_size = 0;
};

// What pop() found.
struct Popped {
  enum class Kind {
    kNone,    // nothing new
    kChain,   // a valid request in `chain`
    kBad,     // a malformed request: return chain.head with used length 0, `error` says why
    kBroken,  // the ring itself is inconsistent (avail idx too far ahead): stop using it
  };
  Kind kind = Kind::kNone;
  Chain chain;
  std::string error;
};

// A split virtqueue (virtio 1.2 §2.7) in guest memory, as the device sees it. Every descriptor
// is checked before use: indexes within the ring, chains no longer than the ring (no loops), no
// indirect descriptors (VIRTIO_F_INDIRECT_DESC is not offered), device-readable buffers before
// device-writable ones, every buffer inside guest RAM, and at most kMaxChainBytes each way.
// Not thread-safe: the transport serialises access.
class Virtqueue {
 public:
  static constexpr std::uint32_t kMaxChainBytes = 64 * 1024;

  Virtqueue(const memory::GuestMemory& memory, std::uint16_t max_size)
      : memory_(&memory), max_size_(max_size), size_(max_size) {}

  // Driver-side configuration, through the transport.
  std::uint16_t max_size() const { return max_size_; }
  std::uint16_t size() const { return size_; }
  void set_size(std::uint16_t size) { size_ = size; }
  std::uint64_t desc = 0, avail = 0, used = 0;  // guest-physical ring addresses
  bool enabled() const { return enabled_; }

  // Checks the size and ring addresses (alignment, inside guest RAM) and enables the queue;
  // the error names what is wrong.
  Status enable();
  // Back to the reset state: disabled, max size, no addresses, indexes at 0.
  void reset();

  // The next available chain, if any.
  Popped pop();
  // Writes `data` (at most chain.writable_size bytes) into the chain's writable buffers.
  Status write_back(const Chain& chain, std::span<const std::uint8_t> data) const;
  // Returns `head` to the driver with `length` bytes written.
  Status push_used(std::uint16_t head, std::uint32_t length);
  // Whether the driver wants an interrupt for used buffers (VIRTQ_AVAIL_F_NO_INTERRUPT clear).
  bool wants_interrupt() const;

 private:
  Popped bad(std::uint16_t head, std::string why) const;

  const memory::GuestMemory* memory_;
  std::uint16_t max_size_;
  std::uint16_t size_;
  bool enabled_ = false;
  std::uint16_t last_avail_ = 0;
  std::uint16_t next_used_ = 0;
};

}  // namespace keel::virtio
