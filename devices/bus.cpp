#include "devices/bus.hpp"

#include <mutex>

#include "base/hex.hpp"

namespace keel::devices {

Status Bus::insert(std::shared_ptr<BusDevice> device, std::uint64_t base, std::uint64_t len) {
  const std::string range = name_ + " range " + hex(base) + "+" + hex(len);
  if (len == 0) {
    return Error::invalid(range + " is empty");
  }
  if (base + len < base) {
    return Error::invalid(range + " overflows the address space");
  }
  std::unique_lock lock(mutex_);
  auto next = ranges_.lower_bound(base);
  if (next != ranges_.end() && next->first < base + len) {
    return Error::exists(range + " overlaps the device at " + hex(next->first));
  }
  if (next != ranges_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second.len > base) {
      return Error::exists(range + " overlaps the device at " + hex(prev->first));
    }
  }
  ranges_.emplace(base, Entry{len, std::move(device)});
  return ok_status();
}

Status Bus::remove(std::uint64_t base) {
  std::unique_lock lock(mutex_);
  if (ranges_.erase(base) == 0) {
    return Error::not_found(name_ + " has no device at " + hex(base));
  }
  return ok_status();
}

std::shared_ptr<BusDevice> Bus::find(std::uint64_t addr, std::uint64_t size,
                                     std::uint64_t* offset) const {
  std::shared_lock lock(mutex_);
  auto it = ranges_.upper_bound(addr);
  if (it == ranges_.begin()) {
    return nullptr;
  }
  --it;
  const std::uint64_t off = addr - it->first;
  // The whole access must fall inside the device's range.
  if (off >= it->second.len || size > it->second.len - off) {
    return nullptr;
  }
  *offset = off;
  return it->second.device;
}

bool Bus::read(std::uint64_t addr, std::span<std::uint8_t> data) const {
  std::uint64_t offset = 0;
  auto device = find(addr, data.size(), &offset);
  if (!device) {
    return false;
  }
  device->read(offset, data);
  return true;
}

bool Bus::write(std::uint64_t addr, std::span<const std::uint8_t> data) const {
  std::uint64_t offset = 0;
  auto device = find(addr, data.size(), &offset);
  if (!device) {
    return false;
  }
  device->write(offset, data);
  return true;
}

}  // namespace keel::devices
