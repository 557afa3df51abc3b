#pragma once

namespace keel::devices {

// An edge-triggered interrupt a device can raise. The VMM backs it with a KVM irqfd;
// unit tests count the edges.
class InterruptLine {
 public:
  virtual ~InterruptLine() = default;
  virtual void trigger() = 0;
};

}  // namespace keel::devices
