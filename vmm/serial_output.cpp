#include "vmm/serial_output.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <memory>

#include "base/unique_fd.hpp"

namespace keel::vmm {

Result<devices::Serial::Output> open_serial_output(const VmConfig& config) {
  switch (config.serial) {
    case SerialMode::kOff:
      return devices::Serial::Output{};
    case SerialMode::kTty:
      return devices::Serial::Output([](std::span<const std::uint8_t> bytes) {
        [[maybe_unused]] ssize_t n = ::write(STDOUT_FILENO, bytes.data(), bytes.size());
      });
    case SerialMode::kFile: {
      auto fd = std::make_shared<UniqueFd>(
          ::open(config.serial_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
      if (!fd->valid()) {
        return Error::from_errno("serial: open " + config.serial_file);
      }
      return devices::Serial::Output([fd](std::span<const std::uint8_t> bytes) {
        [[maybe_unused]] ssize_t n = ::write(fd->get(), bytes.data(), bytes.size());
      });
    }
  }
  return Error::invalid("serial: unknown mode");
}

}  // namespace keel::vmm
