#include "vmm/vcpu.hpp"

#include <atomic>
#include <csignal>
#include <cstring>
#include <mutex>

#include "base/hex.hpp"
#include "base/log.hpp"

namespace keel::vmm {
namespace {

int kick_signal() { return SIGRTMIN; }

void on_kick(int /*signal*/) {}

}  // namespace

void Vcpu::install_kick_signal() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction action {};
    action.sa_handler = on_kick;
    sigemptyset(&action.sa_mask);
    // No SA_RESTART: KVM_RUN must return EINTR so the loop sees the stop request.
    ::sigaction(kick_signal(), &action, nullptr);
  });
}

void Vcpu::start() {
  install_kick_signal();
  stopping_.store(false);
  thread_ = std::thread([this] { thread_main(); });
}

void Vcpu::stop() {
  if (!thread_.joinable()) {
    return;
  }
  stopping_.store(true);
  // immediate_exit covers a kick that lands before the thread enters KVM_RUN.
  set_immediate_exit(true);
  ::pthread_kill(thread_.native_handle(), kick_signal());
  thread_.join();
  set_immediate_exit(false);
}

void Vcpu::set_immediate_exit(bool on) {
  std::atomic_ref<std::uint8_t>(kvm_.run_area()->immediate_exit).store(on ? 1 : 0);
}

void Vcpu::inject_nmi() {
  nmi_pending_.store(true);
  // As stop() does: immediate_exit covers a thread about to enter KVM_RUN, the signal one in it.
  set_immediate_exit(true);
  if (thread_.joinable()) {
    ::pthread_kill(thread_.native_handle(), kick_signal());
  }
}

bool Vcpu::deliver_nmi() {
  if (!nmi_pending_.load()) {
    return true;
  }
  // Cleared before the flag is taken: an inject_nmi() after this sets it again, so its NMI
  // cannot wait for an unrelated exit. A stop() that set it too has set stopping_ first, which
  // the loop reads next.
  set_immediate_exit(false);
  if (!nmi_pending_.exchange(false)) {
    return true;
  }
  // A vCPU the guest has not started (waiting for INIT/SIPI) does not take NMIs; queued, KVM's
  // pending request would make every KVM_RUN return at once until the guest starts it.
  Result<std::uint32_t> state = kvm_.mp_state();
  if (!state.ok()) {
    on_error_(state.error().wrap("vCPU " + std::to_string(id_)));
    return false;
  }
  if (*state == KVM_MP_STATE_UNINITIALIZED || *state == KVM_MP_STATE_INIT_RECEIVED) {
    log::debug("vcpu", "NMI dropped: the guest has not started this vCPU", {{"vcpu", id_}});
    return true;
  }
  if (Status queued = kvm_.nmi(); !queued.ok()) {
    on_error_(queued.error().wrap("vCPU " + std::to_string(id_)));
    return false;
  }
  log::debug("vcpu", "NMI delivered", {{"vcpu", id_}});
  return true;
}

void Vcpu::thread_main() {
  const std::string name = "keel-vcpu" + std::to_string(id_);
  ::pthread_setname_np(::pthread_self(), name.substr(0, 15).c_str());
  if (Status filtered = install_seccomp_filter(ThreadKind::kVcpu, seccomp_); !filtered.ok()) {
    on_error_(filtered.error().wrap("vCPU " + std::to_string(id_)));
    return;
  }
  while (deliver_nmi() && !stopping_.load()) {
    Status ran = kvm_.run();
    // Writes KVM coalesced came before this exit: the devices see them first.
    if (coalesced_ != nullptr) {
      coalesced_->drain();
    }
    if (!ran.ok()) {
      const int err = ran.error().errno_value();
      if (err == EINTR || err == EAGAIN) {
        continue;  // kicked: the loop condition decides
      }
      on_error_(ran.error().wrap("vCPU " + std::to_string(id_)));
      return;
    }
    if (!handle_exit()) {
      return;
    }
  }
}

bool Vcpu::handle_exit() {
  kvm_run* run = kvm_.run_area();
  switch (run->exit_reason) {
    case KVM_EXIT_IO:
      handle_io(run);
      return true;
    case KVM_EXIT_MMIO:
      handle_mmio(run);
      return true;
    case KVM_EXIT_HLT:
      // With the in-kernel irqchip HLT stays in the kernel; a userspace HLT means the guest
      // halted with interrupts off for good.
      on_error_(Error::from_errno(ECANCELED, "vCPU " + std::to_string(id_) +
                                                 " halted with interrupts disabled"));
      return false;
    case KVM_EXIT_SHUTDOWN:
      // A triple fault: on PCs that resets the machine.
      log::info("vcpu", "triple fault, resetting", {{"vcpu", id_}});
      on_power_(devices::PowerEvent::kReset);
      return false;
    case KVM_EXIT_SYSTEM_EVENT:
      switch (run->system_event.type) {
        case KVM_SYSTEM_EVENT_SHUTDOWN:
          on_power_(devices::PowerEvent::kPowerOff);
          return false;
        case KVM_SYSTEM_EVENT_RESET:
          on_power_(devices::PowerEvent::kReset);
          return false;
        default:
          on_error_(Error::from_errno(ECANCELED, "vCPU " + std::to_string(id_) +
                                                     " system event " +
                                                     std::to_string(run->system_event.type)));
          return false;
      }
    case KVM_EXIT_FAIL_ENTRY:
      on_error_(Error::from_errno(ECANCELED,
                                  "vCPU " + std::to_string(id_) + " failed to enter the guest, "
                                  "hardware reason " +
                                      hex(run->fail_entry.hardware_entry_failure_reason)));
      return false;
    case KVM_EXIT_INTERNAL_ERROR:
      on_error_(Error::from_errno(ECANCELED, "vCPU " + std::to_string(id_) +
                                                 " KVM internal error, suberror " +
                                                 std::to_string(run->internal.suberror)));
      return false;
    case KVM_EXIT_INTR:
      return true;
    default:
      on_error_(Error::from_errno(ECANCELED, "vCPU " + std::to_string(id_) +
                                                 " unexpected exit reason " +
                                                 std::to_string(run->exit_reason)));
      return false;
  }
}

void Vcpu::handle_io(kvm_run* run) {
  const std::size_t size = run->io.size;
  // The data area lies inside the kvm_run mapping; KVM guarantees count * size fits.
  std::uint8_t* data = reinterpret_cast<std::uint8_t*>(run) + run->io.data_offset;
  for (std::uint32_t i = 0; i < run->io.count; ++i, data += size) {
    std::span<std::uint8_t> span(data, size);
    if (run->io.direction == KVM_EXIT_IO_OUT) {
      if (!pio_.write(run->io.port, span)) {
        log::debug("vcpu", "unclaimed port write", {{"port", hex(run->io.port)}, {"size", size}});
      }
    } else if (!pio_.read(run->io.port, span)) {
      std::memset(data, 0xff, size);  // nothing there: the bus floats high
    }
  }
}

void Vcpu::handle_mmio(kvm_run* run) {
  const std::size_t len = std::min<std::size_t>(run->mmio.len, sizeof(run->mmio.data));
  std::span<std::uint8_t> span(run->mmio.data, len);
  if (run->mmio.is_write != 0) {
    if (!mmio_.write(run->mmio.phys_addr, span)) {
      log::debug("vcpu", "unclaimed MMIO write", {{"addr", hex(run->mmio.phys_addr)}, {"len", len}});
    }
  } else if (!mmio_.read(run->mmio.phys_addr, span)) {
    std::memset(run->mmio.data, 0xff, len);
  }
}

}  // namespace keel::vmm
