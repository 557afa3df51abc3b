#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/result.hpp"
#include "devices/interrupt_router.hpp"
#include "devices/pci/msi_route.hpp"

namespace keel::pci {

// The MSI-X capability's Message Control bits and the table's layout (PCI 3.0 §6.8.2).
inline constexpr std::uint8_t kCapIdMsix = 0x11;
inline constexpr std::uint16_t kMsixEnable = 0x8000;
inline constexpr std::uint16_t kMsixFunctionMask = 0x4000;
inline constexpr std::uint16_t kMsixTableSizeMask = 0x7ff;
inline constexpr std::uint64_t kMsixEntrySize = 16;

// A function's MSI-X table and pending-bit array as the guest sees them, and the KVM routes that
// carry its vectors: one model for passthrough (VFIO) and emulated (virtio) functions.
//
// A vector is deliverable when MSI-X is enabled, the function is not masked, the vector is not
// masked and it has an address. Its route is created the first time it becomes deliverable,
// retargeted when its message changes, kept while it is masked (unmasking costs nothing) and
// released when MSI-X is disabled or the table reset. A vector Keel raises while it cannot be
// delivered sets its pending bit; the interrupt is delivered once it can be. For a passthrough
// function the device raises its vectors itself, through eventfds() handed to VFIO.
//
// The owner locks: no method is thread-safe.
class MsixTable {
 public:
  // `size`: 1 to 2048 vectors, all masked (power-on state).
  MsixTable(devices::InterruptRouter& router, std::uint16_t size);

  std::uint16_t size() const { return static_cast<std::uint16_t>(entries_.size()); }
  std::uint64_t table_bytes() const { return entries_.size() * kMsixEntrySize; }
  std::uint64_t pba_bytes() const { return (entries_.size() + 63) / 64 * 8; }

  // What a guest access did.
  struct Change {
    bool accepted = true;           // false: an access the table does not take (ignored)
    bool eventfds_changed = false;  // eventfds() differs from before the access
    Status routing;                 // the first routing failure; retried at the next change
  };

  // Guest accesses, offsets relative to the table's (PBA's) start. The table takes aligned
  // dwords and qwords inside it; other reads return zeros, other writes are ignored.
  Change read_table(std::uint64_t offset, std::span<std::uint8_t> data) const;
  Change write_table(std::uint64_t offset, std::span<const std::uint8_t> data);
  // Any size; bits past the last vector read 0. The PBA is read-only: writes are the owner's to
  // ignore.
  void read_pba(std::uint64_t offset, std::span<std::uint8_t> data) const;
  // Message Control as the guest wrote it: only Enable and Function Mask are looked at.
  Change set_control(std::uint16_t message_control);

  // Keel raises `vector` (an emulated device): delivered, or left pending until it can be.
  // A vector past the table (virtio's NO_VECTOR) is ignored.
  enum class Raised { kDelivered, kPending, kIgnored };
  Result<Raised> raise(std::uint16_t vector);

  // For VFIO_DEVICE_SET_IRQS: per vector, the eventfd of its route, or -1 when it cannot be
  // delivered (masked, no address, MSI-X disabled).
  std::vector<std::int32_t> eventfds() const;

  bool enabled() const { return enabled_; }
  bool function_masked() const { return function_masked_; }
  bool masked(std::uint16_t vector) const { return (entries_.at(vector).control & 1) != 0; }
  bool pending(std::uint16_t vector) const { return entries_.at(vector).pending; }
  const MsiMessage& message(std::uint16_t vector) const { return entries_.at(vector).message; }

  // Power-on state: disabled, every vector masked with no message and nothing pending, every
  // route released.
  void reset();

 private:
  struct Entry {
    MsiMessage message;
    std::uint32_t control = 1;  // bit 0: masked
    bool pending = false;
    MsiRoute route;
  };

  bool deliverable(const Entry& e) const;
  // Brings every vector's route in line with the table, and delivers what was pending.
  Change sync(std::vector<std::int32_t> before);

  std::vector<Entry> entries_;
  bool enabled_ = false, function_masked_ = false;
};

}  // namespace keel::pci
