#pragma once

#include <cstdint>

#include "base/result.hpp"

namespace keel::devices {

// What a device needs from the VM's interrupt controller to deliver interrupts without a trip
// through the VMM: GSIs bound to eventfds (KVM irqfd), MSI routes, and level-triggered lines
// with a resample eventfd (signalled when the guest EOIs, so the device can be unmasked).
// The VMM implements it with KVM; unit tests with a recorder.
class InterruptRouter {
 public:
  virtual ~InterruptRouter() = default;

  // A fresh GSI routed as MSI with `address`/`data`; update_msi changes its message.
  virtual Result<std::uint32_t> add_msi_route(std::uint64_t address, std::uint32_t data) = 0;
  virtual Status update_msi_route(std::uint32_t gsi, std::uint64_t address, std::uint32_t data) = 0;
  virtual Status remove_msi_route(std::uint32_t gsi) = 0;

  // Signalling `eventfd` injects an edge on `gsi`.
  virtual Status attach_irqfd(int eventfd, std::uint32_t gsi) = 0;
  // Level-triggered: `eventfd` asserts `gsi`; KVM deasserts it and signals `resample_fd` on EOI.
  virtual Status attach_level_irqfd(int eventfd, int resample_fd, std::uint32_t gsi) = 0;
  virtual Status detach_irqfd(int eventfd, std::uint32_t gsi) = 0;
};

}  // namespace keel::devices
