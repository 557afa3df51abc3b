#pragma once

#include <string_view>
#include <utility>
#include <vector>

#include "base/result.hpp"

namespace keel::vmm {

// --seccomp true | log | false.
enum class SeccompMode {
  kEnforce,  // a system call outside the thread's list stops keel with a message naming it
  kLog,      // such a call is allowed and logged by the kernel (audit, dmesg)
  kOff,
};
Result<SeccompMode> parse_seccomp_mode(std::string_view text);
std::string_view to_string(SeccompMode mode);

// Each kind of thread gets its own allow-list, installed by the thread itself before it handles
// untrusted input (the guest's exits, API requests).
enum class ThreadKind {
  kVmm,   // the event loop: API operations, building and tearing down VMs, guest power events
  kVcpu,  // KVM_RUN and the device emulation that guest exits reach
  kApi,   // the HTTP server on the Unix socket
  kDeviceIo,  // a virtio queue's worker: a disk's reads and writes, its interrupts
};
std::string_view to_string(ThreadKind kind);

// A thread kind's allow-list: system call numbers (x86-64), and for ioctl the request numbers it
// may pass (ioctl with any other request is outside the list).
struct SeccompRules {
  std::vector<int> syscalls;
  std::vector<unsigned long> ioctls;
  // open/openat for reading only (no write access, no O_CREAT/O_TRUNC/O_APPEND): set in
  // sanitizer builds only, where a report opens the binary to symbolise its stack.
  bool read_only_open = false;
  // The sockets it may create, as (family, type) pairs; socket() with any other is outside the
  // list.
  std::vector<std::pair<int, int>> sockets;
};
const SeccompRules& seccomp_rules(ThreadKind kind);

// Installs `kind`'s filter on the calling thread only (no TSYNC; threads it creates later
// inherit it). kOff installs nothing. In kEnforce a call outside the list raises SIGSYS, whose
// handler writes "keel: seccomp: the <kind> thread made system call <n> (<name>) ..." to stderr
// and ends the process with status 159 (128 + SIGSYS).
Status install_seccomp_filter(ThreadKind kind, SeccompMode mode);

}  // namespace keel::vmm
