#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/result.hpp"
#include "memory/guest_memory.hpp"

namespace keel::virtio {

// A guest buffer of a chain: guest-physical address and length (never 0), inside guest RAM.
struct Buffer {
  std::uint64_t gpa = 0;
  std::uint32_t len = 0;
  bool operator==(const Buffer&) const = default;
};

// One request the driver made available: where its device-readable and device-writable buffers
// are. A device that acts on what a readable buffer says (a request header) copies it first
// (Virtqueue::read), so that the guest changing it meanwhile cannot change what the device
// checked; bulk data may be used in place.
struct Chain {
  std::uint16_t head = 0;
  std::vector<Buffer> readable;
  std::vector<Buffer> writable;
  std::uint32_t readable_size = 0;
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
// device-writable ones, every buffer inside guest RAM, and at most `max_chain_bytes` each way.
// Not thread-safe: the transport serialises access.
class Virtqueue {
 public:
  static constexpr std::uint32_t kMaxChainBytes = 64 * 1024;  // the default limit
  static constexpr unsigned kFeatureIndirect = 28;  // VIRTIO_RING_F_INDIRECT_DESC
  static constexpr unsigned kFeatureEventIdx = 29;  // VIRTIO_RING_F_EVENT_IDX
  // A queue size a device may offer: a power of two from 2 to 32768 (virtio 1.2 §2.7).
  static constexpr bool valid_max_size(std::uint32_t size) {
    return size >= 2 && size <= 32768 && (size & (size - 1)) == 0;
  }

  Virtqueue(const memory::GuestMemory& memory, std::uint16_t max_size,
            std::uint32_t max_chain_bytes = kMaxChainBytes)
      : memory_(&memory), max_size_(max_size), size_(max_size), max_chain_bytes_(max_chain_bytes) {}

  // Driver-side configuration, through the transport.
  std::uint16_t max_size() const { return max_size_; }
  std::uint16_t size() const { return size_; }
  void set_size(std::uint16_t size) { size_ = size; }
  std::uint64_t desc = 0, avail = 0, used = 0;  // guest-physical ring addresses
  bool enabled() const { return enabled_; }

  // Checks the size and ring addresses (alignment, inside guest RAM) and enables the queue;
  // the error names what is wrong.
  Status enable();
  // Back to the reset state: disabled, max size, no addresses, indexes at 0, no event index.
  void reset();
  // VIRTIO_RING_F_EVENT_IDX negotiated: the driver says after which used entry it wants an
  // interrupt (used_event), and the device after which available entry it wants a notification
  // (avail_event, written whenever pop() finds the ring empty). Without it, the driver's
  // NO_INTERRUPT flag.
  void set_event_idx(bool on) {
    event_idx_ = on;
    signalled_valid_ = false;
  }

  // The next available chain, if any.
  Popped pop();
  // Copies the chain's readable bytes from `skip` on into `out` (as many as fit); returns how
  // many were copied.
  static Result<std::size_t> read(const memory::GuestMemory& memory, const std::vector<Buffer>& from,
                                  std::uint64_t skip, std::span<std::uint8_t> out);
  // Host iovecs for `length` bytes of `buffers` from byte `skip` on, for I/O straight into or
  // out of guest memory; empty when the buffers hold fewer bytes (or leave guest RAM).
  static std::vector<iovec> iovecs(const memory::GuestMemory& memory,
                                   const std::vector<Buffer>& buffers, std::uint64_t skip,
                                   std::uint64_t length);
  // Writes `data` into the buffers `to` from byte `skip` on (as much as fits).
  static Status write(const memory::GuestMemory& memory, const std::vector<Buffer>& to,
                      std::uint64_t skip, std::span<const std::uint8_t> data);
  // Returns `head` to the driver with `length` bytes written.
  Status push_used(std::uint16_t head, std::uint32_t length);
  // Whether the driver wants an interrupt for used buffers (VIRTQ_AVAIL_F_NO_INTERRUPT clear).
  // Call once after each batch of push_used.
  bool wants_interrupt();

 private:
  Popped bad(std::uint16_t head, std::string why) const;

  const memory::GuestMemory* memory_;
  std::uint16_t max_size_;
  std::uint16_t size_;
  std::uint32_t max_chain_bytes_;
  bool enabled_ = false;
  std::uint16_t last_avail_ = 0;
  std::uint16_t next_used_ = 0;
  bool event_idx_ = false;
  bool signalled_valid_ = false;  // signalled_used_ holds the used index of the last decision
  std::uint16_t signalled_used_ = 0;
};

}  // namespace keel::virtio
