// A hostile guest: runs inside a guest Keel booted and writes random and boundary values to
// what Keel emulates — port I/O (COM1, the i8042, the ACPI PM registers, PCI configuration
// mechanism #1 and ports nobody decodes), PCI configuration space of every function through
// 0xcf8/0xcfc (BARs, command register, capabilities, beyond the end, other buses) and MMIO (the
// ECAM window, the 32-bit PCI window where no BAR sits, the hole below the IOAPIC) through
// /dev/mem — then checks that Keel still answers sanely: the host bridge still reads its IDs, and
// every read of something nobody decodes gave all-ones or zeros, never other bytes (which could
// be host memory). The guest then powers off normally, which the test checks from outside.
//
// With --phases virtio (a VM with a device behind Keel's virtual IOMMU) it drives the
// virtio-iommu function directly instead, as a hostile driver: random and boundary writes to
// its common configuration, feature and status registers; bring-ups with its request queue in
// pages of its own; descriptor tables, available rings and requests filled with random and
// half-plausible contents (ATTACH, MAP, UNMAP, PROBE for the endpoint behind it); notifications
// of every queue. Device-writable buffers point only into its own pages or far outside RAM, so
// that the guest does not wreck its own kernel; device-readable ones point anywhere. At the end
// it resets the device (Keel drops every mapping it made) and checks that it still answers.
// With --phases blk (net, vsock) it does the same to a virtio-blk function (a scratch disk; a
// virtio-net link, a virtio-vsock device), whose requests
// Keel's queue worker threads serve while the guest scribbles and resets.
//
// Spared, so that the guest can still power off (those are allowed, not what is tested): the
// reset and sleep commands (i8042 0xfe, ACPI PM reset and SLP_EN, 0xcf9 reset bits), the
// in-kernel PIC, PIT, ELCR and RTC ports, which are KVM's and the guest's own clock, and COM1's
// registers are restored afterwards so the console keeps working.
//
//   hostile_test [--seed N] [--rounds N] [--phases pio,pci,mmio|virtio|blk|net,vsock]
// prints one line: KEEL-GUEST hostile seed=N pio=N pci=N mmio=N virtio=N blk=N net=N vsock=N
//   reads=N odd_reads=N
//                  host_bridge=VVVV:DDDD result=ok|FAILED(...)
// Built static.

#include <fcntl.h>
#include <sys/io.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

std::mt19937_64 rng;

std::uint64_t random_bits() { return rng(); }
std::uint32_t pick(std::uint32_t n) { return static_cast<std::uint32_t>(rng() % n); }

// Boundary values and random ones, in equal parts.
std::uint32_t value() {
  static const std::uint32_t kEdges[] = {0,          1,          0x7f,       0x80,      0xff,
                                         0x100,      0x7fff,     0x8000,     0xffff,    0x10000,
                                         0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff};
  return pick(2) == 0 ? kEdges[pick(sizeof kEdges / sizeof kEdges[0])]
                      : static_cast<std::uint32_t>(random_bits());
}

unsigned width() {
  static const unsigned kWidths[] = {1, 2, 4};
  return kWidths[pick(3)];
}

void out(std::uint16_t port, std::uint32_t v, unsigned size) {
  if (size == 1) {
    outb(static_cast<std::uint8_t>(v), port);
  } else if (size == 2) {
    outw(static_cast<std::uint16_t>(v), port);
  } else {
    outl(v, port);
  }
}

std::uint32_t in(std::uint16_t port, unsigned size) {
  if (size == 1) {
    return inb(port);
  }
  if (size == 2) {
    return inw(port);
  }
  return inl(port);
}

bool all_ones_or_zero(std::uint64_t v, unsigned size) {
  const std::uint64_t ones = size == 8 ? ~0ULL : (1ULL << (size * 8)) - 1;
  return v == 0 || v == ones;
}

