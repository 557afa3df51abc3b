#include "devices/pci/root.hpp"

#include <algorithm>
#include <cstdio>
#include <mutex>

#include "devices/pci/host_bridge.hpp"

namespace keel::pci {

std::string guest_bdf(std::uint8_t slot, std::uint16_t segment) {
  char bdf[16];
  std::snprintf(bdf, sizeof bdf, "%04x:00:%02x.0", segment, slot);
  return bdf;
}

namespace {

bool within_dword(std::uint16_t offset, std::size_t size) {
  return size > 0 && size <= 4 && (offset & 3U) + size <= 4;
}

}  // namespace

PciRoot::PciRoot() { slots_[0] = std::make_shared<PciHostBridge>(); }

Result<std::uint8_t> PciRoot::free_slot() const {
  std::shared_lock lock(mutex_);
  for (std::uint8_t slot = 1; slot < kSlots; ++slot) {
    if (!slots_[slot]) {
      return slot;
    }
  }
  return Error::invalid("PCI bus 0 has no free slot (all 31 device slots are taken); "
                        "pass fewer devices");
}

Status PciRoot::add_at(std::uint8_t slot, std::shared_ptr<PciDevice> device) {
  std::unique_lock lock(mutex_);
  if (slot == 0 || slot >= kSlots || slots_[slot]) {
    return Error::exists("PCI slot " + std::to_string(slot) + " is not free");
  }
  slots_[slot] = std::move(device);
  return ok_status();
}

Result<std::uint8_t> PciRoot::add(std::shared_ptr<PciDevice> device) {
  KEEL_TRY(auto slot, free_slot());
  KEEL_TRY_STATUS(add_at(slot, std::move(device)));
  return slot;
}

Status PciRoot::remove(std::uint8_t slot) {
  std::unique_lock lock(mutex_);
  if (slot == 0 || slot >= kSlots || !slots_[slot]) {
    return Error::not_found("PCI slot " + std::to_string(slot) + " holds no removable device");
  }
  slots_[slot].reset();
  return ok_status();
}

std::shared_ptr<PciDevice> PciRoot::device_at(std::uint8_t bus, std::uint8_t slot,
                                              std::uint8_t function) const {
  if (bus != 0 || slot >= kSlots || function != 0) {
    return nullptr;
  }
  std::shared_lock lock(mutex_);
  return slots_[slot];
}

void PciRoot::read_config(std::uint8_t bus, std::uint8_t slot, std::uint8_t function,
                          std::uint16_t offset, std::span<std::uint8_t> data) const {
  auto device = device_at(bus, slot, function);
  if (!device || !within_dword(offset, data.size()) || offset >= 4096) {
    std::fill(data.begin(), data.end(), 0xff);
    return;
  }
  device->read_config(offset, data);
}

void PciRoot::write_config(std::uint8_t bus, std::uint8_t slot, std::uint8_t function,
                           std::uint16_t offset, std::span<const std::uint8_t> data) const {
  auto device = device_at(bus, slot, function);
  if (!device || !within_dword(offset, data.size()) || offset >= 4096) {
    return;
  }
  device->write_config(offset, data);
}

// ---- Mechanism #1 ----

namespace {
constexpr std::uint32_t kEnableBit = 0x8000'0000;
constexpr std::uint64_t kDataOffset = 4;

struct Decoded {
  std::uint8_t bus, slot, function;
  std::uint16_t reg;
};
Decoded decode_address(std::uint32_t address) {
  return Decoded{static_cast<std::uint8_t>((address >> 16) & 0xff),
                 static_cast<std::uint8_t>((address >> 11) & 0x1f),
                 static_cast<std::uint8_t>((address >> 8) & 0x7),
                 // Bits 27:24 extend the register number (AMD extended config), as QEMU accepts.
                 static_cast<std::uint16_t>((address & 0xfc) | ((address >> 16) & 0xf00))};
}
}  // namespace

void PciConfigIo::read(std::uint64_t offset, std::span<std::uint8_t> data) {
  std::fill(data.begin(), data.end(), 0xff);
  std::uint32_t address = 0;
  {
    std::lock_guard lock(mutex_);
    address = address_;
  }
  if (offset < kDataOffset) {
    for (std::size_t i = 0; i < data.size() && offset + i < kDataOffset; ++i) {
      data[i] = static_cast<std::uint8_t>(address >> (8 * (offset + i)));
    }
    return;
  }
  if ((address & kEnableBit) == 0) {
    return;
  }
  const Decoded d = decode_address(address);
  root_->read_config(d.bus, d.slot, d.function,
                     static_cast<std::uint16_t>(d.reg + (offset - kDataOffset)), data);
}

void PciConfigIo::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
  std::uint32_t address = 0;
  {
    std::lock_guard lock(mutex_);
    if (offset < kDataOffset) {
      for (std::size_t i = 0; i < data.size() && offset + i < kDataOffset; ++i) {
        const unsigned shift = 8 * static_cast<unsigned>(offset + i);
        address_ = (address_ & ~(0xffU << shift)) | (static_cast<std::uint32_t>(data[i]) << shift);
      }
      return;
    }
    address = address_;
  }
  if ((address & kEnableBit) == 0) {
    return;
  }
  const Decoded d = decode_address(address);
  root_->write_config(d.bus, d.slot, d.function,
                      static_cast<std::uint16_t>(d.reg + (offset - kDataOffset)), data);
}

// ---- ECAM ----

void PciEcam::read(std::uint64_t offset, std::span<std::uint8_t> data) {
  root_->read_config(static_cast<std::uint8_t>(offset >> 20), static_cast<std::uint8_t>((offset >> 15) & 0x1f),
                     static_cast<std::uint8_t>((offset >> 12) & 0x7),
                     static_cast<std::uint16_t>(offset & 0xfff), data);
}

void PciEcam::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
  root_->write_config(static_cast<std::uint8_t>(offset >> 20), static_cast<std::uint8_t>((offset >> 15) & 0x1f),
                      static_cast<std::uint8_t>((offset >> 12) & 0x7),
                      static_cast<std::uint16_t>(offset & 0xfff), data);
}

}  // namespace keel::pci
