#pragma once

#include "devices/io_events.hpp"
#include "vmm/kvm.hpp"

namespace keel::vmm {

// IoEvents over KVM ioeventfds on the VM's MMIO bus.
class KvmIoEvents : public devices::IoEvents {
 public:
  explicit KvmIoEvents(KvmVm& vm) : vm_(vm) {}
  Status add(std::uint64_t gpa, int eventfd) override { return vm_.ioeventfd(gpa, eventfd, true); }
  Status remove(std::uint64_t gpa, int eventfd) override {
    return vm_.ioeventfd(gpa, eventfd, false);
  }

 private:
  KvmVm& vm_;
};

}  // namespace keel::vmm
