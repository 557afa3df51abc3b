#include "devices/cpu_hotplug.hpp"

#include "base/log.hpp"
#include "devices/registers.hpp"
#include "memory/layout.hpp"

namespace keel::devices {
namespace {
namespace layout = keel::memory::layout;
}  // namespace

CpuHotplug::CpuHotplug(std::uint32_t boot_vcpus, std::uint32_t max_vcpus,
                       std::shared_ptr<InterruptLine> event, EjectHandler on_eject)
    : event_(std::move(event)),
      on_eject_(std::move(on_eject)),
      state_(max_vcpus, 0),
      asked_(max_vcpus, false) {
  for (std::uint32_t id = 0; id < boot_vcpus && id < max_vcpus; ++id) {
    state_[id] = layout::kCpuEnabled;
  }
}

void CpuHotplug::plug(std::uint32_t vcpu) {
  {
    std::lock_guard lock(mutex_);
    if (vcpu >= state_.size()) {
      return;
    }
    state_[vcpu] = layout::kCpuEnabled | layout::kCpuInserting;
    asked_[vcpu] = false;
  }
  event_->trigger();
}

void CpuHotplug::request_unplug(std::uint32_t vcpu) {
  {
    std::lock_guard lock(mutex_);
    // vCPU 0 stays: Linux cannot give its boot CPU up.
    if (vcpu == 0 || vcpu >= state_.size() || (state_[vcpu] & layout::kCpuEnabled) == 0) {
      return;
    }
    state_[vcpu] = (state_[vcpu] & ~layout::kCpuInserting) | layout::kCpuRemoving;
    asked_[vcpu] = true;
  }
  event_->trigger();
}

bool CpuHotplug::enabled(std::uint32_t vcpu) const {
  std::lock_guard lock(mutex_);
  return vcpu < state_.size() && (state_[vcpu] & layout::kCpuEnabled) != 0;
}

void CpuHotplug::read(std::uint64_t offset, std::span<std::uint8_t> data) {
  std::lock_guard lock(mutex_);
  read_registers(state_, offset, data);
}

void CpuHotplug::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
  // Whole 32-bit registers only (the DSDT's fields are DWordAcc).
  const std::optional<std::uint32_t> written = whole_register_write(offset, data);
  if (!written) {
    return;
  }
  const std::uint32_t value = *written;
  const std::uint32_t vcpu = static_cast<std::uint32_t>(offset / 4);
  bool ejected = false;
  {
    std::lock_guard lock(mutex_);
    if (vcpu >= state_.size()) {
      return;
    }
    std::uint32_t& s = state_[vcpu];
    s &= ~(value & (layout::kCpuInserting | layout::kCpuRemoving));
    if ((value & layout::kCpuEject) != 0 && (s & layout::kCpuEnabled) != 0 && asked_[vcpu]) {
      s = 0;
      asked_[vcpu] = false;
      ejected = true;
    }
  }
  if (ejected) {
    log::info("cpu", "guest ejected vCPU", {{"vcpu", vcpu}});
    if (on_eject_) {
      on_eject_(vcpu);
    }
  }
}

}  // namespace keel::devices