// Ports that are KVM's in-kernel devices or the guest's clock: not Keel's, and breaking them
// would stop the guest from finishing.
bool spared_port(std::uint16_t port) {
  return (port >= 0x20 && port <= 0x21) || (port >= 0x40 && port <= 0x43) || port == 0x61 ||
         (port >= 0x70 && port <= 0x71) || (port >= 0xa0 && port <= 0xa1) ||
         (port >= 0x4d0 && port <= 0x4d1) || port == 0x80 || port == 0xcf9;
}

// Writes that would reset or power off the guest, or eject its devices.
bool spared_write(std::uint16_t port, std::uint32_t v, unsigned size) {
  for (unsigned i = 0; i < size; ++i) {
    const std::uint16_t p = static_cast<std::uint16_t>(port + i);
    const std::uint8_t b = static_cast<std::uint8_t>(v >> (8 * i));
    // B0EJ (0x618..0x61b) ejects the guest's own devices: a guest's right, testbed.hotplug's
    // subject, and here it would take away the devices later phases drive.
    if (spared_port(p) || (p == 0x64 && b == 0xfe) || (p == 0x600 && (b & 0x20) != 0) ||
        p == 0x602 || (p >= 0x618 && p <= 0x61b)) {
      return true;
    }
  }
  return false;
}

// Ports Keel decodes (the rest of the 64 KiB I/O space is nobody's unless a BAR sits there).
bool keel_port(std::uint16_t port) {
  return (port >= 0x3f8 && port <= 0x3ff) || port == 0x60 || port == 0x64 ||
         (port >= 0x600 && port <= 0x603) || (port >= 0x610 && port <= 0x61b) ||
         (port >= 0xcf8 && port <= 0xcff) || port >= 0xc000;
}

struct Tally {
  unsigned long pio = 0, pci = 0, mmio = 0, mmio_windows = 0, reads = 0, odd = 0;
  std::string odd_examples;
  void read_of_nothing(std::uint64_t where, std::uint64_t v, unsigned size) {
    ++reads;
    if (!all_ones_or_zero(v, size)) {
      ++odd;
      if (odd_examples.size() < 200) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%llx/%u=%llx,", static_cast<unsigned long long>(where), size,
                      static_cast<unsigned long long>(v));
        odd_examples += buf;
      }
    }
  }
};

void fuzz_ports(Tally& t, unsigned rounds) {
  static const std::uint16_t kKeelPorts[] = {0x3f8, 0x3f9, 0x3fa, 0x3fb, 0x3fc, 0x3fd, 0x3fe,
                                             0x3ff, 0x60,  0x64,  0x600, 0x601, 0x602, 0x603,
                                             0x610, 0x612, 0x614, 0x616, 0x618, 0xcf8, 0xcfa,
                                             0xcfc, 0xcfd, 0xcfe, 0xcff};
  for (unsigned i = 0; i < rounds; ++i) {
    const unsigned size = width();
    const std::uint16_t port = pick(2) == 0
                                   ? kKeelPorts[pick(sizeof kKeelPorts / sizeof kKeelPorts[0])]
                                   : static_cast<std::uint16_t>(pick(0x10000 - 4));
    if (spared_port(port) || spared_port(static_cast<std::uint16_t>(port + size - 1))) {
      continue;
    }
    if (pick(3) == 0) {
      const std::uint32_t v = in(port, size);
      bool nobody = true;
      for (unsigned b = 0; b < size; ++b) {
        nobody = nobody && !keel_port(static_cast<std::uint16_t>(port + b));
      }
      if (nobody) {
        t.read_of_nothing(port, v, size);
      }
      continue;
    }
    const std::uint32_t v = value();
    if (spared_write(port, v, size)) {
      continue;
    }
    out(port, v, size);
    ++t.pio;
  }
}

