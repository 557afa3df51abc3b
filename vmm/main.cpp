// keel: parses the command line, then runs the VMM until the guest (or the API) ends it.

#include <pthread.h>

#include <cstddef>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "api/api_server.hpp"
#include "base/log.hpp"
#include "vmm/cli.hpp"
#include "vmm/event_monitor.hpp"
#include "vmm/vmm.hpp"

namespace {

constexpr int kExitUsage = 2;
constexpr int kExitFailure = 1;

// Every thread keel starts (vCPUs, device I/O, the API) gets a 1 MiB stack instead of glibc's
// RLIMIT_STACK (8 MiB). With transparent huge pages "always" (Debian's default) a stack mapping
// that holds a whole aligned 2 MiB range is given a 2 MiB huge page as soon as the thread's
// stack reaches into it: that was a third of keel's memory outside guest RAM, in some runs and
// not others. glibc adds the guard page on top of the size asked for, so the size must stay
// well below 2 MiB. Deep enough: Keel recurses nowhere deeply (the JSON parser is iterative).
void small_thread_stacks() {
  constexpr std::size_t kStack = std::size_t{1} << 20;
  pthread_attr_t attr;
  if (pthread_getattr_default_np(&attr) != 0) {
    return;
  }
  if (pthread_attr_setstacksize(&attr, kStack) == 0) {
    (void)pthread_setattr_default_np(&attr);
  }
  pthread_attr_destroy(&attr);
}

int run(const keel::vmm::CliRequest& request) {
  small_thread_stacks();
  const bool serve_api = !request.api_socket.empty();
  std::shared_ptr<keel::vmm::EventMonitor> events;
  if (!request.event_monitor.empty()) {
    auto opened = keel::vmm::EventMonitor::open(request.event_monitor);
    if (!opened.ok()) {
      std::fprintf(stderr, "keel: %s\n", opened.error().message().c_str());
      return kExitFailure;
    }
    events = std::move(opened).value();
  }
  auto vmm = keel::vmm::Vmm::create(keel::vmm::Vmm::Options{
      .serve_api = serve_api, .seccomp = request.seccomp, .events = std::move(events)});
  if (!vmm.ok()) {
    std::fprintf(stderr, "keel: %s\n", vmm.error().message().c_str());
    return kExitFailure;
  }
  std::unique_ptr<keel::api::ApiServer> server;
  if (serve_api) {
    keel::api::ApiServerOptions options;
    options.on_thread_start = [mode = request.seccomp] {
      return keel::vmm::install_seccomp_filter(keel::vmm::ThreadKind::kApi, mode);
    };
    auto started = keel::api::ApiServer::start(request.api_socket, **vmm, std::move(options));
    if (!started.ok()) {
      std::fprintf(stderr, "keel: --api-socket: %s\n", started.error().message().c_str());
      return kExitFailure;
    }
    server = std::move(started).value();
  }
  // This thread is the VMM thread from here on: API operations, VMs built and torn down, guest
  // power events. The vCPU threads it starts inherit this filter and add their own.
  if (auto filtered = keel::vmm::install_seccomp_filter(keel::vmm::ThreadKind::kVmm, request.seccomp);
      !filtered.ok()) {
    std::fprintf(stderr, "keel: %s\n", filtered.error().message().c_str());
    return kExitFailure;
  }
  if (request.has_payload) {
    if (auto booted = (*vmm)->create_and_boot(request.config); !booted.ok()) {
      std::fprintf(stderr, "keel: %s\n", booted.error().message().c_str());
      return kExitFailure;
    }
  }
  const int status = (*vmm)->run();
  if (server) {
    server->stop();  // the VMM loop has ended, so calls in flight fail fast
  }
  return status;
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
    return run(*request);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "keel: internal error: %s\n", e.what());
    return kExitFailure;
  }
}
