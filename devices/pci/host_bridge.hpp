#pragma once

#include <mutex>

#include "devices/pci/config_space.hpp"
#include "devices/pci/pci_device.hpp"

namespace keel::pci {

// The host bridge at 00:00.0: identity only, no BARs, no interrupts.
class PciHostBridge : public PciDevice {
 public:
  static constexpr std::uint16_t kVendor = 0x8086;  // Intel, as cloud-hypervisor presents it
  static constexpr std::uint16_t kDevice = 0x0d57;
  static constexpr std::uint32_t kClass = 0x060000;  // bridge / host bridge

  PciHostBridge();
  void read_config(std::uint16_t offset, std::span<std::uint8_t> data) override;
  void write_config(std::uint16_t offset, std::span<const std::uint8_t> data) override;

 private:
  std::mutex mutex_;
  PciConfigSpace config_;
};

}  // namespace keel::pci
