#include "devices/pci/host_bridge.hpp"

namespace keel::pci {

PciHostBridge::PciHostBridge() {
  config_.set_identity(kVendor, kDevice, kClass);
  // Memory and I/O decode are always on for the host bridge; the guest may toggle bus mastering.
  config_.set16(pci::kCommand, 0x0003);
  config_.set_writable16(pci::kCommand, 0x0004);
}

void PciHostBridge::read_config(std::uint16_t offset, std::span<std::uint8_t> data) {
  std::lock_guard lock(mutex_);
  config_.read(offset, data);
}

void PciHostBridge::write_config(std::uint16_t offset, std::span<const std::uint8_t> data) {
  std::lock_guard lock(mutex_);
  config_.write(offset, data);
}

}  // namespace keel::pci
