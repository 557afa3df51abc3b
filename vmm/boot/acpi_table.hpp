#pragma once

#include <cassert>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace keel::vmm::boot {

inline constexpr std::size_t kAcpiHeaderSize = 36;
inline constexpr char kAcpiOemId[] = "KEEL  ";  // 6 bytes
inline constexpr std::uint32_t kAcpiCreatorRevision = 1;

// The byte that makes `bytes` sum to zero modulo 256 when stored among them (as 0 first).
std::uint8_t acpi_checksum(std::span<const std::uint8_t> bytes);

// A system description table being built: the standard 36-byte header (signature, OEM ids,
// creator), then fields appended little-endian. finish() fills in the length and checksum.
class AcpiTable {
 public:
  AcpiTable(std::string_view signature, std::uint8_t revision);

  void u8(std::uint8_t v) { bytes_.push_back(v); }
  void u16(std::uint16_t v) { put(v); }
  void u32(std::uint32_t v) { put(v); }
  void u64(std::uint64_t v) { put(v); }
  void append(std::span<const std::uint8_t> more) {
    bytes_.insert(bytes_.end(), more.begin(), more.end());
  }
  // Zero-fills up to `offset`, where the next field starts; fields are never written twice.
  void pad_to(std::size_t offset) {
    assert(offset >= bytes_.size());
    bytes_.resize(offset, 0);
  }
  std::size_t size() const { return bytes_.size(); }

  std::vector<std::uint8_t> finish() &&;

 private:
  template <typename T>
  void put(T v) {
    for (std::size_t i = 0; i < sizeof(T); ++i) {
      bytes_.push_back(static_cast<std::uint8_t>(static_cast<std::uint64_t>(v) >> (8 * i)));
    }
  }

  std::vector<std::uint8_t> bytes_;
};

}  // namespace keel::vmm::boot
