#pragma once

#include <linux/kvm.h>

#include <map>
#include <mutex>

#include "devices/interrupt_router.hpp"
#include "vmm/kvm.hpp"

namespace keel::vmm {

// InterruptRouter over KVM: keeps the VM's whole GSI routing table (KVM_SET_GSI_ROUTING replaces
// it at once), with the in-kernel PIC and IOAPIC pins first and MSI routes from GSI 24 up.
class KvmInterruptRouter : public devices::InterruptRouter {
 public:
  static constexpr std::uint32_t kIoapicPins = 24;
  static constexpr std::uint32_t kMaxGsi = 1024;  // KVM_MAX_IRQ_ROUTES is 4096 on x86

  explicit KvmInterruptRouter(KvmVm& vm) : vm_(vm) {}

  Result<std::uint32_t> add_msi_route(std::uint64_t address, std::uint32_t data) override;
  Status update_msi_route(std::uint32_t gsi, std::uint64_t address, std::uint32_t data) override;
  Status remove_msi_route(std::uint32_t gsi) override;
  Status attach_irqfd(int eventfd, std::uint32_t gsi) override;
  Status attach_level_irqfd(int eventfd, int resample_fd, std::uint32_t gsi) override;
  Status detach_irqfd(int eventfd, std::uint32_t gsi) override;

 private:
  Status commit_locked();

  KvmVm& vm_;
  std::mutex mutex_;
  std::map<std::uint32_t, kvm_irq_routing_msi> msi_routes_;  // by GSI
};

}  // namespace keel::vmm
