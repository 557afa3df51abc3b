#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>

#include "base/result.hpp"
#include "devices/bus_device.hpp"
#include "devices/pci/pci_device.hpp"

namespace keel::pci {

// Function 0 of `slot` on bus 0 of `segment` as the guest names it: "0000:00:05.0".
std::string guest_bdf(std::uint8_t slot, std::uint16_t segment = 0);
// Its PCI requester id (bus << 8 | slot << 3 | function): what IOMMU tables call it.
constexpr std::uint16_t requester_id(std::uint8_t slot) { return static_cast<std::uint16_t>(slot << 3); }

// PCI bus 0: 32 slots, function 0 of each. Configuration space is reachable through
// mechanism #1 (ports 0xCF8/0xCFC, see PciConfigIo) and ECAM (see PciEcam). Absent functions
// read as all-ones, as on hardware.
class PciRoot {
 public:
  static constexpr std::uint8_t kSlots = 32;

  PciRoot();  // puts the host bridge in slot 0

  // Places `device` in the first free slot and returns the slot number.
  Result<std::uint8_t> add(std::shared_ptr<PciDevice> device);
  // The slot add() would use next (a device's INTx line depends on its slot, so a device may
  // need it before it exists); add_at() then places it there.
  Result<std::uint8_t> free_slot() const;
  Status add_at(std::uint8_t slot, std::shared_ptr<PciDevice> device);
  Status remove(std::uint8_t slot);

  // Config access to bus 0, function `function` of `slot`; `offset` + size stays in one dword.
  void read_config(std::uint8_t bus, std::uint8_t slot, std::uint8_t function, std::uint16_t offset,
                   std::span<std::uint8_t> data) const;
  void write_config(std::uint8_t bus, std::uint8_t slot, std::uint8_t function,
                    std::uint16_t offset, std::span<const std::uint8_t> data) const;

 private:
  std::shared_ptr<PciDevice> device_at(std::uint8_t bus, std::uint8_t slot,
                                       std::uint8_t function) const;

  mutable std::shared_mutex mutex_;
  std::array<std::shared_ptr<PciDevice>, kSlots> slots_;
};

// Configuration mechanism #1: an address register at 0xCF8 and a data window at 0xCFC..0xCFF.
// Registered on the port-I/O bus at 0xCF8 with length 8.
class PciConfigIo : public devices::BusDevice {
 public:
  explicit PciConfigIo(std::shared_ptr<PciRoot> root) : root_(std::move(root)) {}
  void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
  void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

  static constexpr std::uint64_t kSize = 8;

 private:
  std::shared_ptr<PciRoot> root_;
  std::mutex mutex_;
  std::uint32_t address_ = 0;
};

// PCI Express enhanced configuration access (ECAM), bus 0: offset = dev<<15 | fn<<12 | reg.
class PciEcam : public devices::BusDevice {
 public:
  explicit PciEcam(std::shared_ptr<PciRoot> root) : root_(std::move(root)) {}
  void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
  void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

 private:
  std::shared_ptr<PciRoot> root_;
};

}  // namespace keel::pci
