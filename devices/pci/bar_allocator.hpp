#pragma once

#include <cstdint>
#include <map>
#include <mutex>

#include "base/result.hpp"

namespace keel::pci {

// Which address space a BAR lives in.
enum class BarSpace { kIo, kMmio32, kMmio64 };

// A window of guest-physical (or port) addresses, [start, end).
struct AddressWindow {
  std::uint64_t start = 0;
  std::uint64_t end = 0;
};

// Where BARs go: Keel assigns them as firmware would, each naturally aligned inside its
// space's window, never overlapping another. A removed device gives its BARs back and the next
// BAR of the same size in that space takes the place (hot-plug cycles do not use the windows
// up). Thread-safe (a device may leave on the thread that held it last).
class BarAllocator {
 public:
  BarAllocator(AddressWindow mmio32, AddressWindow mmio64, AddressWindow io)
      : mmio32_(mmio32), mmio64_(mmio64), io_(io), next_{io.start, mmio32.start, mmio64.start} {}

  // A naturally aligned address for a BAR of `size` bytes (a power of two) in `space`.
  Result<std::uint64_t> allocate(std::uint64_t size, BarSpace space);
  // Gives back what allocate() returned.
  void release(std::uint64_t address, std::uint64_t size, BarSpace space);

 private:
  AddressWindow mmio32_, mmio64_, io_;
  std::mutex mutex_;
  std::uint64_t next_[3];  // by BarSpace
  std::multimap<std::uint64_t, std::uint64_t> free_[3];  // by BarSpace: size -> address
};

}  // namespace keel::pci
