#include "vmm/vmm.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <future>

#include "base/log.hpp"
#include "base/size.hpp"
#include "base/version.hpp"
#include "devices/pci/root.hpp"
#include "devices/virtio/tap.hpp"
#include "vmm/boot/payload.hpp"
#include "vmm/serial_output.hpp"

namespace keel::vmm {
namespace {

Error no_vm() { return Error::not_found("no VM: create one first (vm.create)"); }

// The lowest "<prefix><N>" no entry of `items` has as its id (default_disk_id, default_net_id).
template <class Config>
std::string lowest_free_id(const std::vector<Config>& items, std::string (*name)(std::size_t)) {
  for (std::size_t n = 0;; ++n) {
    std::string id = name(n);
    if (std::none_of(items.begin(), items.end(), [&id](const Config& c) { return c.id == id; })) {
      return id;
    }
  }
}

Error wrong_state(const std::string& what, VmmControl::VmState state) {
  static const char* const kNames[] = {"created", "running", "paused", "shut down"};
  return Error::wrong_state(what + ": the VM is " + kNames[static_cast<int>(state)]);
}

}  // namespace

Result<std::unique_ptr<Vmm>> Vmm::create(Options options) {
  // SIGINT and SIGTERM are read from a signalfd; block them before any thread starts so every
  // thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGHUP);  // the terminal went away: stop as cleanly as for SIGTERM
  ::pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  UniqueFd signal_fd(::signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signal_fd) {
    return Error::from_errno("signalfd");
  }
  KEEL_TRY(EventFd requests, EventFd::create(EFD_NONBLOCK));
  // A reader that went away (event monitor, serial on a pipe) is an EPIPE to handle, not death.
  ::signal(SIGPIPE, SIG_IGN);
  std::unique_ptr<Vmm> vmm(new Vmm(options, std::move(signal_fd), std::move(requests)));
  vmm->emit("vmm", "starting", {{"version", kVersion}, {"pid", ::getpid()}});
  return vmm;
}

Vmm::~Vmm() { destroy_vm(); }

// ---- the VMM thread ----

template <typename T>
T Vmm::on_vmm_thread(std::function<T()> fn, bool reads_only) {
  if (!reads_only) {
    // Before it runs: a reader that finds no snapshot waits behind this change on the VMM
    // thread. And after: a reader queued before it may have made a snapshot of the old state.
    info_changed();
    fn = [this, inner = std::move(fn)]() -> T {
      T result = inner();
      info_changed();
      return result;
    };
  }
  std::packaged_task<T()> task(std::move(fn));
  std::future<T> result = task.get_future();
  {
    std::lock_guard lock(queue_mutex_);
    if (loop_done_) {
      return Error::from_errno(ESHUTDOWN, "the VMM is shutting down");
    }
    queue_.emplace_back([&task] { task(); });
  }
  (void)requests_.signal();
  return result.get();
}

void Vmm::info_changed() {
  std::lock_guard lock(snapshot_mutex_);
  ++info_generation_;
  snapshot_.reset();
}

std::shared_ptr<const VmmControl::VmInfo> Vmm::fresh_snapshot() {
  std::lock_guard lock(snapshot_mutex_);
  if (snapshot_ && !info_closed_ &&
      std::chrono::steady_clock::now() - snapshot_->made <
          std::chrono::milliseconds(kInfoMaxAgeMs)) {
    return snapshot_->info;
  }
  return nullptr;
}

void Vmm::run_requests() {
  (void)requests_.consume();
  for (;;) {
    std::function<void()> next;
    {
      std::lock_guard lock(queue_mutex_);
      if (queue_.empty()) {
        return;
      }
      next = std::move(queue_.front());
      queue_.pop_front();
    }
    next();
  }
}

Status Vmm::create_and_boot(const VmConfig& config) {
  KEEL_TRY_STATUS(check_vm(config));
  config_ = config;
  state_ = VmState::kCreated;
  return boot_locked();
}

int Vmm::run() {
  while (!exit_requested_) {
    const bool forward_stdin = stdin_open_ && vm_ && state_ == VmState::kRunning && config_ &&
                               config_->serial == SerialMode::kTty;
    pollfd fds[5] = {{requests_.fd(), POLLIN, 0},
                     {signal_fd_.get(), POLLIN, 0},
                     {vm_ ? vm_->exit_event_fd() : -1, POLLIN, 0},
                     {forward_stdin ? STDIN_FILENO : -1, POLLIN, 0},
                     {vm_ ? vm_->hotplug_event_fd() : -1, POLLIN, 0}};
    // While a guest runs, wake at least every kConsoleFlushMs: console output waits for the
    // guest's next exit (KVM's coalesced ring) or the end of its line; an idle guest has neither.
    const bool running = vm_ && state_ == VmState::kRunning;
    const int ready = ::poll(fds, 5, running ? kConsoleFlushMs : -1);
    if (ready < 0) {
      if (errno == EINTR) {
        continue;
      }
      log::error("vmm", "poll failed", {{"error", Error::from_errno("poll").message()}});
      exit_code_ = 1;
      break;
    }
    if (ready == 0 && running) {
      vm_->flush_console();
      continue;
    }
    if ((fds[0].revents & POLLIN) != 0) {
      run_requests();
    }
    if ((fds[1].revents & POLLIN) != 0) {
      signalfd_siginfo info{};
      [[maybe_unused]] ssize_t n = ::read(signal_fd_.get(), &info, sizeof info);
      // 1 when a guest was running (it did not power off), 0 when keel was idle.
      const bool guest_running = vm_ && (state_ == VmState::kRunning || state_ == VmState::kPaused);
      log::warn("vmm", "stopping on signal", {{"signal", info.ssi_signo}, {"guest_running", guest_running}});
      exit_code_ = guest_running ? 1 : 0;
      break;
    }
    if ((fds[4].revents & POLLIN) != 0 && vm_) {
      info_changed();
      finish_ejects();
    }
    if ((fds[2].revents & POLLIN) != 0 && !handle_vm_exit()) {
      break;
    }
    if ((fds[3].revents & (POLLIN | POLLHUP)) != 0 && vm_) {
      std::uint8_t buf[256];
      const ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
      if (n > 0) {
        vm_->serial_input(std::span(buf, static_cast<std::size_t>(n)));
      } else {
        stdin_open_ = false;  // end of input: the guest keeps running without it
      }
    }
  }
  {
    std::lock_guard lock(queue_mutex_);
    loop_done_ = true;
  }
  run_requests();  // answer what is already queued
  destroy_vm();
  {
    std::lock_guard lock(snapshot_mutex_);
    snapshot_.reset();
    info_closed_ = true;  // vm.info now asks the VMM thread, which says it is gone
  }
  return exit_code_;
}

bool Vmm::handle_vm_exit() {
  info_changed();
  const Vm::Outcome outcome = vm_->outcome();
  std::optional<Error> failure = vm_->error();
  const bool reboot = outcome == Vm::Outcome::kReset && !config_->exit_on_reboot;
  destroy_vm();
  state_ = VmState::kShutdown;
  emit("vm", outcome == Vm::Outcome::kReset ? "reset" : "shutdown",
       failure ? nlohmann::json{{"error", failure->message()}} : nlohmann::json(nullptr));
  if (reboot) {
    Status booted = boot_locked();
    if (booted.ok()) {
      return true;
    }
    failure = booted.error();
  }
  if (failure) {
    std::fprintf(stderr, "keel: %s\n", failure->message().c_str());
    exit_code_ = 1;
  } else {
    exit_code_ = 0;
  }
  // Without the API there is nothing left to do once the guest is gone.
  return options_.serve_api;
}

Status Vmm::boot_locked() {
  if (!serial_) {
    KEEL_TRY(auto serial, open_serial_output(*config_));
    serial_ = std::move(serial);
  }
  KEEL_TRY_STATUS(boot::check_payload_files(
      boot::Payload{config_->kernel, config_->initramfs, config_->cmdline}));
  if (!kvm_) {
    KEEL_TRY(kvm_, Kvm::open());
  }
  KEEL_TRY(auto vm, Vm::create(*kvm_, *config_, serial_->output, options_.seccomp,
                               [this](std::string_view source, std::string_view event,
                                      const nlohmann::json& properties) {
                                 emit(source, event, properties);  // any thread
                               },
                               /*acpi_events=*/options_.serve_api,
                               [this](const FsConfig& fs) { return fs_backend(fs); }));
  KEEL_TRY_STATUS(serial_->begin());
  vm_ = std::move(vm);
  log::info("vmm", "booting", {{"kernel", config_->kernel}});
  emit("vm", "booting");
  KEEL_TRY_STATUS(vm_->start());
  state_ = VmState::kRunning;
  emit("vm", "booted");
  for (const vfio::DmaReport& report : dma_reports()) {
    emit("dma", "container-opened", dma_event_properties(report));
  }
  return ok_status();
}

void Vmm::destroy_vm() {
  if (vm_) {
    finish_ejects();  // what the guest ejected stays out of the configuration
    vm_->stop();
    vm_.reset();
  }
}

// ---- VmmControl ----

Result<VmmControl::VmmPing> Vmm::ping() {
  return VmmPing{kVersion, static_cast<std::uint32_t>(::getpid())};
}

Status Vmm::shutdown_vmm() {
  return on_vmm_thread<Status>([this]() -> Status {
    exit_requested_ = true;
    exit_code_ = 0;
    emit("vmm", "shutdown");
    return ok_status();
  });
}

Status Vmm::create_vm(const VmConfig& config) {
  return on_vmm_thread<Status>([this, &config]() -> Status {
    if (config_) {
      return Error::wrong_state("a VM already exists; delete it first (vm.delete)");
    }
    KEEL_TRY_STATUS(check_vm(config));
    config_ = config;
    serial_.reset();
    state_ = VmState::kCreated;
    emit("vm", "created");
    return ok_status();
  });
}

Status Vmm::boot_vm() {
  return on_vmm_thread<Status>([this]() -> Status {
    if (!config_) {
      return no_vm();
    }
    if (state_ == VmState::kRunning || state_ == VmState::kPaused) {
      return wrong_state("vm.boot", state_);
    }
    Status booted = boot_locked();
    if (!booted.ok()) {
      destroy_vm();
      state_ = VmState::kShutdown;
    }
    return booted;
  });
}

Status Vmm::shutdown_vm() {
  return on_vmm_thread<Status>([this]() -> Status {
    if (!config_) {
      return no_vm();
    }
    if (state_ != VmState::kRunning && state_ != VmState::kPaused) {
      return wrong_state("vm.shutdown", state_);
    }
    destroy_vm();
    state_ = VmState::kShutdown;
    emit("vm", "shutdown");
    return ok_status();
  });
}

Status Vmm::reboot_vm() {
  return on_vmm_thread<Status>([this]() -> Status {
    if (!config_) {
      return no_vm();
    }
    if (state_ != VmState::kRunning && state_ != VmState::kPaused) {
      return wrong_state("vm.reboot", state_);
    }
    destroy_vm();
    state_ = VmState::kShutdown;
    emit("vm", "rebooting");
    return boot_locked();
  });
}

Status Vmm::pause_vm() {
  return on_vmm_thread<Status>([this]() -> Status {
    if (!config_) {
      return no_vm();
    }
    if (state_ != VmState::kRunning) {
      return wrong_state("vm.pause", state_);
    }
    vm_->stop();
    state_ = VmState::kPaused;
    emit("vm", "paused");
    return ok_status();
  });
}

Status Vmm::resume_vm() {
  return on_vmm_thread<Status>([this]() -> Status {
    if (!config_) {
      return no_vm();
    }
    if (state_ != VmState::kPaused) {
      return wrong_state("vm.resume", state_);
    }
    KEEL_TRY_STATUS(vm_->start());
    state_ = VmState::kRunning;
    emit("vm", "resumed");
    return ok_status();
  });
}

Status Vmm::act_on_booted_vm(const std::string& operation, const std::string& event,
                             const std::function<Status()>& act) {
  return on_vmm_thread<Status>([&]() -> Status {
    if (!config_) {
      return no_vm();
    }
    if (state_ != VmState::kRunning && state_ != VmState::kPaused) {
      return wrong_state(operation, state_);
    }
    KEEL_TRY_STATUS(act());
    emit("vm", event);
    return ok_status();
  });
}

Status Vmm::power_button() {
  return act_on_booted_vm("vm.power-button", "power-button",
                          [this] { return vm_->press_power_button(); });
}

Status Vmm::nmi() {
  return act_on_booted_vm("vm.nmi", "nmi", [this] {
    vm_->inject_nmi();
    return ok_status();
  });
}

Status Vmm::delete_vm() {
  return on_vmm_thread<Status>([this]() -> Status {
    const bool existed = config_.has_value();
    destroy_vm();
    config_.reset();
    net_fds_.clear();
    fs_backends_.clear();
    serial_.reset();
    state_ = VmState::kShutdown;
    if (existed) {
      emit("vm", "deleted");
    }
    return ok_status();
  });
}

Result<std::shared_ptr<const VmmControl::VmInfo>> Vmm::vm_info() {
  using Answer = Result<std::shared_ptr<const VmInfo>>;
  if (auto snapshot = fresh_snapshot()) {
    return snapshot;
  }
  return on_vmm_thread<Answer>([this]() -> Answer {
    if (auto snapshot = fresh_snapshot()) {
      return snapshot;  // made by a reader queued before this one
    }
    std::uint64_t generation = 0;
    {
      std::lock_guard lock(snapshot_mutex_);
      generation = info_generation_;
    }
    if (!config_) {
      return no_vm();
    }
    VmInfo info{*config_, state_,
                vm_ ? vm_->memory().ram_size() + vm_->hotplugged_memory() : config_->memory_size,
                {}, {}};
    if (vm_) {
      for (const Passthrough::Passed& p : vm_->passthrough_devices()) {
        info.devices.push_back(DeviceInfo{p.id, pci::guest_bdf(p.slot)});
      }
      for (const Vm::VirtioFunction& v : vm_->virtio_functions()) {
        info.devices.push_back(DeviceInfo{v.id, pci::guest_bdf(v.slot, v.segment)});
      }
      info.dma = dma_reports();
    } else {
      for (const DeviceConfig& d : config_->devices) {
        info.devices.push_back(DeviceInfo{d.id, ""});
      }
      for (const DiskConfig& d : config_->disks) {
        info.devices.push_back(DeviceInfo{d.id, ""});
      }
      for (const NetConfig& n : config_->nets) {
        info.devices.push_back(DeviceInfo{n.id, ""});
      }
      for (const FsConfig& f : config_->fs) {
        info.devices.push_back(DeviceInfo{f.id, ""});
      }
    }
    auto shared = std::make_shared<const VmInfo>(std::move(info));
    std::lock_guard lock(snapshot_mutex_);
    if (generation == info_generation_) {  // nothing changed while it was made
      snapshot_ = InfoSnapshot{shared, std::chrono::steady_clock::now()};
    }
    return shared;
  }, /*reads_only=*/true);
}

Result<VmmControl::Counters> Vmm::vm_counters() {
  return on_vmm_thread<Result<Counters>>([this]() -> Result<Counters> {
    if (!config_) {
      return no_vm();
    }
    Counters counters;
    if (!vm_) {
      return counters;
    }
    for (const Passthrough::Passed& p : vm_->passthrough_devices()) {
      const vfio::VfioPciDevice::Counters c = p.device->counters();
      counters.devices[p.id] = {{"config_reads", c.config_reads},
                                {"config_writes", c.config_writes},
                                {"bar_traps", c.bar_traps},
                                {"msi_enables", c.msi_enables},
                                {"msix_enables", c.msix_enables}};
    }
    for (const Vm::VirtioFunction& v : vm_->virtio_functions()) {
      counters.devices[v.id] = v.transport->with_device(
          [](const virtio::VirtioDevice& device) { return device.counters(); });
    }
    counters.dma = dma_reports();
    if (const VirtualIommu* viommu = vm_->viommu()) {
      counters.viommu = viommu->counters();
    }
    return counters;
  }, /*reads_only=*/true);
}

bool Vmm::guest_running() const {
  return vm_ && (state_ == VmState::kRunning || state_ == VmState::kPaused);
}

Result<VmmControl::DeviceInfo> Vmm::add_device(const DeviceConfig& device) {
  return on_vmm_thread<Result<DeviceInfo>>([this, &device]() -> Result<DeviceInfo> {
    if (!config_) {
      return no_vm();
    }
    Status checked = check_device(device);
    if (!checked.ok()) {
      return checked.error().wrap("device " + (device.id.empty() ? device.path : device.id));
    }
    // Said now rather than at vm.boot (the rest of the device is checked when it is opened).
    struct stat st {};
    if (::stat(device.path.c_str(), &st) != 0) {
      return Error::not_found("device " + device.id + ": " + device.path +
                              " does not exist; give the sysfs path of a host PCI function "
                              "(ls /sys/bus/pci/devices)");
    }
    for (const DeviceConfig& d : config_->devices) {
      if (d.id == device.id || d.path == device.path) {
        return Error::exists("device " + device.id + " (" + device.path +
                             ") is already added; remove it first "
                             "(vm.remove-device) or give another id and path");
      }
    }
    KEEL_TRY(const std::string bdf,
             plug_if_running(device.id, [&](Vm& vm) { return vm.hot_add_device(device); }));
    config_->devices.push_back(device);
    return DeviceInfo{device.id, bdf};
  });
}

Result<VmmControl::DeviceInfo> Vmm::add_disk(const DiskConfig& disk) {
  return on_vmm_thread<Result<DeviceInfo>>([this, &disk]() -> Result<DeviceInfo> {
    if (!config_) {
      return no_vm();
    }
    DiskConfig added = disk;
    if (added.id.empty()) {
      added.id = lowest_free_id(config_->disks, &default_disk_id);
    }
    for (const DiskConfig& d : config_->disks) {
      if (d.id == added.id || d.path == added.path) {
        return Error::exists("disk " + added.id + " (" + added.path +
                             ") is already added; remove it first (vm.remove-device) or give "
                             "another id and image");
      }
    }
    VmConfig next = *config_;
    next.disks.push_back(added);
    KEEL_TRY_STATUS(check_vm(next));
    KEEL_TRY(const std::string bdf,
             plug_if_running(added.id, [&](Vm& vm) { return vm.hot_add_disk(added); }));
    config_ = std::move(next);
    return DeviceInfo{added.id, bdf};
  });
}

Result<VmmControl::DeviceInfo> Vmm::add_net(const NetConfig& net, UniqueFd tap) {
  return on_vmm_thread<Result<DeviceInfo>>([this, &net, &tap]() -> Result<DeviceInfo> {
    if (!config_) {
      return no_vm();
    }
    NetConfig added = net;
    if (added.id.empty()) {
      added.id = lowest_free_id(config_->nets, &default_net_id);
    }
    if (tap.valid()) {
      if (!added.tap.empty()) {
        return Error::invalid("net " + added.id + ": tap=" + added.tap +
                              " and a TAP fd came with the request: give one of them");
      }
      // Checked now, on a copy, so that the client hears of a wrong fd here rather than at
      // vm.boot.
      UniqueFd copy(::fcntl(tap.get(), F_DUPFD_CLOEXEC, 3));
      if (!copy.valid()) {
        return Error::from_errno("net " + added.id + ": the fd that came with the request");
      }
      KEEL_TRY_WRAP(auto checked, virtio::Tap::adopt(std::move(copy)),
                    "net " + added.id + ": the fd that came with the request");
      if (!added.ip.empty()) {
        // cloud-hypervisor's clients always send ip and mask (their defaults); with a TAP of
        // the client's, they mean nothing (its maker configured it), as in cloud-hypervisor.
        log::info("vmm", "ignoring ip and mask for a TAP passed with the request",
                  {{"id", added.id}, {"ip", added.ip}});
        added.ip.clear();
        added.mask.clear();
      }
      added.fd = tap.get();
    }
    for (const NetConfig& n : config_->nets) {
      if (n.id == added.id || (!added.tap.empty() && n.tap == added.tap)) {
        return Error::exists("net " + added.id + " (tap " + added.tap +
                             ") is already added; remove it first (vm.remove-device) or give "
                             "another id and TAP");
      }
    }
    VmConfig next = *config_;
    next.nets.push_back(added);
    KEEL_TRY_STATUS(check_vm(next));
    KEEL_TRY(const std::string bdf,  // hot_add_net copies the fd
             plug_if_running(added.id, [&](Vm& vm) { return vm.hot_add_net(added); }));
    config_ = std::move(next);
    if (tap.valid()) {
      net_fds_[added.id] = std::move(tap);
    }
    return DeviceInfo{added.id, bdf};
  });
}

Result<VmmControl::DeviceInfo> Vmm::add_vsock(const VsockConfig& vsock) {
  return on_vmm_thread<Result<DeviceInfo>>([this, &vsock]() -> Result<DeviceInfo> {
    if (!config_) {
      return no_vm();
    }
    if (config_->vsock) {
      return Error::exists("vsock " + config_->vsock->id + " (cid " +
                           std::to_string(config_->vsock->cid) +
                           ") is already added; a VM has one vsock device (remove it first "
                           "with vm.remove-device)");
    }
    VmConfig next = *config_;
    next.vsock = vsock;
    KEEL_TRY_STATUS(check_vm(next));
    KEEL_TRY(const std::string bdf,
             plug_if_running(vsock.id, [&](Vm& vm) { return vm.hot_add_vsock(vsock); }));
    config_ = std::move(next);
    return DeviceInfo{vsock.id, bdf};
  });
}

Result<VmmControl::DeviceInfo> Vmm::add_fs(const FsConfig& fs) {
  return on_vmm_thread<Result<DeviceInfo>>([this, &fs]() -> Result<DeviceInfo> {
    if (!config_) {
      return no_vm();
    }
    FsConfig added = fs;
    if (added.id.empty()) {
      added.id = lowest_free_id(config_->fs, &default_fs_id);
    }
    for (const FsConfig& f : config_->fs) {
      if (f.id == added.id || f.tag == added.tag || f.socket == added.socket) {
        return Error::exists("fs " + f.id + " (tag " + f.tag + ", socket " + f.socket +
                             ") has this id, tag or socket already; remove it first "
                             "(vm.remove-device) or give others");
      }
    }
    VmConfig next = *config_;
    next.fs.push_back(added);
    KEEL_TRY_STATUS(check_vm(next));
    Result<std::string> bdf =
        plug_if_running(added.id, [&](Vm& vm) { return vm.hot_add_fs(added); });
    if (!bdf.ok()) {
      fs_backends_.erase(added.id);  // a connection made for a share that was not added
      return bdf.error();
    }
    config_ = std::move(next);
    return DeviceInfo{added.id, *bdf};
  });
}

// The connection to a share's back end, kept across boots: QEMU 7.2's virtiofsd serves one
// front end and ends with it. A connection that failed is made again.
Result<std::shared_ptr<virtio::VhostUser>> Vmm::fs_backend(const FsConfig& fs) {
  const auto it = fs_backends_.find(fs.id);
  if (it != fs_backends_.end() && it->second.first == fs.socket && it->second.second->connected()) {
    return it->second.second;
  }
  KEEL_TRY(auto connected, virtio::VhostUser::connect(fs.socket, "fs " + fs.id));
  auto backend = std::make_shared<virtio::VhostUser>(std::move(connected));
  fs_backends_[fs.id] = {fs.socket, backend};
  return backend;
}

bool Vmm::forget_device(const std::string& id) {
  auto erase = [&id](auto& items) {
    const auto it = std::find_if(items.begin(), items.end(),
                                 [&id](const auto& item) { return item.id == id; });
    if (it == items.end()) {
      return false;
    }
    items.erase(it);
    return true;
  };
  if (erase(config_->fs)) {
    fs_backends_.erase(id);  // the back end sees the connection close (virtiofsd ends)
    return true;
  }
  if (erase(config_->devices) || erase(config_->disks)) {
    return true;
  }
  if (erase(config_->nets)) {
    net_fds_.erase(id);
    return true;
  }
  if (config_->vsock && config_->vsock->id == id) {
    config_->vsock.reset();
    return true;
  }
  return false;
}

void Vmm::finish_ejects() {
  for (const std::string& id : vm_->finish_ejects()) {
    forget_device(id);
    log::info("vmm", "device removed", {{"id", id}});
    emit("vm", "device-removed", {{"id", id}});
  }
}

Result<std::string> Vmm::plug_if_running(const std::string& id,
                                          const std::function<Result<std::uint8_t>(Vm&)>& plug) {
  if (!guest_running()) {
    return std::string();  // a cold add: the device gets its address at vm.boot
  }
  Result<std::uint8_t> slot = plug(*vm_);
  if (!slot.ok()) {
    emit("vm", "device-add-refused", {{"id", id}, {"error", slot.error().message()}});
    return slot.error();
  }
  emit("vm", "device-added", {{"id", id}, {"bdf", pci::guest_bdf(*slot)}});
  for (const Passthrough::Passed& p : vm_->passthrough_devices()) {
    if (p.id == id) {
      const std::vector<vfio::DmaReport> reports = dma_reports();
      if (p.container < reports.size()) {
        emit("dma", "container-opened", dma_event_properties(reports[p.container]));
      }
    }
  }
  return pci::guest_bdf(*slot);
}

void Vmm::emit(std::string_view source, std::string_view event,
               const nlohmann::json& properties) {
  if (options_.events) {
    options_.events->emit(source, event, properties);
  }
}

std::vector<vfio::DmaReport> Vmm::dma_reports() {
  std::vector<vfio::DmaReport> reports = vm_->dma_reports();
  for (const vfio::DmaReport& r : reports) {
    const std::string key = r.devices.empty() ? "" : r.devices.front();
    const bool mismatch = r.consistent.has_value() && !*r.consistent;
    if (mismatch && mismatched_.insert(key).second) {
      log::warn("vmm", "DMA accounting disagrees with the kernel", {{"devices", key}});
      emit("dma", "mismatch", dma_event_properties(r));
    } else if (!mismatch) {
      mismatched_.erase(key);
    }
  }
  return reports;
}

Status Vmm::remove_device(const std::string& id) {
  return on_vmm_thread<Status>([this, &id]() -> Status {
    if (!config_) {
      return no_vm();
    }
    if (guest_running()) {
      // The guest is asked; the device goes when it ejects it (finish_ejects).
      KEEL_TRY_STATUS(vm_->request_eject(id));
      emit("vm", "device-eject-requested", {{"id", id}});
      return ok_status();
    }
    if (!forget_device(id)) {
      return Error::not_found("no device with id " + id);
    }
    return ok_status();
  });
}

Status Vmm::check_vcpus(std::uint32_t desired) const {
  if (!guest_running()) {
    return desired == config_->boot_vcpus ? ok_status() : wrong_state("vm.resize", state_);
  }
  if (desired == vm_->vcpu_count()) {
    return ok_status();
  }
  return vm_->check_vcpus(desired);
}

Status Vmm::resize_vcpus(std::uint32_t desired) {
  if (!guest_running() || desired == vm_->vcpu_count()) {
    return ok_status();  // check_vcpus said so
  }
  KEEL_TRY_STATUS(vm_->set_vcpus(desired));
  // As cloud-hypervisor: the configuration says how many the VM has now (and a reboot keeps it).
  config_->boot_vcpus = desired;
  emit("vm", "resize", {{"desired_vcpus", desired}});
  return ok_status();
}

Status Vmm::resize(const ResizeConfig& resize) {
  return on_vmm_thread<Status>([this, &resize]() -> Status {
    if (!config_) {
      return no_vm();
    }
    if (resize.desired_balloon) {
      return Error::not_supported("desired_balloon: Keel has no balloon; grow or shrink the VM "
                                  "with desired_ram (virtio-mem)");
    }
    // Everything is checked before anything changes: vCPUs, then memory (which checks as it
    // goes, and asks the guest last), then the vCPUs are plugged.
    if (resize.desired_vcpus) {
      KEEL_TRY_STATUS(check_vcpus(*resize.desired_vcpus));
    }
    if (resize.desired_ram) {
      KEEL_TRY_STATUS(resize_memory(*resize.desired_ram));
    }
    if (resize.desired_vcpus) {
      KEEL_TRY_STATUS(resize_vcpus(*resize.desired_vcpus));
    }
    return ok_status();
  });
}

Status Vmm::resize_memory(std::uint64_t desired) {
  if (!guest_running()) {
    return wrong_state("vm.resize", state_);
  }
  // The running VM's boot RAM (ACPI DIMMs plugged before make the configuration's more: see
  // below).
  const std::uint64_t boot = vm_->memory().ram_size();
  const std::uint64_t region = vm_->hotplug_region_size();
  if (region == 0) {
    return vm_->request_hotplugged_memory(desired - boot);  // says what to configure
  }
  const bool dimms = config_->memory_hotplug_method == MemoryHotplug::kAcpi;
  if (dimms && desired >= boot && desired <= boot + vm_->hotplugged_memory()) {
    // As cloud-hypervisor: DIMMs are not taken back, and asking for no more than the guest has
    // changes nothing.
    return ok_status();
  }
  if (desired < boot || desired > boot + region) {
    return Error::invalid("desired_ram " + format_size(desired) + " is outside what the VM can " +
                          "have: from its boot RAM " + format_size(boot) + " to that plus " +
                          "hotplug_size, " + format_size(boot + region));
  }
  const std::uint64_t granule = vm_->hotplug_granule();
  if ((desired - boot) % granule != 0) {
    return Error::invalid("desired_ram " + std::to_string(desired) + " is not boot RAM plus a " +
                          "multiple of " + format_size(granule) + "; round it");
  }
  std::uint64_t want = desired - boot;
  const std::uint64_t plugged = vm_->hotplugged_memory();
  std::string limited;
  if (want > plugged) {
    // The guest plugs a 128 MiB memory block per request (virtio-mem), Keel a DIMM (ACPI), and
    // every eager container maps each as one entry: growth is limited to what the smallest
    // budget can map.
    KEEL_TRY(const std::optional<std::uint64_t> headroom, vm_->dma_headroom());
    const std::uint64_t per_entry = std::max(granule, memory::GuestMemory::kHotplugAlign);
    const std::uint64_t needed = (want - plugged + per_entry - 1) / per_entry;
    if (headroom && *headroom < needed) {
      if (*headroom == 0) {
        const std::string msg =
            "desired_ram " + format_size(desired) + ": growing by " +
            format_size(want - plugged) + " needs " + std::to_string(needed) +
            " more DMA entries in each eagerly mapped VFIO container (one per " +
            format_size(per_entry) + " plugged) and one has 0 left; fixes: raise vfio_iommu_type1.dma_entry_limit, "
            "pass the device with iommu=on (lazy mapping needs no entries for new memory), or "
            "ask for less";
        emit("vm", "resize-refused", {{"desired_ram", desired}, {"reason", msg}});
        return Error::invalid(msg);
      }
      want = plugged + *headroom * per_entry;
      limited = "limited to " + format_size(boot + want) + ": growing by " +
                format_size(desired - boot - plugged) + " needs " + std::to_string(needed) +
                " DMA entries in each eagerly mapped VFIO container and the smallest budget "
                "has " + std::to_string(*headroom);
      log::warn("vmm", "memory resize limited by the DMA budget",
                {{"desired_ram", desired}, {"granted", boot + want}, {"entries", *headroom}});
    }
  }
  KEEL_TRY_STATUS(vm_->request_hotplugged_memory(want));
  if (dimms) {
    // As cloud-hypervisor: the configuration's memory.size is what the guest has now (whole
    // DIMMs: at least what was asked), and a reboot boots with it.
    want = vm_->hotplugged_memory();
    config_->memory_size = boot + want;
  }
  nlohmann::json properties = {{"desired_ram", desired}, {"requested_ram", boot + want}};
  if (!limited.empty()) {
    properties["limited"] = limited;
  }
  emit("vm", "resize", properties);
  return ok_status();
}

}  // namespace keel::vmm