// PCI configuration mechanism #1: random functions (mostly bus 0), offsets and values,
// including the BARs and the command register, and reads of functions that do not exist.
void fuzz_config(Tally& t, unsigned rounds) {
  for (unsigned i = 0; i < rounds; ++i) {
    const std::uint32_t bus = pick(8) == 0 ? pick(256) : 0;
    const std::uint32_t dev = pick(32), fn = pick(8);
    const unsigned size = width();
    std::uint32_t offset = pick(4) == 0 ? 0x10 + 4 * pick(6) : pick(256);  // BARs often
    offset &= ~(size - 1);
    const std::uint32_t address = 0x80000000U | (bus << 16) | (dev << 11) | (fn << 8) | (offset & 0xfc);
    outl(pick(16) == 0 ? value() : address, 0xcf8);  // sometimes a wild address register
    const std::uint16_t data = static_cast<std::uint16_t>(0xcfc + (offset & 3));
    if (pick(3) == 0) {
      (void)in(data, size);
      continue;
    }
    out(data, value(), size);
    ++t.pci;
  }
}

// MMIO through /dev/mem (the guest runs with iomem=relaxed): Keel's ECAM, and places in the PCI
// window and below the IOAPIC where nothing is decoded.
void fuzz_mmio(Tally& t, unsigned rounds) {
  const int fd = ::open("/dev/mem", O_RDWR | O_SYNC);
  if (fd < 0) {
    return;
  }
  struct Window {
    std::uint64_t base, size;
    bool nothing;  // reads should be all-ones or zero
  };
  const Window windows[] = {
      {0xe0000000, 0x100000, false},  // ECAM: 32 devices x 8 functions x 4 KiB
      {0xdff00000, 0x100000, true},   // top of the 32-bit PCI window: no BAR is placed there
      {0xfeb00000, 0x100000, true},   // below the IOAPIC
  };
  for (const Window& w : windows) {
    void* map = ::mmap(nullptr, w.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                       static_cast<off_t>(w.base));
    if (map == MAP_FAILED) {
      continue;  // counted: the run reports how many windows it reached
    }
    ++t.mmio_windows;
    auto* base = static_cast<volatile std::uint8_t*>(map);
    for (unsigned i = 0; i < rounds; ++i) {
      static const unsigned kSizes[] = {1, 2, 4, 8};
      const unsigned size = kSizes[pick(4)];
      const std::uint64_t off = (random_bits() % w.size) & ~std::uint64_t{size - 1};
      volatile std::uint8_t* p = base + off;
      if (pick(3) == 0) {
        std::uint64_t v = 0;
        switch (size) {
          case 1: v = *p; break;
          case 2: v = *reinterpret_cast<volatile std::uint16_t*>(p); break;
          case 4: v = *reinterpret_cast<volatile std::uint32_t*>(p); break;
          default: v = *reinterpret_cast<volatile std::uint64_t*>(p); break;
        }
        if (w.nothing) {
          t.read_of_nothing(w.base + off, v, size);
        }
        ++t.mmio;
        continue;
      }
      const std::uint64_t v = (std::uint64_t{value()} << 32) | value();
      switch (size) {
        case 1: *p = static_cast<std::uint8_t>(v); break;
        case 2: *reinterpret_cast<volatile std::uint16_t*>(p) = static_cast<std::uint16_t>(v); break;
        case 4: *reinterpret_cast<volatile std::uint32_t*>(p) = static_cast<std::uint32_t>(v); break;
        default: *reinterpret_cast<volatile std::uint64_t*>(p) = v; break;
      }
      ++t.mmio;
    }
    ::munmap(map, w.size);
  }
  ::close(fd);
}

// ---- virtio: the virtual IOMMU's transport and request queue ----

std::uint32_t config_read(std::uint32_t slot, std::uint32_t offset) {
  outl(0x80000000U | (slot << 11) | (offset & 0xfc), 0xcf8);
  return inl(0xcfc);
}

