#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <set>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>

#include "base/event_fd.hpp"
#include "base/unique_fd.hpp"
#include "vmm/event_monitor.hpp"
#include "vmm/kvm.hpp"
#include "vmm/serial_output.hpp"
#include "vmm/vm.hpp"
#include "vmm/vmm_control.hpp"

namespace keel::vmm {

// The VMM: owns /dev/kvm, the VM's configuration and, while it runs, the Vm. Its event loop runs
// on the thread that calls run() (the VMM thread): guest power events, SIGINT/SIGTERM, terminal
// input for the serial console, and API requests, which arrive as closures from the API thread
// (VmmControl methods post and wait; they never touch VM state themselves).
class Vmm : public VmmControl {
 public:
  struct Options {
    bool serve_api = false;  // with --api-socket: keep running after the guest powers off
    SeccompMode seccomp = SeccompMode::kOff;  // for the vCPU threads (the caller filters itself)
    std::shared_ptr<EventMonitor> events;    // --event-monitor; null: none
  };
  static Result<std::unique_ptr<Vmm>> create(Options options);
  ~Vmm() override;

  // Creates and boots `config` right away (a payload on the command line).
  Status create_and_boot(const VmConfig& config);
  // Runs the event loop until the VMM should exit; returns keel's exit status.
  int run();

  // VmmControl (callable from any thread).
  Result<VmmPing> ping() override;
  Status shutdown_vmm() override;
  Status create_vm(const VmConfig& config) override;
  Status boot_vm() override;
  Status shutdown_vm() override;
  Status reboot_vm() override;
  Status pause_vm() override;
  Status resume_vm() override;
  Status delete_vm() override;
  Result<std::shared_ptr<const VmInfo>> vm_info() override;
  Result<Counters> vm_counters() override;
  Result<DeviceInfo> add_device(const DeviceConfig& device) override;
  Result<DeviceInfo> add_disk(const DiskConfig& disk) override;
  Result<DeviceInfo> add_net(const NetConfig& net, UniqueFd tap) override;
  Result<DeviceInfo> add_vsock(const VsockConfig& vsock) override;
  Result<DeviceInfo> add_fs(const FsConfig& fs) override;
  Status remove_device(const std::string& id) override;
  Status resize(const ResizeConfig& resize) override;
  Status power_button() override;
  // An action on a booted VM (running or paused; the guest sees it when resumed), with its event.
  Status act_on_booted_vm(const std::string& operation, const std::string& event,
                          const std::function<Status()>& act);
  // vm.resize's parts (the VMM thread, a VM configured): what desired_vcpus would be refused
  // for, then the changes.
  Status check_vcpus(std::uint32_t desired) const;
  Status resize_vcpus(std::uint32_t desired);
  Status resize_memory(std::uint64_t desired);
  Status nmi() override;

 private:
  // The longest console output of a running guest waits to be passed on.
  static constexpr int kConsoleFlushMs = 100;

  Vmm(Options options, UniqueFd signal_fd, EventFd requests)
      : options_(options), signal_fd_(std::move(signal_fd)), requests_(std::move(requests)) {}

  // Runs `fn` on the VMM thread and returns its result. Anything but a read (`reads_only`) makes
  // vm.info's snapshot stale first.
  template <typename T>
  T on_vmm_thread(std::function<T()> fn, bool reads_only = false);
  void run_requests();

  // vm.info is answered from a snapshot the VMM thread made, when it is younger than
  // kInfoMaxAgeMs and nothing changed since (API requests, the guest's exit, ejects): many
  // readers at once do not queue on the VMM thread. What only the guest changes (virtio-mem
  // blocks it plugged, a lazy container's entries) is at most that old.
  static constexpr int kInfoMaxAgeMs = 10;
  struct InfoSnapshot {
    std::shared_ptr<const VmInfo> info;
    std::chrono::steady_clock::time_point made;
  };
  void info_changed();  // any thread
  // The snapshot, if it may be served now; null if not.
  std::shared_ptr<const VmInfo> fresh_snapshot();

  Status boot_locked();
  // The guest runs (or is paused): what is added is hot-plugged, what is removed ejected.
  bool guest_running() const;
  // Takes device `id` out of the configuration (any kind); false if there is none.
  bool forget_device(const std::string& id);
  // The devices the guest ejected leave the VM and the configuration.
  void finish_ejects();
  // Writes an event to the monitor, if there is one.
  void emit(std::string_view source, std::string_view event,
            const nlohmann::json& properties = nullptr);
  // The VM's DMA reports re-read; a container whose count stopped agreeing with the kernel's
  // is an event (once, until it agrees again).
  std::vector<vfio::DmaReport> dma_reports();
  // On a running guest, plugs device `id` with `plug` and reports it (events, with the budget of
  // a passed-through device's container); returns its guest BDF, or "" when the VM is not
  // running (a cold add, nothing plugged).
  Result<std::string> plug_if_running(const std::string& id,
                                      const std::function<Result<std::uint8_t>(Vm&)>& plug);
  void destroy_vm();
  // Handles the end of a boot (power-off, reset, failure); false when run() should return.
  bool handle_vm_exit();

  Options options_;
  // Opened at the first boot: an idle keel serving its API needs no /dev/kvm until then.
  std::optional<Kvm> kvm_;
  UniqueFd signal_fd_;
  EventFd requests_;
  std::mutex queue_mutex_;
  std::deque<std::function<void()>> queue_;
  bool loop_done_ = false;  // guarded by queue_mutex_: calls after the loop fail fast
  std::mutex snapshot_mutex_;
  std::optional<InfoSnapshot> snapshot_;  // guarded by snapshot_mutex_
  std::uint64_t info_generation_ = 0;      // guarded by snapshot_mutex_: bumped by info_changed()
  bool info_closed_ = false;               // guarded by snapshot_mutex_: the loop ended

  // VMM-thread state.
  std::optional<VmConfig> config_;
  // TAPs handed over through the API (vm.add-net with SCM_RIGHTS), by link id; config_'s
  // NetConfig::fd names them.
  std::map<std::string, UniqueFd> net_fds_;
  // virtio-fs shares' back-end connections by id (with the socket they went to), kept across
  // boots.
  std::map<std::string, std::pair<std::string, std::shared_ptr<virtio::VhostUser>>> fs_backends_;
  Result<std::shared_ptr<virtio::VhostUser>> fs_backend(const FsConfig& fs);
  VmState state_ = VmState::kShutdown;
  std::optional<SerialSink> serial_;
  std::unique_ptr<Vm> vm_;
  bool stdin_open_ = true;  // until end of input on the terminal
  bool exit_requested_ = false;
  std::set<std::string> mismatched_;  // containers (first device) last seen inconsistent
  int exit_code_ = 0;
};

}  // namespace keel::vmm
