#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "devices/bus_device.hpp"
#include "devices/interrupt.hpp"

namespace keel::devices {

// The registers behind ACPI hot-plug of things the DSDT lists one device each: vCPUs (its
// \_SB_.CPxx processor devices) and memory (its \_SB_.MBxx DIMMs). One 32-bit register per slot
// (layout::kSlot* bits): reading gives the slot's state (kSlotEnabled: _STA says present;
// kSlotInserting: the VMM announced it; kSlotRemoving: the VMM asks for it back). The guest's
// _EVT writes kSlotInserting or kSlotRemoving to say it has seen them (it then notifies the
// device), and _EJ0 writes kSlotEject once it let the thing go: the slot is no longer enabled
// and `on_eject` runs on the vCPU thread that wrote it (it should hand the work to the VMM).
// Only a slot the VMM asked back can be ejected: a guest that ejects one on its own (sysfs)
// finds it still present, and the VM's count stays true.
class AcpiSlots : public BusDevice {
 public:
  using EjectHandler = std::function<void(std::uint32_t slot)>;
  // Slots 0..present-1 are enabled from the start, out of `count`; the first `fixed` can never
  // be asked back (the boot CPU, which Linux cannot give up).
  AcpiSlots(std::uint32_t present, std::uint32_t count, std::uint32_t fixed,
            std::shared_ptr<InterruptLine> event, EjectHandler on_eject);

  std::uint32_t count() const { return static_cast<std::uint32_t>(state_.size()); }
  std::uint64_t size() const { return state_.size() * 4; }

  // What slot `slot` stands for is there (a vCPU's KVM vCPU waiting for INIT/SIPI, a DIMM's
  // memory mapped): the guest adds it.
  void plug(std::uint32_t slot);
  // Asks the guest to give slot `slot` up.
  void request_unplug(std::uint32_t slot);
  bool enabled(std::uint32_t slot) const;
  std::uint32_t enabled_count() const;

  void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
  void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

 private:
  std::uint32_t fixed_;
  std::shared_ptr<InterruptLine> event_;
  EjectHandler on_eject_;
  mutable std::mutex mutex_;
  std::vector<std::uint32_t> state_;  // per slot, layout::kSlot* bits
  std::vector<bool> asked_;           // per slot: request_unplug() since the last plug()
};

}  // namespace keel::devices