void config_write(std::uint32_t slot, std::uint32_t offset, std::uint32_t v) {
  outl(0x80000000U | (slot << 11) | (offset & 0xfc), 0xcf8);
  outl(v, 0xcfc);
}

// Guest-physical address of a locked, touched page (from /proc/self/pagemap), 0 if unknown.
std::uint64_t physical_address(const void* page) {
  const int fd = ::open("/proc/self/pagemap", O_RDONLY);
  if (fd < 0) {
    return 0;
  }
  std::uint64_t entry = 0;
  const off_t at = static_cast<off_t>(reinterpret_cast<std::uintptr_t>(page) / 4096 * 8);
  const bool ok = ::pread(fd, &entry, sizeof entry, at) == sizeof entry;
  ::close(fd);
  if (!ok || (entry & (1ULL << 63)) == 0) {
    return 0;
  }
  return (entry & ((1ULL << 55) - 1)) * 4096;
}

struct Page {
  std::uint8_t* host = nullptr;
  std::uint64_t gpa = 0;
};

Page locked_page() {
  void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) {
    return {};
  }
  std::memset(p, 0, 4096);
  return {static_cast<std::uint8_t*>(p), physical_address(p)};
}

// Common configuration offsets (virtio 1.2 §4.1.4.3).
constexpr std::uint32_t kDeviceFeatureSelect = 0x00, kDriverFeatureSelect = 0x08,
                        kDriverFeature = 0x0c, kStatus = 0x14, kQueueSelect = 0x16,
                        kQueueSize = 0x18, kQueueEnable = 0x1c, kQueueDesc = 0x20,
                        kQueueDriver = 0x28, kQueueDevice = 0x30, kNumQueues = 0x12;
constexpr std::uint64_t kNotify = 0x3000, kBarSize = 0x8000;
constexpr std::uint64_t kFarAway = 1ULL << 44;  // no guest RAM there

struct Virtio {
  volatile std::uint8_t* bar = nullptr;
  Page desc, avail, used, data;

