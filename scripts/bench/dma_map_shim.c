// dma_map_shim.so: times the ioctls of the process it is preloaded into (LD_PRELOAD), for
// scripts/bench/dma_map: Keel's own VFIO_IOMMU_MAP_DMA calls, measured the way dma_map_raw
// measures its own (CLOCK_MONOTONIC just before and just after the bare syscall), without
// ptrace stops and without touching Keel.
//
// Every ioctl() of the process goes through here (Keel calls libc's ioctl; its VfioSys seam and
// its KVM wrapper both do). VFIO ioctls (type ';') and KVM ioctls (type 0xAE) are recorded in a
// static table (no I/O while the process runs); at exit one line per VFIO ioctl and a summary go
// to stderr in a single write each:
//
//   dma_map_shim ioctl fd=5 name=MAP_DMA t_ns=… dur_ns=… ret=0 errno=0 bytes=268435456
//   dma_map_shim summary ctor_ns=… exit_ns=… map_calls=1 map_bytes=… map_ns=… map_step_ns=…
//     reconcile_ns=… reconcile_calls=… vfio_setup_ns=… unmap_calls=… unmap_bytes=… unmap_ns=…
//     first_map_ns=… records=… dropped=…
//
//   map_ns          sum of the successful VFIO_IOMMU_MAP_DMA calls' durations
//   map_step_ns     from the start of the first MAP_DMA to the start of the first ioctl after the
//                   last MAP_DMA on another fd (in Keel: KVM_CREATE_DEVICE for the KVM-VFIO
//                   device, the first thing Passthrough::create does once VfioContainer::create
//                   returned): the MAP calls, the reconcile (VFIO_IOMMU_GET_INFO re-reading
//                   DMA_AVAIL), the DMA report log line and the bookkeeping around them
//   reconcile_ns    the container ioctls in that step after the last MAP_DMA
//   gap_ns          from the end of the last MAP_DMA to the start of the next ioctl (Keel's
//                   bookkeeping of the entry, then the reconcile's GET_INFO)
//   tail_ns         from the end of the last container ioctl of the step to the step's end (the
//                   DMA report, its log line, the return into Passthrough::create)
//   vfio_setup_ns   from the first VFIO ioctl to the first MAP_DMA (container, groups, IOMMU
//                   info, device fds, the plan)
//   unmap_ns        sum of the VFIO_IOMMU_UNMAP_DMA calls' durations (bytes as the kernel
//                   reported them: UNMAP_ALL returns the total)
//   *_ns absolute values are CLOCK_MONOTONIC (comparable with dma_map_raw time's start_ns)
//   map_vma         how the memory of the first MAP_DMA is mapped, read from /proc/self/smaps
//                   just before that call (outside every timed interval but the wall time; the
//                   read took probe_ns): its VmFlags joined with '.' (hg: MADV_HUGEPAGE, ht:
//                   hugetlb, sh: shared), "thp" THPeligible, "a2m" whether it starts 2 MiB-aligned,
//                   e.g. rd.wr.mr.mw.me.ac.sd.hg.nr,thp1,a2m1; dma_map_raw allocates to match
//
// Build: gcc -O2 -shared -fPIC -o dma_map_shim.so dma_map_shim.c

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_RECORDS 4096

struct record {
  int fd;
  unsigned long request;
  uint64_t start;
  uint64_t end;
  long ret;
  int err;
  uint64_t bytes;
};

static struct record records[MAX_RECORDS];
static unsigned nrecords;
static unsigned long dropped;
static uint64_t ctor_ns;
static char map_vma[256] = "unknown";
static uint64_t probe_ns;
static int probed;
static char smaps[1 << 19];

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

__attribute__((constructor)) static void shim_init(void) { ctor_ns = now_ns(); }

static unsigned ioc_type(unsigned long request) { return (unsigned)((request >> 8) & 0xff); }
static unsigned ioc_nr(unsigned long request) { return (unsigned)(request & 0xff); }
static int is_vfio(unsigned long request) { return ioc_type(request) == VFIO_TYPE; }
// iommufd's map and unmap (Linux 6.2's uAPI; Debian 12's headers predate it): _IO(';', 0x85),
// _IO(';', 0x86), with these layouts.
#define IOMMU_IOAS_MAP_NR 0x85
#define IOMMU_IOAS_UNMAP_NR 0x86
struct ioas_map {
  uint32_t size, flags, ioas_id, reserved;
  uint64_t user_va, length, iova;
};
struct ioas_unmap {
  uint32_t size, ioas_id;
  uint64_t iova, length;
};
static int is_ioas_map(unsigned long request) { return request == _IO(VFIO_TYPE, IOMMU_IOAS_MAP_NR); }
static int is_ioas_unmap(unsigned long request) { return request == _IO(VFIO_TYPE, IOMMU_IOAS_UNMAP_NR); }
static int is_map(unsigned long request) {
  return request == VFIO_IOMMU_MAP_DMA || is_ioas_map(request);
}
static int is_unmap(unsigned long request) {
  return request == VFIO_IOMMU_UNMAP_DMA || is_ioas_unmap(request);
}

