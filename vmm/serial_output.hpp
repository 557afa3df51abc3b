#pragma once

#include "base/result.hpp"
#include "devices/serial.hpp"
#include "vmm/vm_config.hpp"

namespace keel::vmm {

// Where COM1's bytes go for `config`: standard output, a file (opened once, so a reboot keeps
// appending to it), or nowhere.
Result<devices::Serial::Output> open_serial_output(const VmConfig& config);

}  // namespace keel::vmm
