#pragma once

#include <functional>

namespace keel::devices {

// What a guest asks of the machine through its reset and power-management registers.
enum class PowerEvent { kPowerOff, kReset };
using PowerHandler = std::function<void(PowerEvent)>;

}  // namespace keel::devices
