#include "devices/acpi_slots.hpp"

#include "base/log.hpp"
#include "devices/registers.hpp"
#include "memory/layout.hpp"

namespace keel::devices {
namespace {
namespace layout = keel::memory::layout;
}  // namespace

AcpiSlots::AcpiSlots(std::uint32_t present, std::uint32_t count, std::uint32_t fixed,
                     std::shared_ptr<InterruptLine> event, EjectHandler on_eject)
    : fixed_(fixed),
      event_(std::move(event)),
      on_eject_(std::move(on_eject)),
      state_(count, 0),
      asked_(count, false) {
  for (std::uint32_t slot = 0; slot < present && slot < count; ++slot) {
    state_[slot] = layout::kSlotEnabled;
  }
}

void AcpiSlots::plug(std::uint32_t slot) {
  {
    std::lock_guard lock(mutex_);
    if (slot >= state_.size()) {
      return;
    }
    state_[slot] = layout::kSlotEnabled | layout::kSlotInserting;
    asked_[slot] = false;
  }
  event_->trigger();
}

void AcpiSlots::request_unplug(std::uint32_t slot) {
  {
    std::lock_guard lock(mutex_);
    if (slot < fixed_ || slot >= state_.size() || (state_[slot] & layout::kSlotEnabled) == 0) {
      return;
    }
    state_[slot] = (state_[slot] & ~layout::kSlotInserting) | layout::kSlotRemoving;
    asked_[slot] = true;
  }
  event_->trigger();
}

bool AcpiSlots::enabled(std::uint32_t slot) const {
  std::lock_guard lock(mutex_);
  return slot < state_.size() && (state_[slot] & layout::kSlotEnabled) != 0;
}

std::uint32_t AcpiSlots::enabled_count() const {
  std::lock_guard lock(mutex_);
  std::uint32_t n = 0;
  for (const std::uint32_t s : state_) {
    n += (s & layout::kSlotEnabled) != 0 ? 1 : 0;
  }
  return n;
}

void AcpiSlots::read(std::uint64_t offset, std::span<std::uint8_t> data) {
  std::lock_guard lock(mutex_);
  read_registers(state_, offset, data);
}

void AcpiSlots::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
  // Whole 32-bit registers only (the DSDT's fields are DWordAcc).
  const std::optional<std::uint32_t> written = whole_register_write(offset, data);
  if (!written) {
    return;
  }
  const std::uint32_t value = *written;
  const std::uint32_t slot = static_cast<std::uint32_t>(offset / 4);
  bool ejected = false;
  {
    std::lock_guard lock(mutex_);
    if (slot >= state_.size()) {
      return;
    }
    std::uint32_t& s = state_[slot];
    s &= ~(value & (layout::kSlotInserting | layout::kSlotRemoving));
    if ((value & layout::kSlotEject) != 0 && (s & layout::kSlotEnabled) != 0 && asked_[slot]) {
      s = 0;
      asked_[slot] = false;
      ejected = true;
    }
  }
  if (ejected) {
    log::info("acpi", "guest ejected a slot", {{"slot", slot}});
    if (on_eject_) {
      on_eject_(slot);
    }
  }
}

}  // namespace keel::devices
