#include "vmm/kvm_interrupt_router.hpp"

#include <vector>

namespace keel::vmm {
namespace {

kvm_irq_routing_entry irqchip_route(std::uint32_t gsi, std::uint32_t chip, std::uint32_t pin) {
  kvm_irq_routing_entry e{};
  e.gsi = gsi;
  e.type = KVM_IRQ_ROUTING_IRQCHIP;
  e.u.irqchip.irqchip = chip;
  e.u.irqchip.pin = pin;
  return e;
}

kvm_irq_routing_msi msi_message(std::uint64_t address, std::uint32_t data) {
  kvm_irq_routing_msi msi{};
  msi.address_lo = static_cast<std::uint32_t>(address);
  msi.address_hi = static_cast<std::uint32_t>(address >> 32);
  msi.data = data;
  return msi;
}

}  // namespace

Status KvmInterruptRouter::commit_locked() {
  std::vector<kvm_irq_routing_entry> table;
  // The default routing KVM_CREATE_IRQCHIP installs: GSI n to PIC pin n (n < 16) and IOAPIC pin n.
  for (std::uint32_t gsi = 0; gsi < kIoapicPins; ++gsi) {
    if (gsi < 8) {
      table.push_back(irqchip_route(gsi, KVM_IRQCHIP_PIC_MASTER, gsi));
    } else if (gsi < 16) {
      table.push_back(irqchip_route(gsi, KVM_IRQCHIP_PIC_SLAVE, gsi - 8));
    }
    table.push_back(irqchip_route(gsi, KVM_IRQCHIP_IOAPIC, gsi));
  }
  for (const auto& [gsi, msi] : msi_routes_) {
    kvm_irq_routing_entry e{};
    e.gsi = gsi;
    e.type = KVM_IRQ_ROUTING_MSI;
    e.u.msi = msi;
    table.push_back(e);
  }
  return vm_.set_gsi_routing(table);
}

Result<std::uint32_t> KvmInterruptRouter::add_msi_route(std::uint64_t address, std::uint32_t data) {
  std::lock_guard lock(mutex_);
  std::uint32_t gsi = kIoapicPins;
  while (msi_routes_.count(gsi) != 0) {
    ++gsi;
  }
  if (gsi >= kMaxGsi) {
    return Error::from_errno(ENOSPC, "no free GSI for an MSI route (" + std::to_string(kMaxGsi) +
                                         " in use)");
  }
  msi_routes_[gsi] = msi_message(address, data);
  Status committed = commit_locked();
  if (!committed.ok()) {
    msi_routes_.erase(gsi);
    return committed.error();
  }
  return gsi;
}

Status KvmInterruptRouter::update_msi_route(std::uint32_t gsi, std::uint64_t address,
                                            std::uint32_t data) {
  std::lock_guard lock(mutex_);
  auto it = msi_routes_.find(gsi);
  if (it == msi_routes_.end()) {
    return Error::not_found("GSI " + std::to_string(gsi) + " has no MSI route");
  }
  const kvm_irq_routing_msi old = it->second;
  it->second = msi_message(address, data);
  Status committed = commit_locked();
  if (!committed.ok()) {
    it->second = old;
  }
  return committed;
}

Status KvmInterruptRouter::remove_msi_route(std::uint32_t gsi) {
  std::lock_guard lock(mutex_);
  if (msi_routes_.erase(gsi) == 0) {
    return Error::not_found("GSI " + std::to_string(gsi) + " has no MSI route");
  }
  return commit_locked();
}

Status KvmInterruptRouter::attach_irqfd(int eventfd, std::uint32_t gsi) {
  return vm_.irqfd(eventfd, gsi);
}

Status KvmInterruptRouter::attach_level_irqfd(int eventfd, int resample_fd, std::uint32_t gsi) {
  return vm_.irqfd_resample(eventfd, resample_fd, gsi);
}

Status KvmInterruptRouter::detach_irqfd(int eventfd, std::uint32_t gsi) {
  return vm_.remove_irqfd(eventfd, gsi);
}

}  // namespace keel::vmm
