#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

#include "devices/bus_device.hpp"
#include "devices/interrupt.hpp"

namespace keel::pci {

// The registers behind the DSDT's ACPI PCI hot-plug (vmm/boot/dsdt.cpp, \_SB_.GED_), on the port
// bus at layout::kPciHotplugPort. The VMM marks a slot plugged (announce) or to be ejected
// (request_eject) and raises the Generic Event Device's interrupt; the guest's _EVT reads PCIU
// (which clears it) and PCID and notifies the slots; once the guest has let a function go, its
// _EJ0 writes the slot's bit to B0EJ and `on_eject` runs, on the vCPU thread that wrote it (it
// should hand the work to the VMM). Bits are slots 1..31 of bus 0.
class AcpiHotplug : public devices::BusDevice {
 public:
  using EjectHandler = std::function<void(std::uint8_t slot)>;
  AcpiHotplug(std::shared_ptr<devices::InterruptLine> event, EjectHandler on_eject)
      : event_(std::move(event)), on_eject_(std::move(on_eject)) {}

  // A function now sits in `slot`: the guest scans it.
  void announce(std::uint8_t slot);
  // Asks the guest to give up the function in `slot` (again, if asked before).
  void request_eject(std::uint8_t slot);
  // Whether an eject of `slot` was requested and the guest has not ejected it yet.
  bool eject_pending(std::uint8_t slot) const;

  void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
  void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

 private:
  void raise(std::uint32_t* bits, std::uint8_t slot);

  std::shared_ptr<devices::InterruptLine> event_;
  EjectHandler on_eject_;
  mutable std::mutex mutex_;
  std::uint32_t up_ = 0;    // announced, not yet read by the guest
  std::uint32_t down_ = 0;  // eject requested, not yet ejected
};

}  // namespace keel::pci
