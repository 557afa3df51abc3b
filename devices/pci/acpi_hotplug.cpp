#include "devices/pci/acpi_hotplug.hpp"

#include <array>

#include "base/hex.hpp"
#include "base/log.hpp"
#include "devices/registers.hpp"
#include "memory/layout.hpp"

namespace keel::pci {
namespace {
namespace layout = keel::memory::layout;
constexpr std::uint32_t kSlotBits = 0xffff'fffe;  // slots 1..31; slot 0 is the host bridge
constexpr std::uint32_t bit(std::uint8_t slot) { return slot < 32 ? 1U << slot : 0; }
}  // namespace

void AcpiHotplug::raise(std::uint32_t* bits, std::uint8_t slot) {
  {
    std::lock_guard lock(mutex_);
    *bits |= bit(slot) & kSlotBits;
  }
  event_->trigger();
}

void AcpiHotplug::announce(std::uint8_t slot) { raise(&up_, slot); }

void AcpiHotplug::request_eject(std::uint8_t slot) { raise(&down_, slot); }

bool AcpiHotplug::eject_pending(std::uint8_t slot) const {
  std::lock_guard lock(mutex_);
  return (down_ & bit(slot)) != 0;
}

void AcpiHotplug::read(std::uint64_t offset, std::span<std::uint8_t> data) {
  std::array<std::uint32_t, layout::kPciHotplugSize / 4> regs{};
  {
    std::lock_guard lock(mutex_);
    regs = {up_, down_, 0};
    // Reading PCIU hands the announcements to the guest's _EVT: each is notified once.
    if (offset <= layout::kPciHotplugUpOffset + 3 &&
        offset + data.size() > layout::kPciHotplugUpOffset) {
      up_ = 0;
    }
  }
  devices::read_registers(regs, offset, data);
}

void AcpiHotplug::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
  // Only B0EJ is writable, as the whole 32-bit register (the DSDT's field is DWordAcc).
  const std::optional<std::uint32_t> value = devices::whole_register_write(offset, data);
  if (!value || offset != layout::kPciHotplugEjectOffset) {
    return;
  }
  const std::uint32_t ejected = *value & kSlotBits;
  {
    std::lock_guard lock(mutex_);
    down_ &= ~ejected;
  }
  log::info("pci", "guest ejected", {{"slots", hex(ejected)}});
  for (std::uint8_t slot = 1; slot < 32; ++slot) {
    if ((ejected & bit(slot)) != 0 && on_eject_) {
      on_eject_(slot);
    }
  }
}

}  // namespace keel::pci
