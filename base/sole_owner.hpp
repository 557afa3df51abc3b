#pragma once

#include <chrono>
#include <memory>
#include <thread>

namespace keel {

// Waits, up to `limit`, until `p` holds the last reference to its object. A device taken off its
// bus may still be in the hands of a vCPU thread finishing one access (a few microseconds); its
// destructor should then run on the caller's thread, under the caller's system call filter, not
// on that vCPU's. Returns false on timeout (the object then goes with its last holder).
template <class T>
bool wait_sole_owner(const std::shared_ptr<T>& p,
                     std::chrono::milliseconds limit = std::chrono::milliseconds(1000)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (p.use_count() > 1) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return true;
}

}  // namespace keel
