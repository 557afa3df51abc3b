#include "devices/pci/msi_route.hpp"

#include <utility>

namespace keel::pci {

MsiRoute::MsiRoute(MsiRoute&& other) noexcept
    : router_(other.router_),
      message_(other.message_),
      gsi_(std::exchange(other.gsi_, std::nullopt)),
      trigger_(std::exchange(other.trigger_, std::nullopt)) {}

MsiRoute& MsiRoute::operator=(MsiRoute&& other) noexcept {
  if (this != &other) {
    release();
    router_ = other.router_;
    message_ = other.message_;
    gsi_ = std::exchange(other.gsi_, std::nullopt);
    trigger_ = std::exchange(other.trigger_, std::nullopt);
  }
  return *this;
}

Status MsiRoute::set(const MsiMessage& message) {
  if (gsi_) {
    if (message == message_) {
      return ok_status();
    }
    KEEL_TRY_STATUS(router_->update_msi_route(*gsi_, message.address, message.data));
    message_ = message;
    return ok_status();
  }
  KEEL_TRY(EventFd trigger, EventFd::create(EFD_NONBLOCK));
  KEEL_TRY(std::uint32_t gsi, router_->add_msi_route(message.address, message.data));
  Status attached = router_->attach_irqfd(trigger.fd(), gsi);
  if (!attached.ok()) {
    (void)router_->remove_msi_route(gsi);
    return attached;
  }
  message_ = message;
  gsi_ = gsi;
  trigger_ = std::move(trigger);
  return ok_status();
}

void MsiRoute::release() {
  if (gsi_) {
    (void)router_->detach_irqfd(trigger_->fd(), *gsi_);
    (void)router_->remove_msi_route(*gsi_);
  }
  gsi_.reset();
  trigger_.reset();
}

Status MsiRoute::signal() const {
  if (!trigger_) {
    return Error::wrong_state("MSI route: signalled before it was set");
  }
  return trigger_->signal();
}

}  // namespace keel::pci
