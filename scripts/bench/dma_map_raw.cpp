// dma_map_raw: the baseline of scripts/bench/dma_map, and its stopwatch. Runs inside the
// testbed's emulated host, built static (the host has only what is carried). Two commands:
//
//   dma_map_raw map --group N --size BYTES --backing anon|anon-thp|anon-huge|memfd|memfd-huge
//
// The least a program can do to map guest-sized memory for a device: allocates BYTES the way
// Keel allocates guest RAM for that backing (memory/guest_memory.cpp; never touched, so the MAP
// faults every page in, as it does for Keel), opens a VFIO container, attaches group N, selects
// type1v2, then one VFIO_IOMMU_MAP_DMA of the whole buffer at IOVA 0 (Keel's IOVA = GPA, and
// guest RAM below 3 GiB is one region starting at GPA 0) and one VFIO_IOMMU_UNMAP_DMA of it.
// Each step timed with CLOCK_MONOTONIC around the bare syscall; prints one line on stdout:
//
//   raw size=268435456 backing=anon alloc_ns=… setup_ns=… map_ns=… unmap_ns=… total_ns=…
//     map_vma=rd.wr.mr.mw.me.ac.sd.nr,thp1,a2m0
//
//   anon        mmap(MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE)               keel --memory size=S
//   anon-thp    the same, 2 MiB-aligned and madvise(MADV_HUGEPAGE)  (keel size=S, once guest RAM
//               is allocated that way)
//   anon-huge   mmap(MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE|MAP_HUGETLB)    …,hugepages=on
//   memfd       memfd_create(MFD_CLOEXEC), ftruncate, mmap(MAP_SHARED|MAP_NORESERVE)  …,shared=on
//   memfd-huge  the same with MFD_HUGETLB                          …,shared=on,hugepages=on
//
// map_vma describes the buffer's mapping as dma_map_shim.so describes Keel's (VmFlags from
// /proc/self/smaps joined with '.', THPeligible, 2 MiB alignment), read before the timed steps.
//
//   dma_map_raw time [--timeout SECONDS] -- COMMAND [ARGS...]
//
// Runs COMMAND (fork + execvp), waits for it and prints on stderr, after it ended:
//
//   dma_map_time start_ns=… end_ns=… wall_ns=… status=N timed_out=0|1
//
// start_ns is CLOCK_MONOTONIC just before fork, end_ns just after waitpid returned; status is
// the exit status (128+signal when killed). After --timeout seconds (default 600) the command is
// killed (SIGKILL, by its PID) and timed_out=1.
//
//   dma_map_raw hold-kvm
//
// Creates one KVM VM and sleeps until killed, so that KVM's use count never drops to zero
// between Keel runs: without it every keel process turns virtualization on and off on every CPU
// (IPIs, under a spinlock), and the emulated host has been seen to hang for good, rarely, right
// around such short keel runs.
//
// Exit status: map: 0 when every step succeeded (stderr says which failed otherwise); time:
// the command's status, 124 on timeout.

#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/vfio.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

std::uint64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "dma_map_raw: %s\n", what.c_str());
  std::exit(1);
}

[[noreturn]] void die_errno(const std::string& what) {
  die(what + ": " + std::strerror(errno));
}

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: dma_map_raw map --group N --size BYTES --backing anon|anon-thp|anon-huge|memfd|memfd-huge\n"
               "       dma_map_raw time [--timeout SECONDS] -- COMMAND [ARGS...]\n"
               "       dma_map_raw hold-kvm\n");
  std::exit(2);
}

std::uint64_t parse_number(std::string_view flag, const char* text) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0') {
    die(std::string(flag) + " wants a number, got '" + text + "'");
  }
  return v;
}

// Guest RAM as Keel maps it for the backing (memory/guest_memory.cpp, map_region).
std::uint8_t* allocate(std::string_view backing, std::uint64_t size) {
  void* p = MAP_FAILED;
  if (backing == "anon-thp") {
    // Mapping::anonymous_aligned: reserve size + 2 MiB, give back the unaligned head and the tail.
    constexpr std::uint64_t kAlign = 2ULL << 20;
    void* base = ::mmap(nullptr, size + kAlign, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
      die_errno("mmap " + std::to_string(size + kAlign) + " bytes (anon-thp)");
    }
    const auto b = reinterpret_cast<std::uintptr_t>(base);
    const std::uintptr_t start = (b + kAlign - 1) & ~(kAlign - 1);
    const std::uint64_t head = start - b;
    if (head != 0) {
      ::munmap(base, head);
    }
    if (kAlign - head != 0) {
      ::munmap(reinterpret_cast<void*>(start + size), kAlign - head);
    }
    p = reinterpret_cast<void*>(start);
    ::madvise(p, size, MADV_HUGEPAGE);
  } else if (backing == "anon" || backing == "anon-huge") {
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
    if (backing == "anon-huge") {
      flags |= MAP_HUGETLB;
    }
    p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, flags, -1, 0);
  } else if (backing == "memfd" || backing == "memfd-huge") {
    unsigned int mfd_flags = MFD_CLOEXEC;
    if (backing == "memfd-huge") {
      mfd_flags |= MFD_HUGETLB;
    }
    const int fd = ::memfd_create("dma-map-raw", mfd_flags);
    if (fd < 0) {
      die_errno("memfd_create");
    }
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
      die_errno("ftruncate memfd");
    }
    p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    ::close(fd);  // the mapping keeps the file
  } else {
    die("unknown backing '" + std::string(backing) + "'");
  }
  if (p == MAP_FAILED) {
    die_errno("mmap " + std::to_string(size) + " bytes (" + std::string(backing) + ")");
  }
  return static_cast<std::uint8_t*>(p);
}