  void w(std::uint64_t off, std::uint64_t v, unsigned size) const {
    volatile std::uint8_t* p = bar + off;
    switch (size) {
      case 1: *p = static_cast<std::uint8_t>(v); break;
      case 2: *reinterpret_cast<volatile std::uint16_t*>(p) = static_cast<std::uint16_t>(v); break;
      case 4: *reinterpret_cast<volatile std::uint32_t*>(p) = static_cast<std::uint32_t>(v); break;
      default: *reinterpret_cast<volatile std::uint64_t*>(p) = v; break;
    }
  }
  std::uint64_t r(std::uint64_t off, unsigned size) const {
    volatile std::uint8_t* p = bar + off;
    switch (size) {
      case 1: return *p;
      case 2: return *reinterpret_cast<volatile std::uint16_t*>(p);
      case 4: return *reinterpret_cast<volatile std::uint32_t*>(p);
      default: return *reinterpret_cast<volatile std::uint64_t*>(p);
    }
  }
  // What a driver does, with the request queue in our own pages.
  void bring_up() const {
    w(kStatus, 0, 1);
    w(kStatus, 1, 1);
    w(kStatus, 3, 1);
    w(kDriverFeatureSelect, 1, 4);
    w(kDriverFeature, 1, 4);  // VIRTIO_F_VERSION_1
    w(kStatus, 0xb, 1);
    w(kQueueSelect, 0, 2);
    w(kQueueSize, 16, 2);
    w(kQueueDesc, desc.gpa, 8);
    w(kQueueDriver, avail.gpa, 8);
    w(kQueueDevice, used.gpa, 8);
    w(kQueueEnable, 1, 2);
    w(kStatus, 0xf, 1);
  }
  // A buffer address: device-writable ones only in our pages or far outside RAM.
  std::uint64_t address(bool writable) const {
    switch (pick(4)) {
      case 0: return data.gpa + pick(4096);
      case 1: return writable ? kFarAway + random_bits() % (1ULL << 20) : random_bits();
      case 2: return writable ? used.gpa + pick(4096) : value();
      default: return writable ? data.gpa : desc.gpa + pick(4096);
    }
  }
  void scribble_descriptors() const {
    for (unsigned i = 0; i < 16; ++i) {
      const std::uint16_t flags = static_cast<std::uint16_t>(pick(8) == 0 ? value() : pick(4));
      std::uint8_t* d = desc.host + 16 * i;
      const std::uint64_t addr = address((flags & 2) != 0 || pick(8) == 0);
      const std::uint32_t len = pick(4) == 0 ? value() : pick(512);
      const std::uint16_t next = static_cast<std::uint16_t>(pick(8) == 0 ? value() : pick(16));
      // A writable descriptor far away keeps a length that cannot reach back into RAM.
      std::memcpy(d, &addr, 8);
      std::memcpy(d + 8, &len, 4);
      std::memcpy(d + 12, &flags, 2);
      std::memcpy(d + 14, &next, 2);
      if ((flags & 2) != 0 && addr >= data.gpa && addr < data.gpa + 4096) {
        const std::uint32_t room = static_cast<std::uint32_t>(data.gpa + 4096 - addr);
        std::memcpy(d + 8, &room, 4);
      } else if ((flags & 2) != 0 && addr >= used.gpa && addr < used.gpa + 4096) {
        const std::uint32_t room = static_cast<std::uint32_t>(used.gpa + 4096 - addr);
        std::memcpy(d + 8, &room, 4);
      }
    }
  }
  // A request in the data page: random bytes, or a plausible ATTACH/MAP/UNMAP/PROBE for the
  // endpoint behind the IOMMU (8: the device in slot 1).
  void scribble_request() const {
    for (unsigned i = 0; i < 64; ++i) {
      data.host[pick(4096)] = static_cast<std::uint8_t>(random_bits());
    }
    if (pick(2) == 0) {
      std::uint8_t* q = data.host;
      q[0] = static_cast<std::uint8_t>(1 + pick(5));
      const std::uint32_t domain = pick(4);
      std::memcpy(q + 4, &domain, 4);
      const std::uint32_t endpoint = pick(4) == 0 ? value() : 8;
      const std::uint64_t start = (random_bits() % (1ULL << 30)) & ~0xfffULL;
      const std::uint64_t end = start + (pick(4) + 1) * 4096 - 1;
      const std::uint64_t phys = (random_bits() % (1ULL << 28)) & ~0xfffULL;
      std::memcpy(q + 8, q[0] == 3 ? static_cast<const void*>(&start) : &endpoint, q[0] == 3 ? 8 : 4);
      std::memcpy(q + 16, &end, 8);
      std::memcpy(q + 24, &phys, 8);
    }
  }
  void scribble_avail() const {
    std::uint16_t idx = 0;
    std::memcpy(&idx, avail.host + 2, 2);
    for (unsigned i = 0; i < 16; ++i) {
      const std::uint16_t head = static_cast<std::uint16_t>(pick(8) == 0 ? value() : pick(16));
      std::memcpy(avail.host + 4 + 2 * i, &head, 2);
    }
    idx = static_cast<std::uint16_t>(idx + (pick(8) == 0 ? value() : 1 + pick(4)));
    std::memcpy(avail.host + 2, &idx, 2);
    const std::uint16_t flags = static_cast<std::uint16_t>(pick(2));
    std::memcpy(avail.host, &flags, 2);
  }
};

