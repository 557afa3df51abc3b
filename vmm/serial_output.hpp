#pragma once

#include "base/result.hpp"
#include "devices/serial.hpp"
#include "vmm/vm_config.hpp"

namespace keel::vmm {

// Where COM1's bytes go for `config`: standard output, a file (opened once, so a reboot keeps
// appending to it), or nowhere. Opened, and checked, before the VM is built; begin() runs once
// the VM is built and about to start, on the VMM thread: it truncates the file the first time,
// so that a start that fails leaves the file as it was (and no vCPU thread ever truncates).
struct SerialSink {
  devices::Serial::Output output;
  std::function<Status()> begin;
};
Result<SerialSink> open_serial_output(const VmConfig& config);

}  // namespace keel::vmm
