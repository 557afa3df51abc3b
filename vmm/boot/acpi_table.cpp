#include "vmm/boot/acpi_table.hpp"

#include <cstring>

namespace keel::vmm::boot {

namespace {
constexpr std::size_t kLengthOffset = 4;
constexpr std::size_t kChecksumOffset = 9;
constexpr char kCreatorId[] = "KEEL";
}  // namespace

std::uint8_t acpi_checksum(std::span<const std::uint8_t> bytes) {
  std::uint8_t sum = 0;
  for (std::uint8_t b : bytes) {
    sum = static_cast<std::uint8_t>(sum + b);
  }
  return static_cast<std::uint8_t>(-sum);
}

AcpiTable::AcpiTable(std::string_view signature, std::uint8_t revision) {
  bytes_.insert(bytes_.end(), signature.begin(), signature.begin() + 4);
  u32(0);  // length, set by finish()
  u8(revision);
  u8(0);  // checksum, set by finish()
  bytes_.insert(bytes_.end(), kAcpiOemId, kAcpiOemId + 6);
  // OEM table id: "KEEL" and the signature, so each table names itself in dumps.
  bytes_.insert(bytes_.end(), kCreatorId, kCreatorId + 4);
  bytes_.insert(bytes_.end(), signature.begin(), signature.begin() + 4);
  u32(1);  // OEM revision
  bytes_.insert(bytes_.end(), kCreatorId, kCreatorId + 4);
  u32(kAcpiCreatorRevision);
}

std::vector<std::uint8_t> AcpiTable::finish() && {
  const auto length = static_cast<std::uint32_t>(bytes_.size());
  std::memcpy(bytes_.data() + kLengthOffset, &length, sizeof length);
  bytes_[kChecksumOffset] = acpi_checksum(bytes_);
  return std::move(bytes_);
}

}  // namespace keel::vmm::boot
