// Runs a command as root without CAP_IPC_LOCK and with RLIMIT_MEMLOCK set, inside the emulated
// host: how an operator's unprivileged limits look to Keel, so that the testbed can make an
// eager plan not fit the memlock limit (root would otherwise pin without limit).
//
// usage: memlock_exec BYTES COMMAND [ARGS...]
// Drops CAP_IPC_LOCK from the bounding, effective, permitted and inheritable sets, sets the
// soft and hard RLIMIT_MEMLOCK to BYTES, and execs COMMAND. Exit status 2 on bad usage, 1 when a
// step fails (with the step named on stderr).

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

int fail(const char* step) {
  std::fprintf(stderr, "memlock_exec: %s: %s\n", step, std::strerror(errno));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: memlock_exec BYTES COMMAND [ARGS...]\n");
    return 2;
  }
  char* end = nullptr;
  const unsigned long long bytes = std::strtoull(argv[1], &end, 10);
  if (end == argv[1] || *end != '\0') {
    std::fprintf(stderr, "memlock_exec: BYTES must be a decimal number, got '%s'\n", argv[1]);
    return 2;
  }
  const rlimit limit{bytes, bytes};
  if (::setrlimit(RLIMIT_MEMLOCK, &limit) != 0) {
    return fail("setrlimit(RLIMIT_MEMLOCK)");
  }
  if (::prctl(PR_CAPBSET_DROP, CAP_IPC_LOCK, 0, 0, 0) != 0) {
    return fail("prctl(PR_CAPBSET_DROP, CAP_IPC_LOCK)");
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (::syscall(SYS_capget, &header, data) != 0) {
    return fail("capget");
  }
  const unsigned bit = 1U << (CAP_IPC_LOCK % 32);
  auto& word = data[CAP_IPC_LOCK / 32];
  word.effective &= ~bit;
  word.permitted &= ~bit;
  word.inheritable &= ~bit;
  if (::syscall(SYS_capset, &header, data) != 0) {
    return fail("capset");
  }
  ::execvp(argv[2], argv + 2);
  return fail(argv[2]);
}
