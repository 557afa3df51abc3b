#include "devices/pci/config_space.hpp"

namespace keel::pci {

void PciConfigSpace::read(std::uint16_t offset, std::span<std::uint8_t> data) const {
  for (std::size_t i = 0; i < data.size(); ++i) {
    const std::size_t at = offset + i;
    data[i] = at < bytes_.size() ? bytes_[at] : 0xff;
  }
}

void PciConfigSpace::write(std::uint16_t offset, std::span<const std::uint8_t> data) {
  for (std::size_t i = 0; i < data.size() && offset + i < bytes_.size(); ++i) {
    const std::size_t at = offset + i;
    bytes_[at] = static_cast<std::uint8_t>((bytes_[at] & ~mask_[at]) | (data[i] & mask_[at]));
  }
}

void PciConfigSpace::set16(std::uint16_t offset, std::uint16_t value) {
  bytes_[offset] = static_cast<std::uint8_t>(value);
  bytes_[offset + 1] = static_cast<std::uint8_t>(value >> 8);
}

void PciConfigSpace::set32(std::uint16_t offset, std::uint32_t value) {
  set16(offset, static_cast<std::uint16_t>(value));
  set16(offset + 2, static_cast<std::uint16_t>(value >> 16));
}

std::uint16_t PciConfigSpace::get16(std::uint16_t offset) const {
  return static_cast<std::uint16_t>(bytes_[offset] | (bytes_[offset + 1] << 8));
}

std::uint32_t PciConfigSpace::get32(std::uint16_t offset) const {
  return get16(offset) | (static_cast<std::uint32_t>(get16(offset + 2)) << 16);
}

void PciConfigSpace::set_writable16(std::uint16_t offset, std::uint16_t bits) {
  mask_[offset] = static_cast<std::uint8_t>(bits);
  mask_[offset + 1] = static_cast<std::uint8_t>(bits >> 8);
}

void PciConfigSpace::set_writable32(std::uint16_t offset, std::uint32_t bits) {
  set_writable16(offset, static_cast<std::uint16_t>(bits));
  set_writable16(offset + 2, static_cast<std::uint16_t>(bits >> 16));
}

void PciConfigSpace::set_identity(std::uint16_t vendor, std::uint16_t device,
                                  std::uint32_t class_code, std::uint8_t revision) {
  set16(pci::kVendorId, vendor);
  set16(pci::kDeviceId, device);
  set8(pci::kRevision, revision);
  set8(pci::kClassCode, static_cast<std::uint8_t>(class_code));
  set8(pci::kClassCode + 1, static_cast<std::uint8_t>(class_code >> 8));
  set8(pci::kClassCode + 2, static_cast<std::uint8_t>(class_code >> 16));
}

}  // namespace keel::pci