// Drives the virtio function with PCI IDs `ids` (0x10571af4 virtio-iommu, 0x10421af4
// virtio-blk). Returns the number of accesses made, 0 without such a function; *answers tells
// whether the device still answered after its final reset.
unsigned long fuzz_virtio(unsigned rounds, std::uint32_t ids, bool* answers) {
  *answers = false;
  std::uint32_t slot = 32;
  for (std::uint32_t s = 0; s < 32; ++s) {
    if (config_read(s, 0) == ids) {
      slot = s;
      break;
    }
  }
  if (slot == 32) {
    return 0;
  }
  const std::uint64_t bar = (std::uint64_t{config_read(slot, 0x14)} << 32) | (config_read(slot, 0x10) & ~0xfU);
  config_write(slot, 0x04, config_read(slot, 0x04) | 0x6);  // memory decode, bus master
  const int fd = ::open("/dev/mem", O_RDWR | O_SYNC);
  void* map = fd < 0 ? MAP_FAILED
                     : ::mmap(nullptr, kBarSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(bar));
  if (map == MAP_FAILED) {
    return 0;
  }
  Virtio v;
  v.bar = static_cast<volatile std::uint8_t*>(map);
  v.desc = locked_page();
  v.avail = locked_page();
  v.used = locked_page();
  v.data = locked_page();
  if (v.desc.gpa == 0 || v.avail.gpa == 0 || v.used.gpa == 0 || v.data.gpa == 0) {
    return 0;
  }
  const std::uint64_t queues = v.r(kNumQueues, 2);
  unsigned long accesses = 0;
  static const unsigned kSizes[] = {1, 2, 4, 8};
  for (unsigned i = 0; i < rounds; ++i) {
    switch (pick(10)) {
      case 0: {  // a register of the common configuration, any value; not the ring addresses
        // (rings anywhere in RAM would have Keel write the guest's own kernel over)
        const unsigned size = kSizes[pick(4)];
        const std::uint64_t off = pick(0x40) & ~(size - 1);
        if (off + size <= kQueueDesc || off >= kQueueDevice + 8) {
          v.w(off, pick(2) == 0 ? value() : random_bits(), size);
        }
        break;
      }
      case 1: {  // anywhere in the BAR past the common configuration
        const unsigned size = kSizes[pick(4)];
        const std::uint64_t off = (0x1000 + random_bits() % (kBarSize - 0x1000)) & ~std::uint64_t{size - 1};
        if (pick(2) == 0) {
          (void)v.r(off, size);
        } else if (off < 0x4000 || off >= 0x5000 || pick(4) == 0) {  // MSI-X now and then
          v.w(off, value(), size);
        }
        break;
      }
      case 2: v.bring_up(); break;
      case 3: v.scribble_descriptors(); break;
      case 4: v.scribble_request(); break;
      case 5: v.scribble_avail(); break;
      case 6: v.w(kDeviceFeatureSelect, pick(4), 4); (void)v.r(0x04, 4); break;
      default: v.w(kNotify + 4 * pick(4), pick(4), 2); break;  // notify, queue 0 mostly
    }
    ++accesses;
  }
  v.w(kStatus, 0, 1);  // reset: the device drops its domains, Keel unmaps what they held
  *answers = queues != 0 && v.r(kNumQueues, 2) == queues && v.r(kStatus, 1) == 0;
  ::munmap(map, kBarSize);
  ::close(fd);
  return accesses;
}

