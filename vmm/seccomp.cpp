#include "vmm/seccomp.hpp"

#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <linux/sockios.h>
#include <linux/vfio.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fcntl.h>

#include <csignal>
#include <cstring>

#include "devices/vfio/iommufd_uapi.hpp"
#include "vmm/kvm_abi.hpp"

namespace keel::vmm {
namespace {

using abi::kGetMsrs;
using abi::kGetSupportedCpuid;
using abi::kSetCpuid2;
using abi::kSetGsiRouting;
using abi::kSetMsrs;

// What every thread needs from the C and C++ runtimes: memory, locks, time, its own exit, and
// writing its log lines.
const std::vector<int> kRuntime = {
    SYS_read,          SYS_write,          SYS_writev,        SYS_close,
    SYS_futex,         SYS_exit,           SYS_exit_group,    SYS_rt_sigreturn,
    SYS_rt_sigprocmask, SYS_sigaltstack,   SYS_madvise,       SYS_mmap,
    SYS_munmap,        SYS_mprotect,       SYS_mremap,        SYS_brk,
    SYS_clock_gettime, SYS_clock_nanosleep, SYS_nanosleep,    SYS_gettimeofday,
    SYS_gettid,        SYS_getpid,         SYS_sched_yield,   SYS_restart_syscall,
    SYS_fstat,         SYS_newfstatat,     SYS_lseek,         SYS_getrandom,
    SYS_tgkill,  // abort() on a failed assertion
    SYS_rt_sigaction,  // abort() resets SIGABRT's handler first
};

// The ioctls a running VM's devices issue from a vCPU thread: interrupt routes and irqfds when
// the guest programs MSI or MSI-X, memory slots when it moves a passthrough BAR, VFIO interrupt
// setup, and the lazy engine's MAP/UNMAP (type1 or iommufd) with its DMA_AVAIL re-read.
const std::vector<unsigned long> kDeviceIoctls = {
    KVM_IRQFD,         kSetGsiRouting,      KVM_SET_USER_MEMORY_REGION, VFIO_DEVICE_SET_IRQS,
    VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA, VFIO_IOMMU_GET_INFO,
    vfio::uapi::kIommuIoasMap, vfio::uapi::kIommuIoasUnmap,
    KVM_IOEVENTFD,  // a virtio queue's notify address follows its BAR
    // COM1's data register is coalesced while the guest polls the transmitter
    KVM_REGISTER_COALESCED_MMIO, KVM_UNREGISTER_COALESCED_MMIO,
    TUNSETOFFLOAD,  // a network link's offloads follow what its guest accepted
};

std::vector<int> with_runtime(std::vector<int> extra) {
  extra.insert(extra.end(), kRuntime.begin(), kRuntime.end());
#if defined(__SANITIZE_ADDRESS__)
  // Sanitizer builds only. AddressSanitizer probes whether memory is readable through a pipe
  // when a thread ends; a sanitizer's report finds and reads the binary to symbolise its stack
  // (readlink /proc/self/exe, fcntl, a read-only open: SeccompRules::read_only_open) and asks
  // whether stderr is a terminal (ioctl TCGETS, below): without these the filter would stop the
  // report it exists to print.
  extra.insert(extra.end(), {SYS_pipe2, SYS_readlink, SYS_readlinkat, SYS_ioctl, SYS_fcntl});
#endif
  return extra;
}

std::vector<unsigned long> with_runtime_ioctls(std::vector<unsigned long> extra) {
#if defined(__SANITIZE_ADDRESS__)
  extra.push_back(TCGETS);  // isatty() in a sanitizer's report; sanitizer builds only
#endif
  return extra;
}

std::vector<unsigned long> with_devices(std::vector<unsigned long> extra) {
  extra.insert(extra.end(), kDeviceIoctls.begin(), kDeviceIoctls.end());
  return with_runtime_ioctls(std::move(extra));
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitizerOpen = true;
#else
constexpr bool kSanitizerOpen = false;
#endif

SeccompRules vcpu_rules() {
  return {with_runtime({
              SYS_ioctl, SYS_pread64, SYS_pwrite64,  // KVM_RUN; passthrough config space, BARs
              SYS_eventfd2,                          // irqfds for newly enabled vectors
              SYS_fallocate,  // virtio-mem: unplugged shared (memfd) memory given back
              // virtio-fs: the driver's start and reset are vhost-user messages to the back end
              SYS_sendmsg, SYS_recvfrom, SYS_poll, SYS_ppoll,
          }),
          with_devices({KVM_RUN, KVM_NMI, KVM_GET_MP_STATE}), kSanitizerOpen, {}};
}

SeccompRules device_io_rules() {
  return {with_runtime({
              SYS_poll, SYS_ppoll,  // waiting for the queue's kick or its TAP
              SYS_preadv, SYS_pwritev, SYS_pread64, SYS_pwrite64, SYS_fdatasync,
              SYS_readv,  // a TAP's frames (writev is the runtime's)
              SYS_fallocate,  // discard and write-zeroes
              SYS_eventfd2, SYS_ioctl,  // the queue's MSI-X route and irqfd, made when first used
              // vsock: the host's Unix connections, waited on together
              SYS_connect, SYS_accept4, SYS_shutdown, SYS_sendto, SYS_sendmsg,
              SYS_epoll_wait, SYS_epoll_pwait, SYS_epoll_ctl,
          }),
          with_runtime_ioctls({KVM_IRQFD, kSetGsiRouting}), kSanitizerOpen,
          {{AF_UNIX, SOCK_STREAM}}};
}

SeccompRules api_rules() {
  return {with_runtime({
              SYS_accept, SYS_accept4, SYS_recvfrom, SYS_recvmsg, SYS_sendto, SYS_sendmsg, SYS_shutdown,
              SYS_getsockopt, SYS_setsockopt, SYS_getsockname, SYS_getpeername, SYS_fcntl,
              SYS_epoll_wait, SYS_epoll_pwait, SYS_epoll_ctl, SYS_timerfd_settime,
              SYS_eventfd2, SYS_poll, SYS_ppoll, SYS_ioctl,
          }),
          with_runtime_ioctls({FIONBIO}), kSanitizerOpen, {}};
}

SeccompRules vmm_rules() {
  std::vector<int> syscalls = with_runtime({
      // Files: kernel images, sysfs (IOMMU groups, drivers), /dev/kvm, /dev/vfio, the console.
      SYS_open, SYS_openat, SYS_pread64, SYS_pwrite64, SYS_readlink, SYS_readlinkat,
      SYS_getdents64, SYS_statx, SYS_access, SYS_faccessat, SYS_fcntl, SYS_ioctl,
      SYS_unlink, SYS_unlinkat,  // the API socket when keel ends
      // Guest RAM and devices.
      SYS_memfd_create, SYS_ftruncate, SYS_fallocate, SYS_mlock, SYS_munlock,
      SYS_eventfd2, SYS_poll, SYS_ppoll, SYS_epoll_wait, SYS_epoll_ctl,
      SYS_flock,  // disk images
      // vsock: its Unix socket (a stale one replaced), the host's connections.
      SYS_bind, SYS_listen, SYS_connect, SYS_accept4, SYS_shutdown, SYS_sendto, SYS_sendmsg,
      SYS_epoll_create1, SYS_epoll_pwait,
      SYS_recvfrom,  // virtio-fs: the vhost-user back end's answers
      // Never called here, but the device I/O threads this thread starts inherit its filter.
      SYS_preadv, SYS_pwritev, SYS_fdatasync, SYS_readv,
      // vCPU threads: start, name, kick and join them; each installs its own filter on top of
      // this one, which it inherits.
      SYS_clone, SYS_clone3, SYS_set_robust_list, SYS_rseq, SYS_prctl, SYS_seccomp,
      SYS_sched_getaffinity, SYS_sched_setaffinity,
      // Limits: RLIMIT_MEMLOCK and CAP_IPC_LOCK before pinning guest RAM.
      SYS_prlimit64, SYS_getrlimit, SYS_capget,
  });
#if defined(__SANITIZE_ADDRESS__)
  // LeakSanitizer's check at exit runs on this thread: it stops the others with ptrace from a
  // helper task. Sanitizer builds only; release builds do not allow these.
  syscalls.insert(syscalls.end(), {SYS_ptrace, SYS_wait4, SYS_process_vm_readv, SYS_getppid, SYS_getdents,
                                   SYS_sigaltstack, SYS_sched_getaffinity});
#endif
  std::vector<unsigned long> ioctls = with_devices({
      // Never called here, but the vCPU threads this thread starts inherit its filter.
      KVM_RUN, KVM_NMI, KVM_GET_MP_STATE,
      // KVM system, VM and vCPU setup.
      KVM_GET_API_VERSION, KVM_CHECK_EXTENSION, KVM_CREATE_VM, KVM_GET_VCPU_MMAP_SIZE,
      kGetSupportedCpuid, KVM_SET_TSS_ADDR, KVM_SET_IDENTITY_MAP_ADDR, KVM_CREATE_IRQCHIP,
      KVM_CREATE_PIT2, KVM_CREATE_VCPU, kSetCpuid2, kSetMsrs, kGetMsrs, KVM_GET_REGS,
      KVM_SET_REGS, KVM_GET_SREGS, KVM_SET_SREGS, KVM_SET_FPU, KVM_GET_LAPIC, KVM_SET_LAPIC,
      KVM_CREATE_DEVICE, KVM_SET_DEVICE_ATTR,
      // VFIO containers, groups and devices.
      VFIO_GET_API_VERSION, VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU, VFIO_GROUP_GET_STATUS,
      VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER, VFIO_GROUP_GET_DEVICE_FD,
      VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_REGION_INFO, VFIO_DEVICE_GET_IRQ_INFO,
      // iommufd and the device cdevs it binds (a hot-added device on that backend).
      vfio::uapi::kIommuOption, vfio::uapi::kIommuIoasAlloc, vfio::uapi::kIommuIoasIovaRanges,
      vfio::uapi::kVfioDeviceBindIommufd,
      vfio::uapi::kVfioDeviceAttachIommufdPt,
      // TAPs: create or adopt, the virtio-net header; the host side's address and link.
      TUNSETIFF, TUNGETIFF, TUNSETVNETHDRSZ, TUNSETOFFLOAD, SIOCGIFFLAGS, SIOCSIFFLAGS,
      SIOCSIFADDR, SIOCSIFNETMASK,
  });
  // An AF_INET datagram socket is the handle for configuring a TAP's host side (SIOCSIFADDR
  // and friends); Unix streams are vsock's.
  return {std::move(syscalls), std::move(ioctls), false, {{AF_INET, SOCK_DGRAM}, {AF_UNIX, SOCK_STREAM}}};
}

thread_local ThreadKind t_kind = ThreadKind::kVmm;

// Async-signal-safe: builds the line by hand and writes it with one write(2).
void on_sigsys(int /*signal*/, siginfo_t* info, void* /*context*/) {
  char line[160];
  std::size_t n = 0;
  auto put = [&](std::string_view text) {
    for (char c : text) {
      if (n < sizeof line) {
        line[n++] = c;
      }
    }
  };
  put("keel: seccomp: the ");
  put(to_string(t_kind));
  put(" thread made system call ");
  char digits[12];
  int nr = info->si_syscall;
  std::size_t d = 0;
  do {
    digits[d++] = static_cast<char>('0' + nr % 10);
    nr /= 10;
  } while (nr > 0 && d < sizeof digits);
  while (d > 0) {
    put(std::string_view(&digits[--d], 1));
  }
  put(", which its allow-list does not have; stopping (--seccomp log to find them all)\n");
  [[maybe_unused]] auto written = ::write(STDERR_FILENO, line, n);
  ::syscall(SYS_exit_group, 128 + SIGSYS);
}

Status install_sigsys_handler() {
  struct sigaction action {};
  action.sa_sigaction = on_sigsys;
  action.sa_flags = SA_SIGINFO;
  sigemptyset(&action.sa_mask);
  if (::sigaction(SIGSYS, &action, nullptr) != 0) {
    return Error::from_errno("seccomp: sigaction(SIGSYS)");
  }
  return ok_status();
}

}  // namespace

Result<SeccompMode> parse_seccomp_mode(std::string_view text) {
  if (text == "true") {
    return SeccompMode::kEnforce;
  }
  if (text == "log") {
    return SeccompMode::kLog;
  }
  if (text == "false") {
    return SeccompMode::kOff;
  }
  return Error::invalid("--seccomp: '" + std::string(text) + "' is not true, log or false");
}

std::string_view to_string(SeccompMode mode) {
  switch (mode) {
    case SeccompMode::kEnforce:
      return "true";
    case SeccompMode::kLog:
      return "log";
    case SeccompMode::kOff:
      break;
  }
  return "false";
}

std::string_view to_string(ThreadKind kind) {
  switch (kind) {
    case ThreadKind::kVmm:
      return "vmm";
    case ThreadKind::kVcpu:
      return "vcpu";
    case ThreadKind::kDeviceIo:
      return "device-io";
    case ThreadKind::kApi:
      break;
  }
  return "api";
}

const SeccompRules& seccomp_rules(ThreadKind kind) {
  static const SeccompRules kVmmRules = vmm_rules();
  static const SeccompRules kVcpuRules = vcpu_rules();
  static const SeccompRules kApiRules = api_rules();
  static const SeccompRules kDeviceIoRules = device_io_rules();
  switch (kind) {
    case ThreadKind::kVmm:
      return kVmmRules;
    case ThreadKind::kVcpu:
      return kVcpuRules;
    case ThreadKind::kDeviceIo:
      return kDeviceIoRules;
    case ThreadKind::kApi:
      break;
  }
  return kApiRules;
}

Status install_seccomp_filter(ThreadKind kind, SeccompMode mode) {
  if (mode == SeccompMode::kOff) {
    return ok_status();
  }
  const std::string what = "seccomp filter for the " + std::string(to_string(kind)) + " thread";
  if (mode == SeccompMode::kEnforce) {
    KEEL_TRY_STATUS(install_sigsys_handler());
  }
  scmp_filter_ctx ctx = seccomp_init(mode == SeccompMode::kEnforce ? SCMP_ACT_TRAP : SCMP_ACT_LOG);
  if (ctx == nullptr) {
    return Error::from_errno(ENOMEM, what + ": seccomp_init");
  }
  struct Release {
    scmp_filter_ctx ctx;
    ~Release() { seccomp_release(ctx); }
  } release{ctx};

  const SeccompRules& rules = seccomp_rules(kind);
  for (int nr : rules.syscalls) {
    if (nr == SYS_ioctl) {
      continue;  // by request number below
    }
    // A number listed twice (runtime and kind) is accepted by libseccomp as the same rule.
    if (int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0); rc != 0 && rc != -EEXIST) {
      return Error::from_errno(-rc, what + ": rule for system call " + std::to_string(nr));
    }
  }
  for (unsigned long request : rules.ioctls) {
    // The kernel compares the whole 64-bit register; glibc passes the request zero-extended.
    // (Built by hand: libseccomp's SCMP_A1_64 is a C compound literal.)
    scmp_arg_cmp request_is{};
    request_is.arg = 1;
    request_is.op = SCMP_CMP_EQ;
    request_is.datum_a = request;
    if (int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, &request_is);
        rc != 0 && rc != -EEXIST) {
      return Error::from_errno(-rc, what + ": rule for ioctl " + std::to_string(request));
    }
  }
  if (rules.read_only_open) {
    // Allowed when (flags & write_bits) == 0: O_RDONLY, without creating, truncating or appending.
    const unsigned long write_bits = O_ACCMODE | O_CREAT | O_TRUNC | O_APPEND;
    for (const auto& [nr, flags_arg] : {std::pair{SCMP_SYS(open), 1U}, std::pair{SCMP_SYS(openat), 2U}}) {
      scmp_arg_cmp read_only{};
      read_only.arg = flags_arg;
      read_only.op = SCMP_CMP_MASKED_EQ;
      read_only.datum_a = write_bits;
      read_only.datum_b = 0;
      if (int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, 1, &read_only);
          rc != 0 && rc != -EEXIST) {
        return Error::from_errno(-rc, what + ": read-only rule for system call " + std::to_string(nr));
      }
    }
  }
  for (const auto& [family, type] : rules.sockets) {
    scmp_arg_cmp socket_is[2]{};
    socket_is[0].arg = 0;
    socket_is[0].op = SCMP_CMP_EQ;
    socket_is[0].datum_a = static_cast<scmp_datum_t>(family);
    socket_is[1].arg = 1;
    socket_is[1].op = SCMP_CMP_MASKED_EQ;
    socket_is[1].datum_a = 0xf;  // the type, without SOCK_CLOEXEC / SOCK_NONBLOCK
    socket_is[1].datum_b = static_cast<scmp_datum_t>(type);
    if (int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 2, socket_is);
        rc != 0 && rc != -EEXIST) {
      return Error::from_errno(-rc, what + ": rule for socket(" + std::to_string(family) + ", " +
                                        std::to_string(type) + ")");
    }
  }
  if (int rc = seccomp_load(ctx); rc != 0) {
    return Error::from_errno(-rc, what + ": seccomp_load");
  }
  t_kind = kind;
  return ok_status();
}

}  // namespace keel::vmm
