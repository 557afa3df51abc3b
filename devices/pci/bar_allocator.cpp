#include "devices/pci/bar_allocator.hpp"

#include <bit>
#include <string>

#include "base/hex.hpp"

namespace keel::pci {

Result<std::uint64_t> BarAllocator::allocate(std::uint64_t size, BarSpace space) {
  static const char* const kNames[] = {"PCI I/O", "32-bit PCI MMIO", "64-bit PCI MMIO"};
  const auto index = static_cast<std::size_t>(space);
  const AddressWindow& window = space == BarSpace::kIo       ? io_
                                : space == BarSpace::kMmio32 ? mmio32_
                                                             : mmio64_;
  if (size == 0 || !std::has_single_bit(size)) {
    return Error::invalid(std::string(kNames[index]) + " BAR of " + hex(size) +
                          " bytes: a BAR's size is a power of two");
  }
  std::lock_guard lock(mutex_);
  if (auto it = free_[index].find(size); it != free_[index].end()) {
    const std::uint64_t address = it->second;
    free_[index].erase(it);
    return address;
  }
  std::uint64_t& next = next_[index];
  // Aligned up without overflow: the result is a multiple of size at or after next, if any.
  const std::uint64_t address = next % size == 0 ? next : next - next % size + size;
  if (address < next || address >= window.end || size > window.end - address) {
    return Error::invalid(std::string(kNames[index]) + " window " + hex(window.start) + "-" +
                          hex(window.end - 1) + " has no room left for a BAR of " + hex(size) +
                          " bytes; pass fewer devices");
  }
  next = address + size;
  return address;
}

void BarAllocator::release(std::uint64_t address, std::uint64_t size, BarSpace space) {
  std::lock_guard lock(mutex_);
  free_[static_cast<std::size_t>(space)].emplace(size, address);
}

}  // namespace keel::pci
