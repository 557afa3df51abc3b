#pragma once

#include <array>
#include <cstdint>
#include <span>

namespace keel::pci {

// Standard register offsets of a type 0 configuration header.
inline constexpr std::uint16_t kVendorId = 0x00;
inline constexpr std::uint16_t kDeviceId = 0x02;
inline constexpr std::uint16_t kCommand = 0x04;
inline constexpr std::uint16_t kStatus = 0x06;
inline constexpr std::uint16_t kRevision = 0x08;
inline constexpr std::uint16_t kClassCode = 0x09;  // prog-if, subclass, class (3 bytes)
inline constexpr std::uint16_t kHeaderType = 0x0e;
inline constexpr std::uint16_t kBar0 = 0x10;
inline constexpr std::uint16_t kSubsystemVendorId = 0x2c;
inline constexpr std::uint16_t kSubsystemId = 0x2e;
inline constexpr std::uint16_t kCapabilitiesPointer = 0x34;
inline constexpr std::uint16_t kInterruptLine = 0x3c;
inline constexpr std::uint16_t kInterruptPin = 0x3d;
inline constexpr std::uint16_t kConfigSize = 4096;

// Configuration space as registers plus a per-bit write mask: guest writes change only the bits
// the mask allows, so read-only fields, BAR size bits and reserved bits hold their values.
class PciConfigSpace {
 public:
  PciConfigSpace() { bytes_.fill(0); mask_.fill(0); }

  void read(std::uint16_t offset, std::span<std::uint8_t> data) const;
  void write(std::uint16_t offset, std::span<const std::uint8_t> data);

  // Device-side setters (ignore the mask).
  void set8(std::uint16_t offset, std::uint8_t value) { bytes_[offset] = value; }
  void set16(std::uint16_t offset, std::uint16_t value);
  void set32(std::uint16_t offset, std::uint32_t value);
  std::uint8_t get8(std::uint16_t offset) const { return bytes_[offset]; }
  std::uint16_t get16(std::uint16_t offset) const;
  std::uint32_t get32(std::uint16_t offset) const;
  // Marks `bits` of the dword at `offset` as guest-writable.
  void set_writable32(std::uint16_t offset, std::uint32_t bits);
  void set_writable16(std::uint16_t offset, std::uint16_t bits);
  void set_writable8(std::uint16_t offset, std::uint8_t bits) { mask_[offset] = bits; }

  // Fills in a type 0 header's identity.
  void set_identity(std::uint16_t vendor, std::uint16_t device, std::uint32_t class_code,
                    std::uint8_t revision = 0);

 private:
  std::array<std::uint8_t, pci::kConfigSize> bytes_;
  std::array<std::uint8_t, pci::kConfigSize> mask_;
};

}  // namespace keel::pci