// Fills map_vma for the mapping that holds vaddr (see the summary's map_vma).
static void probe_vma(uint64_t vaddr) {
  const int fd = open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return;
  }
  size_t len = 0;
  for (;;) {
    const ssize_t n = read(fd, smaps + len, sizeof smaps - 1 - len);
    if (n <= 0) {
      break;
    }
    len += (size_t)n;
  }
  close(fd);
  smaps[len] = '\0';
  int in_vma = 0;
  unsigned long long start = 0;
  char flags[160] = "";
  int thp = -1;
  for (char* line = smaps; line != NULL && *line != '\0';) {
    char* next = strchr(line, '\n');
    if (next != NULL) {
      *next++ = '\0';
    }
    unsigned long long lo = 0, hi = 0;
    if (sscanf(line, "%llx-%llx ", &lo, &hi) == 2) {  // a VMA's header line
      if (in_vma) {
        break;  // past the VMA we wanted
      }
      in_vma = vaddr >= lo && vaddr < hi;
      start = lo;
    } else if (in_vma && strncmp(line, "THPeligible:", 12) == 0) {
      thp = atoi(line + 12);
    } else if (in_vma && strncmp(line, "VmFlags:", 8) == 0) {
      const char* p = line + 8;
      size_t o = 0;
      while (*p == ' ') {
        ++p;
      }
      for (; *p != '\0' && o + 1 < sizeof flags; ++p) {
        flags[o++] = *p == ' ' ? '.' : *p;
      }
      while (o > 0 && flags[o - 1] == '.') {
        --o;
      }
      flags[o] = '\0';
    }
    line = next;
  }
  if (flags[0] != '\0') {
    snprintf(map_vma, sizeof map_vma, "%s,thp%d,a2m%d", flags, thp, (start & 0x1fffffULL) == 0);
  }
}

int ioctl(int fd, unsigned long request, ...) {
  va_list ap;
  va_start(ap, request);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  if (is_map(request) && arg != NULL && !probed) {
    probed = 1;
    const uint64_t p0 = now_ns();
    probe_vma(is_ioas_map(request) ? ((const struct ioas_map*)arg)->user_va
                                   : ((const struct vfio_iommu_type1_dma_map*)arg)->vaddr);
    probe_ns = now_ns() - p0;
  }
  const uint64_t start = now_ns();
  const long ret = syscall(SYS_ioctl, fd, request, arg);
  const uint64_t end = now_ns();
  const int err = ret < 0 ? errno : 0;
  const unsigned type = ioc_type(request);
  if (type == VFIO_TYPE || type == 0xAE) {
    if (nrecords < MAX_RECORDS) {
      struct record* r = &records[nrecords++];
      r->fd = fd;
      r->request = request;
      r->start = start;
      r->end = end;
      r->ret = ret;
      r->err = err;
      r->bytes = 0;
      if (is_ioas_map(request) && arg != NULL) {
        r->bytes = ((const struct ioas_map*)arg)->length;
      } else if (is_ioas_unmap(request) && arg != NULL) {
        r->bytes = ((const struct ioas_unmap*)arg)->length;  // as the kernel wrote it
      } else if (is_map(request) && arg != NULL) {
        r->bytes = ((const struct vfio_iommu_type1_dma_map*)arg)->size;
      } else if (is_unmap(request) && arg != NULL) {
        r->bytes = ((const struct vfio_iommu_type1_dma_unmap*)arg)->size;  // as the kernel wrote it
      }
    } else {
      ++dropped;
    }
  }
  errno = err;
  return (int)ret;
}

