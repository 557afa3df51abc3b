#pragma once

#include <cstdint>

#include "base/event_fd.hpp"
#include "base/log.hpp"
#include "devices/interrupt.hpp"
#include "vmm/kvm.hpp"

namespace keel::vmm {

// An edge-triggered GSI backed by a KVM irqfd: trigger() is one eventfd write, no ioctl.
class IrqfdLine : public devices::InterruptLine {
 public:
  static Result<std::shared_ptr<IrqfdLine>> create(KvmVm& vm, std::uint32_t gsi) {
    auto efd = EventFd::create(EFD_NONBLOCK);
    if (!efd.ok()) {
      return efd.error();
    }
    KEEL_TRY_STATUS(vm.irqfd(efd->fd(), gsi));
    return std::shared_ptr<IrqfdLine>(new IrqfdLine(std::move(efd).value(), gsi));
  }

  void trigger() override {
    Status s = efd_.signal();
    if (!s.ok()) {
      log::warn("irq", "irqfd signal failed", {{"gsi", gsi_}, {"error", s.error().message()}});
    }
  }

 private:
  IrqfdLine(EventFd efd, std::uint32_t gsi) : efd_(std::move(efd)), gsi_(gsi) {}
  EventFd efd_;
  std::uint32_t gsi_;
};

}  // namespace keel::vmm
