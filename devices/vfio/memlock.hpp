#pragma once

#include <cstdint>
#include <limits>
#include <string>

#include "base/result.hpp"

namespace keel::vfio {

inline constexpr std::uint64_t kMemlockUnlimited = std::numeric_limits<std::uint64_t>::max();

// What limits how much memory this process may pin for DMA (type1 charges pinned pages to
// RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK).
struct MemlockLimit {
  std::uint64_t limit_bytes = kMemlockUnlimited;  // the soft RLIMIT_MEMLOCK
  bool cap_ipc_lock = false;

  bool allows(std::uint64_t pinned_bytes) const {
    return cap_ipc_lock || limit_bytes == kMemlockUnlimited || pinned_bytes <= limit_bytes;
  }
};

// Reads RLIMIT_MEMLOCK (getrlimit) and whether CAP_IPC_LOCK is in the effective set
// (/proc/self/status CapEff).
Result<MemlockLimit> read_memlock_limit();

// Parses the CapEff line's hex mask out of /proc/self/status text (exposed for tests).
Result<bool> cap_ipc_lock_in_status(const std::string& proc_status);

}  // namespace keel::vfio
