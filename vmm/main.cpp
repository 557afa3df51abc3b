// keel: parses the command line, then boots the guest again and again until it powers off.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "base/unique_fd.hpp"
#include "vmm/cli.hpp"
#include "vmm/kvm.hpp"
#include "vmm/vm.hpp"

namespace {

using keel::vmm::Vm;

constexpr int kExitUsage = 2;
constexpr int kExitFailure = 1;

int fail(const std::string& message) {
  std::fprintf(stderr, "keel: %s\n", message.c_str());
  return kExitFailure;
}

// Where COM1's output goes. Opened once so a reboot keeps appending to the same place.
keel::Result<Vm::SerialOutput> open_serial(const keel::vmm::VmConfig& config) {
  switch (config.serial) {
    case keel::vmm::SerialMode::kOff:
      return Vm::SerialOutput{};
    case keel::vmm::SerialMode::kTty:
      return Vm::SerialOutput([](std::span<const std::uint8_t> bytes) {
        [[maybe_unused]] ssize_t n = ::write(STDOUT_FILENO, bytes.data(), bytes.size());
      });
    case keel::vmm::SerialMode::kFile: {
      auto fd = std::make_shared<keel::UniqueFd>(
          ::open(config.serial_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
      if (!fd->valid()) {
        return keel::Error::from_errno("--serial: open " + config.serial_file);
      }
      return Vm::SerialOutput([fd](std::span<const std::uint8_t> bytes) {
        [[maybe_unused]] ssize_t n = ::write(fd->get(), bytes.data(), bytes.size());
      });
    }
  }
  return keel::Error::invalid("unknown serial mode");
}

enum class WaitResult { kVmExited, kSignalled };

// Waits for the guest to end, forwarding terminal input to its serial port meanwhile.
WaitResult wait_for_exit(Vm& vm, int signal_fd, bool forward_stdin) {
  for (;;) {
    pollfd fds[3] = {{vm.exit_event_fd(), POLLIN, 0}, {signal_fd, POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
    const nfds_t count = forward_stdin ? 3 : 2;
    if (::poll(fds, count, -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      return WaitResult::kSignalled;
    }
    if ((fds[0].revents & POLLIN) != 0) {
      return WaitResult::kVmExited;
    }
    if ((fds[1].revents & POLLIN) != 0) {
      signalfd_siginfo info{};
      [[maybe_unused]] ssize_t n = ::read(signal_fd, &info, sizeof info);
      keel::log::warn("keel", "stopping on signal", {{"signal", info.ssi_signo}});
      return WaitResult::kSignalled;
    }
    if (forward_stdin && (fds[2].revents & (POLLIN | POLLHUP)) != 0) {
      std::uint8_t buf[256];
      const ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
      if (n <= 0) {
        forward_stdin = false;  // end of input: keep running without it
        continue;
      }
      vm.serial_input(std::span(buf, static_cast<std::size_t>(n)));
    }
  }
}

int run(const keel::vmm::VmConfig& config) {
  // SIGINT and SIGTERM are read from a signalfd; block them before any thread starts so every
  // thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  ::pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  keel::UniqueFd signal_fd(::signalfd(-1, &stop_signals, SFD_CLOEXEC));
  if (!signal_fd) {
    return fail(keel::Error::from_errno("signalfd").message());
  }

  auto kvm = keel::vmm::Kvm::open();
  if (!kvm.ok()) {
    return fail(kvm.error().message());
  }
  auto serial = open_serial(config);
  if (!serial.ok()) {
    return fail(serial.error().message());
  }
  const bool forward_stdin = config.serial == keel::vmm::SerialMode::kTty;

  for (int boot = 1;; ++boot) {
    auto vm = Vm::create(*kvm, config, *serial);
    if (!vm.ok()) {
      return fail(vm.error().message());
    }
    keel::log::info("keel", "booting", {{"boot", boot}, {"kernel", config.kernel}});
    if (auto started = (*vm)->start(); !started.ok()) {
      return fail(started.error().message());
    }
    const WaitResult waited = wait_for_exit(**vm, signal_fd.get(), forward_stdin);
    (*vm)->stop();
    if (waited == WaitResult::kSignalled) {
      return kExitFailure;
    }
    switch ((*vm)->outcome()) {
      case Vm::Outcome::kPowerOff:
        return 0;
      case Vm::Outcome::kReset:
        if (config.exit_on_reboot) {
          keel::log::info("keel", "guest rebooted; exiting (--no-reboot)");
          return 0;
        }
        continue;
      case Vm::Outcome::kError:
        return fail((*vm)->error()->message());
      case Vm::Outcome::kRunning:
        return fail("VM stopped without a reason");
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    auto request = keel::vmm::parse_command_line(std::vector<std::string>(argv + 1, argv + argc));
    if (!request.ok()) {
      std::fprintf(stderr, "keel: %s\n", request.error().context().c_str());
      return kExitUsage;
    }
    if (request->exit_now) {
      return request->exit_code;
    }
    keel::log::set_level(request->verbosity >= 2   ? keel::log::Level::kDebug
                         : request->verbosity == 1 ? keel::log::Level::kInfo
                                                   : keel::log::Level::kWarn);
    return run(request->config);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "keel: internal error: %s\n", e.what());
    return kExitFailure;
  }
}
