// The per-thread filters, tried in forked children: a call outside the list stops the process
// with a message naming it, a listed one works, ioctls are filtered by request, log mode lets
// everything through, and a filter binds only the thread that installed it.
#include "vmm/seccomp.hpp"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>

#include <catch2/catch.hpp>

namespace keel::vmm {
namespace {

struct Outcome {
  int status = -1;  // the exit status, or -1 if killed by a signal
  std::string err;  // what the child wrote to stderr
};

// Runs `body` in a forked child with stderr captured; the child's exit status is body's
// return value unless something stops it first.
Outcome in_child(const std::function<int()>& body) {
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(pipe_fds[0]);
    ::dup2(pipe_fds[1], STDERR_FILENO);
    ::_exit(body());
  }
  ::close(pipe_fds[1]);
  Outcome out;
  // Bounded: a child stuck for a minute is killed and reported as killed.
  int status = 0;
  pid_t done = 0;
  for (int i = 0; i < 600 && done == 0; ++i) {
    done = ::waitpid(pid, &status, WNOHANG);
    if (done == 0) {
      ::usleep(100'000);
    }
  }
  if (done == 0) {
    ::kill(pid, SIGKILL);
    done = ::waitpid(pid, &status, 0);
    out.err = "(killed after 60 s)";
  }
  REQUIRE(done == pid);
  char buf[512];
  ssize_t n;
  while ((n = ::read(pipe_fds[0], buf, sizeof buf)) > 0) {
    out.err.append(buf, static_cast<std::size_t>(n));
  }
  ::close(pipe_fds[0]);
  out.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

TEST_CASE("seccomp: the API thread attempting execve is stopped, with a message") {
  const Outcome out = in_child([] {
    if (!install_seccomp_filter(ThreadKind::kApi, SeccompMode::kEnforce).ok()) {
      return 3;
    }
    char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
    ::execve("/bin/true", argv, nullptr);
    return 4;  // not reached: execve is outside the list
  });
  CHECK(out.status == 159);
  CHECK_THAT(out.err, Catch::Contains("the api thread made system call " +
                                      std::to_string(SYS_execve)));
}

TEST_CASE("seccomp: listed calls work under the filter") {
  for (ThreadKind kind :
       {ThreadKind::kVmm, ThreadKind::kVcpu, ThreadKind::kApi, ThreadKind::kDeviceIo}) {
    INFO(to_string(kind));
    const Outcome out = in_child([kind] {
      if (!install_seccomp_filter(kind, SeccompMode::kEnforce).ok()) {
        return 3;
      }
      const std::string text = "still here\n";
      if (::write(STDERR_FILENO, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
        return 5;
      }
      void* p = ::malloc(1 << 20);  // mmap underneath
      ::free(p);
      return ::getpid() > 0 ? 0 : 6;
    });
    CHECK(out.status == 0);
    CHECK(out.err == "still here\n");
  }
}

TEST_CASE("seccomp: ioctl is allowed by request number only") {
  const Outcome allowed = in_child([] {
    if (!install_seccomp_filter(ThreadKind::kVcpu, SeccompMode::kEnforce).ok()) {
      return 3;
    }
    // KVM_RUN is on the vCPU list: the kernel answers (EBADF), the filter does not stop it.
    return ::ioctl(-1, KVM_RUN, 0) == -1 && errno == EBADF ? 0 : 5;
  });
  CHECK(allowed.status == 0);
  // COM1's coalescing follows the guest's IER writes, made on vCPU threads.
  const Outcome coalescing = in_child([] {
    if (!install_seccomp_filter(ThreadKind::kVcpu, SeccompMode::kEnforce).ok()) {
      return 3;
    }
    kvm_coalesced_mmio_zone zone{};
    const bool on = ::ioctl(-1, KVM_REGISTER_COALESCED_MMIO, &zone) == -1 && errno == EBADF;
    const bool off = ::ioctl(-1, KVM_UNREGISTER_COALESCED_MMIO, &zone) == -1 && errno == EBADF;
    return on && off ? 0 : 5;
  });
  CHECK(coalescing.status == 0);
  // vm.nmi: each vCPU thread queues its own NMI between two KVM_RUNs.
  const Outcome nmi = in_child([] {
    if (!install_seccomp_filter(ThreadKind::kVcpu, SeccompMode::kEnforce).ok()) {
      return 3;
    }
    return ::ioctl(-1, KVM_NMI, 0) == -1 && errno == EBADF ? 0 : 5;
  });
  CHECK(nmi.status == 0);
  const Outcome refused = in_child([] {
    if (!install_seccomp_filter(ThreadKind::kVcpu, SeccompMode::kEnforce).ok()) {
      return 3;
    }
    int pending = 0;
    ::ioctl(-1, FIONREAD, &pending);  // not on the list
    return 4;
  });
  CHECK(refused.status == 159);
  CHECK_THAT(refused.err, Catch::Contains("vcpu thread made system call " +
                                          std::to_string(SYS_ioctl)));
  const Outcome api_kvm = in_child([] {
    if (!install_seccomp_filter(ThreadKind::kApi, SeccompMode::kEnforce).ok()) {
      return 3;
    }
    ::ioctl(-1, KVM_RUN, 0);  // the API thread never runs a vCPU
    return 4;
  });
  CHECK(api_kvm.status == 159);
}

#if defined(__SANITIZE_ADDRESS__)
// Sanitizer builds (the ones the tests run on): a bug found under the filter is reported with its
// stack, not hidden behind a seccomp stop on the report's own system calls.
TEST_CASE("seccomp: a sanitizer's report gets through the filter of every thread kind") {
  for (ThreadKind kind :
       {ThreadKind::kVmm, ThreadKind::kVcpu, ThreadKind::kApi, ThreadKind::kDeviceIo}) {
    INFO(to_string(kind));
    const Outcome out = in_child([kind] {
      if (!install_seccomp_filter(kind, SeccompMode::kEnforce).ok()) {
        return 3;
      }
      volatile char* p = static_cast<char*>(::malloc(16));
      p[16] = 1;  // heap-buffer-overflow: AddressSanitizer reports and exits
      ::free(const_cast<char*>(p));
      return 4;
    });
    CHECK(out.status != 159);
    CHECK_THAT(out.err, Catch::Contains("AddressSanitizer: heap-buffer-overflow"));
    CHECK_THAT(out.err, Catch::Contains("#0 "));
    CHECK_THAT(out.err, !Catch::Contains("keel: seccomp:"));
  }
}

TEST_CASE("seccomp: what sanitizer builds let through on vCPU and API threads is a read-only open") {
  for (ThreadKind kind : {ThreadKind::kVcpu, ThreadKind::kApi}) {
    INFO(to_string(kind));
    CHECK(seccomp_rules(kind).read_only_open);
    const Outcome reading = in_child([kind] {
      if (!install_seccomp_filter(kind, SeccompMode::kEnforce).ok()) {
        return 3;
      }
      const int fd = ::open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
      return fd >= 0 ? 0 : 4;
    });
    CHECK(reading.status == 0);
    const Outcome writing = in_child([kind] {
      if (!install_seccomp_filter(kind, SeccompMode::kEnforce).ok()) {
        return 3;
      }
      ::open("/tmp/keel-seccomp-must-not-exist", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
      return 4;
    });
    CHECK(writing.status == 159);
  }
  CHECK_FALSE(seccomp_rules(ThreadKind::kVmm).read_only_open);  // it may open files anyway
}
#endif

TEST_CASE("seccomp: a filter binds only the thread that installed it") {
  const Outcome out = in_child([] {
    std::thread api([] {
      if (!install_seccomp_filter(ThreadKind::kApi, SeccompMode::kEnforce).ok()) {
        ::_exit(3);
      }
    });
    api.join();
    // This thread has no filter: a call the API thread may not make is fine here.
    return ::syscall(SYS_getppid) > 0 ? 0 : 5;
  });
  INFO(out.err);
  CHECK(out.status == 0);
  CHECK(out.err.empty());
}

TEST_CASE("seccomp: a thread the VMM thread starts can add the vCPU filter and run") {
  const Outcome out = in_child([] {
    if (!install_seccomp_filter(ThreadKind::kVmm, SeccompMode::kEnforce).ok()) {
      return 3;
    }
    int result = 6;
    std::thread vcpu([&result] {
      if (!install_seccomp_filter(ThreadKind::kVcpu, SeccompMode::kEnforce).ok()) {
        result = 7;
        return;
      }
      result = ::ioctl(-1, KVM_RUN, 0) == -1 && errno == EBADF ? 0 : 8;
    });
    vcpu.join();
    return result;
  });
  INFO(out.err);
  CHECK(out.status == 0);
}

TEST_CASE("seccomp: a disk's queue worker, started by the VMM thread, does its I/O under both") {
  char name[] = "/tmp/keel-seccomp-disk-XXXXXX";
  const int fd = ::mkstemp(name);
  REQUIRE(fd >= 0);
  ::unlink(name);
  const Outcome out = in_child([fd] {
    if (!install_seccomp_filter(ThreadKind::kVmm, SeccompMode::kEnforce).ok()) {
      return 3;
    }
    int result = 6;
    std::thread worker([&result, fd] {
      if (!install_seccomp_filter(ThreadKind::kDeviceIo, SeccompMode::kEnforce).ok()) {
        result = 7;
        return;
      }
      char block[512] = {1, 2, 3};
      iovec iov{block, sizeof block};
      pollfd p{fd, POLLIN, 0};
      const bool ok = ::pwritev(fd, &iov, 1, 4096) == 512 && ::preadv(fd, &iov, 1, 0) == 512 &&
                      ::fdatasync(fd) == 0 && ::poll(&p, 1, 0) >= 0;
      (void)::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 512);  // may be ENOTSUP
      result = ok ? 0 : 8;
    });
    worker.join();
    return result;
  });
  ::close(fd);
  INFO(out.err);
  CHECK(out.status == 0);
}

TEST_CASE("seccomp: the VMM thread may open an AF_INET datagram socket (a TAP's address) and a "
          "Unix stream (vsock), no other") {
  const Outcome inet = in_child([] {
    if (!install_seccomp_filter(ThreadKind::kVmm, SeccompMode::kEnforce).ok()) {
      return 3;
    }
    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    return fd >= 0 ? 0 : 4;
  });
  CHECK(inet.status == 0);
  for (ThreadKind kind : {ThreadKind::kVmm, ThreadKind::kDeviceIo}) {
    const Outcome unix_stream = in_child([kind] {
      if (!install_seccomp_filter(ThreadKind::kVmm, SeccompMode::kEnforce).ok() ||
          !install_seccomp_filter(kind, SeccompMode::kEnforce).ok()) {
        return 3;
      }
      const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      return fd >= 0 ? 0 : 4;
    });
    INFO(to_string(kind));
    CHECK(unix_stream.status == 0);
  }
  const Outcome unix_datagram = in_child([] {
    if (!install_seccomp_filter(ThreadKind::kVmm, SeccompMode::kEnforce).ok()) {
      return 3;
    }
    (void)::socket(AF_UNIX, SOCK_DGRAM, 0);
    return 0;
  });
  CHECK(unix_datagram.status == 159);
  const Outcome inet_stream = in_child([] {
    if (!install_seccomp_filter(ThreadKind::kVmm, SeccompMode::kEnforce).ok()) {
      return 3;
    }
    (void)::socket(AF_INET, SOCK_STREAM, 0);
    return 0;
  });
  CHECK(inet_stream.status == 159);
}

TEST_CASE("seccomp: the process exits normally under the VMM filter") {
  // exit() runs the atexit handlers, and in sanitizer builds LeakSanitizer's check, which
  // stops the threads with ptrace from a helper task that inherits this filter.
  const Outcome out = in_child([] {
    if (!install_seccomp_filter(ThreadKind::kVmm, SeccompMode::kEnforce).ok()) {
      return 3;
    }
    std::exit(0);
  });
  INFO(out.err);
  CHECK(out.status == 0);
}

TEST_CASE("seccomp: log mode and off let everything through") {
  for (SeccompMode mode : {SeccompMode::kLog, SeccompMode::kOff}) {
    INFO(to_string(mode));
    const Outcome out = in_child([mode] {
      if (!install_seccomp_filter(ThreadKind::kApi, mode).ok()) {
        return 3;
      }
      char* const argv[] = {const_cast<char*>("/nonexistent"), nullptr};
      ::execve("/nonexistent", argv, nullptr);
      return errno == ENOENT ? 0 : 5;
    });
    CHECK(out.status == 0);
  }
}

TEST_CASE("seccomp: --seccomp values") {
  CHECK(*parse_seccomp_mode("true") == SeccompMode::kEnforce);
  CHECK(*parse_seccomp_mode("log") == SeccompMode::kLog);
  CHECK(*parse_seccomp_mode("false") == SeccompMode::kOff);
  auto bad = parse_seccomp_mode("yes");
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.error().message(), Catch::Contains("'yes' is not true, log or false"));
}

TEST_CASE("seccomp: the lists") {
  const auto has = [](const std::vector<int>& list, int nr) {
    return std::find(list.begin(), list.end(), nr) != list.end();
  };
  for (ThreadKind kind :
       {ThreadKind::kVmm, ThreadKind::kVcpu, ThreadKind::kApi, ThreadKind::kDeviceIo}) {
    const SeccompRules& rules = seccomp_rules(kind);
    INFO(to_string(kind) << ": " << rules.syscalls.size() << " system calls, "
                         << rules.ioctls.size() << " ioctls");
    CHECK_FALSE(has(rules.syscalls, SYS_execve));
    CHECK_FALSE(has(rules.syscalls, SYS_socket));
    CHECK(has(rules.syscalls, SYS_exit_group));
  }
  CHECK(has(seccomp_rules(ThreadKind::kApi).syscalls, SYS_accept4));
  CHECK_FALSE(has(seccomp_rules(ThreadKind::kVcpu).syscalls, SYS_openat));
  CHECK_FALSE(has(seccomp_rules(ThreadKind::kApi).syscalls, SYS_openat));
  CHECK_FALSE(has(seccomp_rules(ThreadKind::kDeviceIo).syscalls, SYS_openat));
  // vCPU and device threads start under the VMM thread's filter, which must let their calls
  // through too.
  for (ThreadKind kind : {ThreadKind::kVcpu, ThreadKind::kDeviceIo}) {
    INFO(to_string(kind));
    for (int nr : seccomp_rules(kind).syscalls) {
      INFO(nr);
      CHECK(has(seccomp_rules(ThreadKind::kVmm).syscalls, nr));
    }
    for (unsigned long request : seccomp_rules(kind).ioctls) {
      const auto& vmm_ioctls = seccomp_rules(ThreadKind::kVmm).ioctls;
      CHECK(std::find(vmm_ioctls.begin(), vmm_ioctls.end(), request) != vmm_ioctls.end());
    }
  }
}

}  // namespace
}  // namespace keel::vmm
