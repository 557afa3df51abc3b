#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <shared_mutex>
#include <span>
#include <string>

#include "base/result.hpp"
#include "devices/bus_device.hpp"

namespace keel::devices {

// An address space (port I/O or MMIO) dispatching accesses to devices by range.
// Ranges are [base, base+len): empty, overflowing and overlapping ranges are refused.
class Bus {
 public:
  explicit Bus(std::string name) : name_(std::move(name)) {}

  Status insert(std::shared_ptr<BusDevice> device, std::uint64_t base, std::uint64_t len);
  Status remove(std::uint64_t base);

  // Dispatches to the device covering `addr`; false if none does (the caller decides what an
  // unclaimed access means: reads of nothing return all-ones on x86).
  bool read(std::uint64_t addr, std::span<std::uint8_t> data) const;
  bool write(std::uint64_t addr, std::span<const std::uint8_t> data) const;

 private:
  struct Entry {
    std::uint64_t len;
    std::shared_ptr<BusDevice> device;
  };
  // The device covering `addr` and the offset into it; nullptr if none.
  std::shared_ptr<BusDevice> find(std::uint64_t addr, std::uint64_t size, std::uint64_t* offset) const;

  std::string name_;
  mutable std::shared_mutex mutex_;
  std::map<std::uint64_t, Entry> ranges_;  // keyed by base
};

}  // namespace keel::devices
