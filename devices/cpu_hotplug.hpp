#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "devices/bus_device.hpp"
#include "devices/interrupt.hpp"

namespace keel::devices {

// The registers behind ACPI vCPU hot-plug (the DSDT's \_SB_.CPxx processor devices), one 32-bit
// register per possible vCPU at layout::kCpuHotplugPort + 4 * id. Reading gives the vCPU's
// state (kCpuEnabled: _STA says present; kCpuInserting: the VMM announced it; kCpuRemoving: the
// VMM asks for it back). The guest's _EVT writes kCpuInserting or kCpuRemoving to say it has
// seen them (it then notifies the processor device), and _EJ0 writes kCpuEject once it let the
// vCPU go: the vCPU is no longer enabled and `on_eject` runs on the vCPU thread that wrote it
// (it should hand the work to the VMM). Only a vCPU the VMM asked back can be ejected: a guest
// that ejects one on its own (sysfs) finds it still present, and the VM's count stays true.
class CpuHotplug : public BusDevice {
 public:
  using EjectHandler = std::function<void(std::uint32_t vcpu)>;
  // vCPUs 0..boot_vcpus-1 are there from the start, out of max_vcpus possible.
  CpuHotplug(std::uint32_t boot_vcpus, std::uint32_t max_vcpus,
             std::shared_ptr<InterruptLine> event, EjectHandler on_eject);

  std::uint32_t max_vcpus() const { return static_cast<std::uint32_t>(state_.size()); }
  std::uint64_t size() const { return state_.size() * 4; }

  // vCPU `vcpu` (its KVM vCPU running, waiting for INIT/SIPI) is there: the guest adds it.
  void plug(std::uint32_t vcpu);
  // Asks the guest to give vCPU `vcpu` up.
  void request_unplug(std::uint32_t vcpu);
  bool enabled(std::uint32_t vcpu) const;

  void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
  void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

 private:
  std::shared_ptr<InterruptLine> event_;
  EjectHandler on_eject_;
  mutable std::mutex mutex_;
  std::vector<std::uint32_t> state_;  // per vCPU, layout::kCpu* bits
  std::vector<bool> asked_;           // per vCPU: request_unplug() since the last plug()
};

}  // namespace keel::devices
