#pragma once

#include <cstdint>
#include <optional>

#include "base/event_fd.hpp"
#include "base/result.hpp"
#include "devices/interrupt_router.hpp"

namespace keel::pci {

// An MSI message: where the guest wants the write to go and what to write.
struct MsiMessage {
  std::uint64_t address = 0;
  std::uint32_t data = 0;
  bool operator==(const MsiMessage&) const = default;
};

// One MSI message wired into the VM's interrupt controller: an eventfd bound (irqfd) to a GSI
// routed with the message. Signalling the eventfd, from Keel or from the kernel (VFIO), injects
// the interrupt without a trip through the VMM. The only place that asks the InterruptRouter for
// MSI routes, for MSI and MSI-X, passthrough and virtio alike. Not thread-safe: the owner's lock
// covers it.
class MsiRoute {
 public:
  explicit MsiRoute(devices::InterruptRouter& router) : router_(&router) {}
  ~MsiRoute() { release(); }
  MsiRoute(MsiRoute&& other) noexcept;
  MsiRoute& operator=(MsiRoute&& other) noexcept;
  MsiRoute(const MsiRoute&) = delete;
  MsiRoute& operator=(const MsiRoute&) = delete;

  // Not live: creates the eventfd, the route and the irqfd, all rolled back on failure. Live:
  // retargets the route when the message changed.
  Status set(const MsiMessage& message);
  // Detaches the irqfd, removes the route and closes the eventfd; idempotent.
  void release();

  bool live() const { return gsi_.has_value(); }
  int eventfd() const { return trigger_ ? trigger_->fd() : -1; }
  // Injects the interrupt from Keel's side; the route must be live.
  Status signal() const;

 private:
  devices::InterruptRouter* router_;
  MsiMessage message_;
  std::optional<std::uint32_t> gsi_;
  std::optional<EventFd> trigger_;
};

}  // namespace keel::pci