// VmFlags (joined with '.'), THPeligible and 2 MiB alignment of the mapping that holds addr.
std::string describe_vma(const void* addr) {
  std::FILE* f = std::fopen("/proc/self/smaps", "re");
  if (f == nullptr) {
    return "unknown";
  }
  const auto a = reinterpret_cast<unsigned long long>(addr);
  char line[512];
  bool in_vma = false;
  unsigned long long start = 0;
  std::string flags;
  int thp = -1;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    unsigned long long lo = 0, hi = 0;
    if (std::sscanf(line, "%llx-%llx ", &lo, &hi) == 2) {
      if (in_vma) {
        break;
      }
      in_vma = a >= lo && a < hi;
      start = lo;
    } else if (in_vma && std::strncmp(line, "THPeligible:", 12) == 0) {
      thp = std::atoi(line + 12);
    } else if (in_vma && std::strncmp(line, "VmFlags:", 8) == 0) {
      std::string_view v(line + 8);
      while (!v.empty() && (v.front() == ' ')) {
        v.remove_prefix(1);
      }
      while (!v.empty() && (v.back() == ' ' || v.back() == '\n')) {
        v.remove_suffix(1);
      }
      flags = v;
      std::replace(flags.begin(), flags.end(), ' ', '.');
    }
  }
  std::fclose(f);
  if (flags.empty()) {
    return "unknown";
  }
  return flags + ",thp" + std::to_string(thp) + ",a2m" + ((start & 0x1fffffULL) == 0 ? "1" : "0");
}

int xioctl(int fd, unsigned long request, void* arg, const char* what) {
  const int ret = ::ioctl(fd, request, arg);
  if (ret < 0) {
    die_errno(what);
  }
  return ret;
}

