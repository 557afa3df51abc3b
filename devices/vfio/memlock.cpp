#include "devices/vfio/memlock.hpp"

#include <sys/resource.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace keel::vfio {
namespace {

constexpr int kCapIpcLock = 14;  // linux/capability.h

}  // namespace

Result<bool> cap_ipc_lock_in_status(const std::string& proc_status) {
  std::istringstream lines(proc_status);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("CapEff:", 0) != 0) {
      continue;
    }
    const std::string mask = line.substr(7);
    char* end = nullptr;
    const unsigned long long bits = std::strtoull(mask.c_str(), &end, 16);
    if (end == mask.c_str()) {
      return Error::invalid("/proc/self/status: CapEff '" + mask + "' is not a hex mask");
    }
    return ((bits >> kCapIpcLock) & 1U) != 0;
  }
  return Error::invalid("/proc/self/status has no CapEff line");
}

Result<MemlockLimit> read_memlock_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_MEMLOCK, &limit) != 0) {
    return Error::from_errno("getrlimit(RLIMIT_MEMLOCK)");
  }
  std::ifstream file("/proc/self/status");
  if (!file) {
    return Error::from_errno("open /proc/self/status");
  }
  std::stringstream text;
  text << file.rdbuf();
  KEEL_TRY(auto cap, cap_ipc_lock_in_status(text.str()));
  MemlockLimit out;
  out.limit_bytes = limit.rlim_cur == RLIM_INFINITY ? kMemlockUnlimited : limit.rlim_cur;
  out.cap_ipc_lock = cap;
  return out;
}

}  // namespace keel::vfio