static const char* vfio_name(unsigned nr) {
  static const char* const iommufd[] = {"IOMMU_DESTROY", "IOAS_ALLOC", "IOAS_ALLOW_IOVAS",
                                        "IOAS_COPY", "IOAS_IOVA_RANGES", "IOAS_MAP", "IOAS_UNMAP",
                                        "IOMMU_OPTION"};
  if (nr >= 0x80 && nr < 0x80 + sizeof(iommufd) / sizeof(iommufd[0])) {
    return iommufd[nr - 0x80];
  }
  if (nr == 118 || nr == 119) {
    return nr == 118 ? "DEVICE_BIND_IOMMUFD" : "DEVICE_ATTACH_IOMMUFD_PT";
  }
  static const char* const names[] = {
      "GET_API_VERSION", "CHECK_EXTENSION",      "SET_IOMMU",          "GROUP_GET_STATUS",
      "GROUP_SET_CONTAINER", "GROUP_UNSET_CONTAINER", "GROUP_GET_DEVICE_FD", "DEVICE_GET_INFO",
      "DEVICE_GET_REGION_INFO", "DEVICE_GET_IRQ_INFO", "DEVICE_SET_IRQS", "DEVICE_RESET",
      "IOMMU_GET_INFO", "MAP_DMA", "UNMAP_DMA"};
  if (nr >= VFIO_BASE && nr < VFIO_BASE + sizeof(names) / sizeof(names[0])) {
    return names[nr - VFIO_BASE];
  }
  return "OTHER";
}

static void emit(const char* line, int len) {
  if (len <= 0) {
    return;
  }
  ssize_t n = write(STDERR_FILENO, line, (size_t)len);
  (void)n;
}

__attribute__((destructor)) static void shim_report(void) {
  const int saved_errno = errno;
  const uint64_t exit_ns = now_ns();
  char line[512];
  int first_vfio = -1, first_map = -1, last_map = -1;
  unsigned long map_calls = 0, unmap_calls = 0;
  uint64_t map_bytes = 0, map_ns = 0, unmap_bytes = 0, unmap_ns = 0;
  for (unsigned i = 0; i < nrecords; ++i) {
    const struct record* r = &records[i];
    if (!is_vfio(r->request)) {
      continue;
    }
    if (first_vfio < 0) {
      first_vfio = (int)i;
    }
    if (is_map(r->request) && r->ret == 0) {
      if (first_map < 0) {
        first_map = (int)i;
      }
      last_map = (int)i;
      ++map_calls;
      map_bytes += r->bytes;
      map_ns += r->end - r->start;
    }
    if (is_unmap(r->request) && r->ret == 0) {
      ++unmap_calls;
      unmap_bytes += r->bytes;
      unmap_ns += r->end - r->start;
    }
    emit(line, snprintf(line, sizeof line,
                        "dma_map_shim ioctl fd=%d name=%s t_ns=%llu dur_ns=%llu ret=%ld errno=%d bytes=%llu\n",
                        r->fd, vfio_name(ioc_nr(r->request)),
                        (unsigned long long)(r->start - ctor_ns),
                        (unsigned long long)(r->end - r->start), r->ret, r->err,
                        (unsigned long long)r->bytes));
  }
  // The mapping step: first MAP_DMA .. the first ioctl on another fd after the last MAP_DMA.
  long long map_step_ns = -1, reconcile_ns = 0, vfio_setup_ns = -1, gap_ns = -1, tail_ns = -1;
  unsigned long reconcile_calls = 0;
  if (first_map >= 0) {
    const int container = records[last_map].fd;
    uint64_t step_end = records[last_map].end;
    uint64_t last_end = records[last_map].end;
    for (unsigned i = (unsigned)last_map + 1; i < nrecords; ++i) {
      const struct record* r = &records[i];
      if (i == (unsigned)last_map + 1) {
        gap_ns = (long long)(r->start - records[last_map].end);
      }
      if (r->fd != container) {
        step_end = r->start;
        break;
      }
      reconcile_ns += (long long)(r->end - r->start);
      ++reconcile_calls;
      step_end = r->end;
      last_end = r->end;
    }
    tail_ns = (long long)(step_end - last_end);
    map_step_ns = (long long)(step_end - records[first_map].start);
    vfio_setup_ns = (long long)(records[first_map].start - records[first_vfio].start);
  }
  emit(line,
       snprintf(line, sizeof line,
                "dma_map_shim summary ctor_ns=%llu exit_ns=%llu map_calls=%lu map_bytes=%llu map_ns=%llu "
                "map_step_ns=%lld reconcile_ns=%lld reconcile_calls=%lu gap_ns=%lld tail_ns=%lld vfio_setup_ns=%lld unmap_calls=%lu "
                "unmap_bytes=%llu unmap_ns=%llu first_map_ns=%llu map_vma=%s probe_ns=%llu records=%u dropped=%lu\n",
                (unsigned long long)ctor_ns, (unsigned long long)exit_ns, map_calls,
                (unsigned long long)map_bytes, (unsigned long long)map_ns, map_step_ns, reconcile_ns,
                reconcile_calls, gap_ns, tail_ns, vfio_setup_ns, unmap_calls, (unsigned long long)unmap_bytes,
                (unsigned long long)unmap_ns,
                (unsigned long long)(first_map >= 0 ? records[first_map].start : 0), map_vma,
                (unsigned long long)probe_ns, nrecords,
                dropped));
  errno = saved_errno;
}