int cmd_map(int argc, char** argv) {
  std::uint64_t group = 0;
  std::uint64_t size = 0;
  std::string backing;
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) {
      usage();
    }
    if (arg == "--group") {
      group = parse_number(arg, argv[++i]);
    } else if (arg == "--size") {
      size = parse_number(arg, argv[++i]);
    } else if (arg == "--backing") {
      backing = argv[++i];
    } else {
      usage();
    }
  }
  if (size == 0 || size % 4096 != 0 || backing.empty()) {
    usage();
  }

  const std::uint64_t t0 = now_ns();
  std::uint8_t* buf = allocate(backing, size);
  const std::uint64_t t1 = now_ns();
  const std::string vma = describe_vma(buf);  // between the timed steps

  const std::uint64_t t1b = now_ns();
  const int container = ::open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
  if (container < 0) {
    die_errno("open /dev/vfio/vfio");
  }
  if (xioctl(container, VFIO_GET_API_VERSION, nullptr, "VFIO_GET_API_VERSION") != VFIO_API_VERSION) {
    die("unexpected VFIO API version");
  }
  if (xioctl(container, VFIO_CHECK_EXTENSION, reinterpret_cast<void*>(VFIO_TYPE1v2_IOMMU),
             "VFIO_CHECK_EXTENSION") != 1) {
    die("no type1v2 IOMMU");
  }
  const std::string group_path = "/dev/vfio/" + std::to_string(group);
  const int group_fd = ::open(group_path.c_str(), O_RDWR | O_CLOEXEC);
  if (group_fd < 0) {
    die_errno("open " + group_path);
  }
  vfio_group_status status{};
  status.argsz = sizeof(status);
  xioctl(group_fd, VFIO_GROUP_GET_STATUS, &status, "VFIO_GROUP_GET_STATUS");
  if ((status.flags & VFIO_GROUP_FLAGS_VIABLE) == 0) {
    die(group_path + " is not viable (a device of the group is bound to a host driver)");
  }
  int container_arg = container;
  xioctl(group_fd, VFIO_GROUP_SET_CONTAINER, &container_arg, "VFIO_GROUP_SET_CONTAINER");
  xioctl(container, VFIO_SET_IOMMU, reinterpret_cast<void*>(VFIO_TYPE1v2_IOMMU), "VFIO_SET_IOMMU");

  const std::uint64_t t2 = now_ns();
  vfio_iommu_type1_dma_map map{};
  map.argsz = sizeof(map);
  map.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
  map.vaddr = reinterpret_cast<std::uintptr_t>(buf);
  map.iova = 0;
  map.size = size;
  const int map_ret = ::ioctl(container, VFIO_IOMMU_MAP_DMA, &map);
  const int map_errno = errno;
  const std::uint64_t t3 = now_ns();
  if (map_ret != 0) {
    errno = map_errno;
    die_errno("VFIO_IOMMU_MAP_DMA of " + std::to_string(size) + " bytes");
  }

  vfio_iommu_type1_dma_unmap unmap{};
  unmap.argsz = sizeof(unmap);
  unmap.iova = 0;
  unmap.size = size;
  const int unmap_ret = ::ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap);
  const int unmap_errno = errno;
  const std::uint64_t t4 = now_ns();
  if (unmap_ret != 0) {
    errno = unmap_errno;
    die_errno("VFIO_IOMMU_UNMAP_DMA");
  }
  if (unmap.size != size) {
    die("VFIO_IOMMU_UNMAP_DMA unmapped " + std::to_string(unmap.size) + " bytes, not " +
        std::to_string(size));
  }
  std::printf("raw size=%llu backing=%s alloc_ns=%llu setup_ns=%llu map_ns=%llu unmap_ns=%llu total_ns=%llu map_vma=%s\n",
              static_cast<unsigned long long>(size), backing.c_str(),
              static_cast<unsigned long long>(t1 - t0), static_cast<unsigned long long>(t2 - t1b),
              static_cast<unsigned long long>(t3 - t2), static_cast<unsigned long long>(t4 - t3),
              static_cast<unsigned long long>(t4 - t0 - (t1b - t1)), vma.c_str());
  std::fflush(stdout);
  ::close(group_fd);
  ::close(container);
  ::munmap(buf, size);
  return 0;
}

int cmd_hold_kvm() {
  const int kvm = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) {
    die_errno("open /dev/kvm");
  }
  const int vm = ::ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) {
    die_errno("KVM_CREATE_VM");
  }
  for (;;) {
    ::pause();
  }
}

volatile sig_atomic_t g_alarm = 0;

void on_alarm(int) { g_alarm = 1; }

int cmd_time(int argc, char** argv) {
  std::uint64_t timeout = 600;
  int i = 0;
  for (; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg == "--timeout" && i + 1 < argc) {
      timeout = parse_number(arg, argv[++i]);
    } else {
      usage();
    }
  }
  if (i >= argc || timeout == 0) {
    usage();
  }
  struct sigaction sa{};
  sa.sa_handler = on_alarm;  // no SA_RESTART: waitpid returns EINTR
  ::sigemptyset(&sa.sa_mask);
  ::sigaction(SIGALRM, &sa, nullptr);

  const std::uint64_t start = now_ns();
  const pid_t child = ::fork();
  if (child < 0) {
    die_errno("fork");
  }
  if (child == 0) {
    ::execvp(argv[i], argv + i);
    std::fprintf(stderr, "dma_map_raw: exec %s: %s\n", argv[i], std::strerror(errno));
    ::_exit(127);
  }
  ::alarm(static_cast<unsigned>(timeout));
  int wstatus = 0;
  bool timed_out = false;
  for (;;) {
    const pid_t r = ::waitpid(child, &wstatus, 0);
    if (r == child) {
      break;
    }
    if (r < 0 && errno == EINTR) {
      if (g_alarm != 0 && !timed_out) {
        timed_out = true;
        ::kill(child, SIGKILL);
      }
      continue;
    }
    die_errno("waitpid");
  }
  const std::uint64_t end = now_ns();
  ::alarm(0);
  const int status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
  std::fprintf(stderr, "dma_map_time start_ns=%llu end_ns=%llu wall_ns=%llu status=%d timed_out=%d\n",
               static_cast<unsigned long long>(start), static_cast<unsigned long long>(end),
               static_cast<unsigned long long>(end - start), status, timed_out ? 1 : 0);
  return timed_out ? 124 : status;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage();
  }
  const std::string_view cmd = argv[1];
  if (cmd == "map") {
    return cmd_map(argc - 2, argv + 2);
  }
  if (cmd == "time") {
    return cmd_time(argc - 2, argv + 2);
  }
  if (cmd == "hold-kvm" && argc == 2) {
    return cmd_hold_kvm();
  }
  usage();
}
