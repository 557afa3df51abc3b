#pragma once

#include <string>
#include <vector>

#include "base/result.hpp"
#include "vmm/seccomp.hpp"
#include "vmm/vm_config.hpp"

namespace keel::vmm {

// What the command line asked for.
struct CliRequest {
  VmConfig config;
  int verbosity = 0;       // -v count
  std::string api_socket;  // --api-socket path=PATH; empty: no API
  std::string event_monitor;  // --event-monitor path=FILE|fd=N; empty: none
  bool has_payload = true; // false: start idle and wait for vm.create
  SeccompMode seccomp = SeccompMode::kEnforce;  // --seccomp
  bool exit_now = false;   // --help or --version was printed
  int exit_code = 0;       // with exit_now
};

// Parses keel's command line (cloud-hypervisor syntax: --cpus boot=2, --memory size=512M,shared=on,
// --serial tty|file=PATH|off …). Pure: prints only for --help/--version. A usage error comes back
// as an Error whose context is the one-line reason; main exits with status 2.
Result<CliRequest> parse_command_line(const std::vector<std::string>& args);

}  // namespace keel::vmm