struct Uart {
  std::uint8_t ier, lcr, mcr, dll, dlm;
  static Uart save() {
    Uart u{};
    u.lcr = inb(0x3fb);
    u.ier = inb(0x3f9);
    u.mcr = inb(0x3fc);
    outb(static_cast<std::uint8_t>(u.lcr | 0x80), 0x3fb);
    u.dll = inb(0x3f8);
    u.dlm = inb(0x3f9);
    outb(u.lcr, 0x3fb);
    return u;
  }
  void restore() const {
    outb(0x80, 0x3fb);
    outb(dll, 0x3f8);
    outb(dlm, 0x3f9);
    outb(lcr, 0x3fb);
    outb(ier, 0x3f9);
    outb(mcr, 0x3fc);
    outb(0x07, 0x3fa);  // FIFOs on and cleared
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t seed = 0;
  unsigned rounds = 20000;
  std::string phases = "pio,pci,mmio";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--seed") == 0) {
      seed = std::strtoull(argv[i + 1], nullptr, 0);
    } else if (std::strcmp(argv[i], "--rounds") == 0) {
      rounds = static_cast<unsigned>(std::strtoul(argv[i + 1], nullptr, 0));
    } else if (std::strcmp(argv[i], "--phases") == 0) {
      phases = argv[i + 1];
    }
  }
  auto phase = [&](const char* name) { return phases.find(name) != std::string::npos; };
  if (seed == 0) {
    seed = std::random_device{}();
  }
  rng.seed(seed);
  if (::iopl(3) != 0) {
    std::printf("KEEL-GUEST hostile result=FAILED(iopl)\n");
    return 1;
  }
  const Uart uart = Uart::save();
  Tally t;
  if (phase("pio")) {
    fuzz_ports(t, rounds);
    uart.restore();
    std::printf("KEEL-GUEST hostile-phase pio-done\n");
    std::fflush(stdout);
  }
  if (phase("pci")) {
    fuzz_config(t, rounds);
    std::printf("KEEL-GUEST hostile-phase pci-done\n");
    std::fflush(stdout);
  }
  if (phase("mmio")) {
    fuzz_mmio(t, rounds / 4);
    uart.restore();
    std::printf("KEEL-GUEST hostile-phase mmio-done\n");
    std::fflush(stdout);
  }
  // The virtio functions a run may have, by PCI IDs: the virtual IOMMU; a virtio-blk disk (a
  // scratch image), a virtio-net link (a TAP) and a virtio-vsock device, whose requests keel's
  // queue workers serve.
  struct VirtioPhase {
    const char* name;
    std::uint32_t ids;
    unsigned long accesses = 0;
    bool answers = true;
  };
  VirtioPhase virtio_phases[] = {{"virtio", 0x10571af4}, {"blk", 0x10421af4},
                                 {"net", 0x10411af4}, {"vsock", 0x10531af4}};
  for (VirtioPhase& p : virtio_phases) {
    if (phase(p.name)) {
      p.accesses = fuzz_virtio(rounds, p.ids, &p.answers);
      std::printf("KEEL-GUEST hostile-phase %s-done\n", p.name);
      std::fflush(stdout);
    }
  }

  // Keel still decodes configuration space: the host bridge (00:00.0) reads its IDs.
  outl(0x80000000U, 0xcf8);
  const std::uint32_t ids = inl(0xcfc);
  char bridge[16];
  std::snprintf(bridge, sizeof bridge, "%04x:%04x", ids & 0xffff, ids >> 16);
  std::string result = "ok";
  if (ids == 0xffffffff || ids == 0) {
    result = "FAILED(host-bridge)";
  } else if (t.odd != 0) {
    result = "FAILED(odd-reads:" + t.odd_examples + ")";
  } else {
    for (const VirtioPhase& p : virtio_phases) {
      if (phase(p.name) && (p.accesses == 0 || !p.answers) && result == "ok") {
        result = std::string(p.accesses == 0 ? "FAILED(no-" : "FAILED(silent-") + p.name + ")";
      }
    }
  }
  std::printf("KEEL-GUEST hostile seed=%llu pio=%lu pci=%lu mmio=%lu mmio_windows=%lu virtio=%lu "
              "blk=%lu net=%lu vsock=%lu reads=%lu odd_reads=%lu host_bridge=%s result=%s\n",
              static_cast<unsigned long long>(seed), t.pio, t.pci, t.mmio, t.mmio_windows,
              virtio_phases[0].accesses, virtio_phases[1].accesses, virtio_phases[2].accesses,
              virtio_phases[3].accesses, t.reads, t.odd, bridge, result.c_str());
  std::fflush(stdout);
  return result == "ok" ? 0 : 1;
}
