#pragma once

#include <cstdint>
#include <map>
#include <optional>

#include "base/result.hpp"
#include "devices/interrupt_router.hpp"
#include "devices/memory_slots.hpp"

// Recorders standing in for KVM's interrupt routing and memory slots, for the unit tests of PCI
// devices (the platform, passthrough and virtio).
namespace keel::testing {

// KVM's GSI routing and irqfds, recorded. It refuses what KVM would (an eventfd attached twice)
// and counts the calls that make no sense (removing or detaching what is not there).
class RecordingRouter final : public devices::InterruptRouter {
 public:
  struct Route {
    std::uint64_t address = 0;
    std::uint32_t data = 0;
  };
  struct Irqfd {
    std::uint32_t gsi = 0;
    int resample_fd = -1;  // -1: edge-triggered
  };

  Result<std::uint32_t> add_msi_route(std::uint64_t address, std::uint32_t data) override;
  Status update_msi_route(std::uint32_t gsi, std::uint64_t address, std::uint32_t data) override;
  Status remove_msi_route(std::uint32_t gsi) override;
  Status attach_irqfd(int eventfd, std::uint32_t gsi) override;
  Status attach_level_irqfd(int eventfd, int resample_fd, std::uint32_t gsi) override;
  Status detach_irqfd(int eventfd, std::uint32_t gsi) override;

  std::map<std::uint32_t, Route> routes;  // by GSI
  std::map<int, Irqfd> irqfds;            // by eventfd
  int routes_added = 0, route_updates = 0;
  int refused = 0;                    // calls on routes or irqfds that do not exist
  std::optional<int> fail_add_route;  // errno for the next add_msi_route calls

  // Interrupts signalled, since the last call, on the irqfd of the route whose message data is
  // `data` (0 when there is none).
  std::uint64_t fired(std::uint32_t data);

 private:
  std::uint32_t next_gsi_ = 24;  // above the IOAPIC's pins, like the VMM's router
};

// KVM memory slots, recorded. Refuses what KVM would: empty, unaligned and overlapping slots.
class RecordingSlots final : public devices::MemorySlots {
 public:
  struct Slot {
    std::uint64_t gpa = 0;
    std::uint64_t size = 0;
    void* host = nullptr;
  };

  Result<std::uint32_t> add(std::uint64_t gpa, std::uint64_t size, void* host) override;
  Status remove(std::uint32_t slot) override;

  // The slot that starts at `gpa`, if any.
  const Slot* at(std::uint64_t gpa) const;

  std::map<std::uint32_t, Slot> slots;  // by slot id
  int adds = 0, removes = 0, refused = 0;

 private:
  std::uint32_t next_ = 0;
};

}  // namespace keel::testing
