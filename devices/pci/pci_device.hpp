#pragma once

#include <cstdint>
#include <span>

namespace keel::pci {

// A function on Keel's PCI root. Offsets are into its 4 KiB configuration space; the root
// guarantees an access never crosses a dword and that offset + size <= 4096.
class PciDevice {
 public:
  virtual ~PciDevice() = default;
  virtual void read_config(std::uint16_t offset, std::span<std::uint8_t> data) = 0;
  virtual void write_config(std::uint16_t offset, std::span<const std::uint8_t> data) = 0;
};

}  // namespace keel::pci
