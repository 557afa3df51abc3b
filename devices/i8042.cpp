#include "devices/i8042.hpp"

#include <algorithm>

namespace keel::devices {
namespace {
constexpr std::uint64_t kCommandPort = 4;
constexpr std::uint8_t kResetCommand = 0xfe;
}  // namespace

void I8042::read(std::uint64_t /*offset*/, std::span<std::uint8_t> data) {
  // Status 0: output buffer empty, input buffer empty, so drivers never wait on us.
  std::fill(data.begin(), data.end(), 0);
}

void I8042::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
  if (offset == kCommandPort && !data.empty() && data[0] == kResetCommand && on_power_) {
    on_power_(PowerEvent::kReset);
  }
}

}  // namespace keel::devices
