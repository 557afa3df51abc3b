#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <pthread.h>
#include <thread>

#include "base/result.hpp"
#include "devices/bus.hpp"
#include "devices/power_event.hpp"
#include "vmm/coalesced_ring.hpp"
#include "vmm/kvm.hpp"
#include "vmm/seccomp.hpp"

namespace keel::vmm {

// One vCPU and the thread that runs it: KVM_RUN in a loop, port-I/O and MMIO exits dispatched
// to the buses, power events and fatal errors reported to the VM through callbacks.
class Vcpu {
 public:
  using ErrorHandler = std::function<void(const Error&)>;

  Vcpu(std::uint32_t id, KvmVcpu kvm, const devices::Bus& pio, const devices::Bus& mmio,
       devices::PowerHandler on_power, ErrorHandler on_error,
       SeccompMode seccomp = SeccompMode::kOff, CoalescedRing* coalesced = nullptr)
      : id_(id), kvm_(std::move(kvm)), pio_(pio), mmio_(mmio), on_power_(std::move(on_power)),
        on_error_(std::move(on_error)), seccomp_(seccomp), coalesced_(coalesced) {}
  ~Vcpu() { stop(); }
  Vcpu(const Vcpu&) = delete;
  Vcpu& operator=(const Vcpu&) = delete;

  std::uint32_t id() const { return id_; }
  KvmVcpu& kvm() { return kvm_; }

  // Starts the thread; it runs until stop() or a power event / fatal error.
  void start();
  // Asks the thread to leave KVM_RUN and waits for it. Safe to call more than once.
  void stop();

  // Delivers a non-maskable interrupt to the guest on this vCPU (the thread that calls start()
  // and stop()): the vCPU thread issues KVM_NMI before it next enters the guest, kicked out of
  // KVM_RUN if it is there. A stopped (paused) vCPU gets it when it starts again; one the guest
  // has not started (waiting for INIT/SIPI) does not, as on hardware.
  void inject_nmi();

  // Installs the no-op handler for the signal that kicks vCPUs out of KVM_RUN; once per process.
  static void install_kick_signal();

 private:
  void thread_main();
  // Handles one exit; false when the vCPU must stop running.
  bool handle_exit();
  void handle_io(kvm_run* run);
  void handle_mmio(kvm_run* run);

  std::uint32_t id_;
  KvmVcpu kvm_;
  const devices::Bus& pio_;
  const devices::Bus& mmio_;
  devices::PowerHandler on_power_;
  ErrorHandler on_error_;
  SeccompMode seccomp_;  // the vCPU filter, installed by the thread before its first KVM_RUN
  CoalescedRing* coalesced_;  // the VM's, drained after each KVM_RUN; null without one
  // KVM_NMI for a pending inject_nmi(), on the vCPU thread; false when the vCPU must stop.
  bool deliver_nmi();
  // kvm_run.immediate_exit, which another thread sets to make the next KVM_RUN return at once.
  void set_immediate_exit(bool on);

  std::atomic<bool> stopping_{false};
  std::atomic<bool> nmi_pending_{false};
  std::thread thread_;
};

}  // namespace keel::vmm
