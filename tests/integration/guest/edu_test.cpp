// Runs inside a guest that Keel booted with an edu device (1234:11e8) passed through. It finds
// the device in sysfs, maps BAR0 through `resource0`, checks the identification register, runs
// an edu DMA round trip between two guest pages (below 256 MiB, or with --above ADDR at or above
// ADDR) (RAM -> device -> RAM, fresh random data each
// run, compared byte for byte), and, with uio_pci_generic bound, raises an edu interrupt and
// waits for it. One line per device on stdout, key=value, for the test to check:
//   KEEL-GUEST edu bdf=0000:00:01.0 id=1234:11e8 reg0=0x010000ed dma=ok irq=ok
// Built static so it needs nothing from the guest's initramfs.

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "edu.hpp"

namespace {

using namespace edu;  // NOLINT(google-build-using-namespace): its registers

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

struct Bar {
  volatile std::uint8_t* base = nullptr;
  std::uint32_t read32(std::uint64_t off) const {
    return *reinterpret_cast<volatile std::uint32_t*>(base + off);
  }
  void write32(std::uint64_t off, std::uint32_t v) const {
    *reinterpret_cast<volatile std::uint32_t*>(base + off) = v;
  }
  // A DMA address register: edu takes its 64 bits in one 8-byte write (a 4-byte one zeroes the
  // upper half), which an address below 4 GiB does not need.
  void write_address(std::uint64_t off, std::uint64_t v) const {
    if ((v >> 32) != 0) {
      *reinterpret_cast<volatile std::uint64_t*>(base + off) = v;
    } else {
      write32(off, static_cast<std::uint32_t>(v));
    }
  }
};

// Guest-physical address of a locked, touched page (from /proc/self/pagemap).
std::uint64_t physical_address(const void* page) {
  const int fd = ::open("/proc/self/pagemap", O_RDONLY);
  if (fd < 0) {
    return 0;
  }
  std::uint64_t entry = 0;
  const off_t at = static_cast<off_t>(reinterpret_cast<std::uintptr_t>(page) / kPage * 8);
  const bool ok = ::pread(fd, &entry, sizeof entry, at) == sizeof entry;
  ::close(fd);
  if (!ok || (entry & (1ULL << 63)) == 0) {
    return 0;
  }
  return (entry & ((1ULL << 55) - 1)) * kPage;
}

// Two pages at or above `above` (guest memory hot-plugged high): locked 16 MiB chunks scanned
// page by page, at most 1 GiB; the chunks stay (the process is short-lived).
bool high_pages(std::uint64_t above, std::uint8_t** a, std::uint8_t** b, std::uint64_t* pa,
                std::uint64_t* pb) {
  constexpr std::size_t kChunk = std::size_t{16} << 20;
  std::vector<std::uint8_t*> found;
  std::vector<std::uint64_t> phys;
  for (int chunk = 0; chunk < 64 && found.size() < 2; ++chunk) {
    void* p = ::mmap(nullptr, kChunk, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) {
      break;
    }
    auto* bytes = static_cast<std::uint8_t*>(p);
    for (std::size_t off = 0; off < kChunk && found.size() < 2; off += kPage) {
      const std::uint64_t addr = physical_address(bytes + off);
      if (addr >= above) {
        found.push_back(bytes + off);
        phys.push_back(addr);
      }
    }
  }
  if (found.size() < 2) {
    return false;
  }
  *a = found[0];
  *b = found[1];
  *pa = phys[0];
  *pb = phys[1];
  return true;
}

// Two pages below the edu's 28-bit DMA limit.
bool dma_pages(std::uint8_t** a, std::uint8_t** b, std::uint64_t* pa, std::uint64_t* pb) {
  std::vector<std::uint8_t*> found;
  std::vector<std::uint64_t> phys;
  for (int tries = 0; tries < 4096 && found.size() < 2; ++tries) {
    void* p = ::mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED, -1, 0);
    if (p == MAP_FAILED) {
      return false;
    }
    std::memset(p, 0xa5, kPage);
    const std::uint64_t addr = physical_address(p);
    if (addr != 0 && addr + kPage <= kDmaLimit) {
      found.push_back(static_cast<std::uint8_t*>(p));
      phys.push_back(addr);
    }  // other pages stay mapped so the next mmap gets a different one
  }
  if (found.size() < 2) {
    return false;
  }
  *a = found[0];
  *b = found[1];
  *pa = phys[0];
  *pb = phys[1];
  return true;
}

bool wait_dma(const Bar& bar) {
  for (int i = 0; i < 300; ++i) {  // edu completes a transfer about 100 ms after the start bit
    if ((bar.read32(kRegDmaCmd) & kDmaStart) == 0) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::string dma_round_trip(const Bar& bar, std::uint64_t above) {
  std::uint8_t* src = nullptr;
  std::uint8_t* dst = nullptr;
  std::uint64_t src_pa = 0, dst_pa = 0;
  if (above != 0 ? !high_pages(above, &src, &dst, &src_pa, &dst_pa)
                 : !dma_pages(&src, &dst, &src_pa, &dst_pa)) {
    return "no-page";
  }
  const int urandom = ::open("/dev/urandom", O_RDONLY);
  if (urandom < 0 || ::read(urandom, src, kTransfer) != static_cast<ssize_t>(kTransfer)) {
    return "no-random";
  }
  ::close(urandom);
  std::memset(dst, 0, kPage);
  bar.write_address(kRegDmaSrc, src_pa);
  bar.write32(kRegDmaDst, static_cast<std::uint32_t>(kBuffer));
  bar.write32(kRegDmaCount, kTransfer);
  bar.write32(kRegDmaCmd, kDmaStart);
  if (!wait_dma(bar)) {
    return "timeout-to-device";
  }
  bar.write32(kRegDmaSrc, static_cast<std::uint32_t>(kBuffer));
  bar.write_address(kRegDmaDst, dst_pa);
  bar.write32(kRegDmaCount, kTransfer);
  bar.write32(kRegDmaCmd, kDmaStart | kDmaToRam);
  if (!wait_dma(bar)) {
    return "timeout-to-ram";
  }
  if (std::memcmp(src, dst, kTransfer) != 0) {
    return "mismatch";
  }
  char buf[96];
  std::snprintf(buf, sizeof buf, "ok src=0x%llx dst=0x%llx", static_cast<unsigned long long>(src_pa),
                static_cast<unsigned long long>(dst_pa));
  return buf;
}

// With uio_pci_generic bound: make edu raise its interrupt and wait for it.
std::string interrupt_round_trip(const Bar& bar, const std::string& dev) {
  DIR* dir = ::opendir((dev + "/uio").c_str());
  if (dir == nullptr) {
    return "no-uio";
  }
  std::string uio;
  while (dirent* e = ::readdir(dir)) {
    if (std::strncmp(e->d_name, "uio", 3) == 0) {
      uio = e->d_name;
    }
  }
  ::closedir(dir);
  const int fd = ::open(("/dev/" + uio).c_str(), O_RDWR);
  if (fd < 0) {
    return "no-dev-" + uio;
  }
  // uio_pci_generic's handler masks INTx (command bit 10, Interrupt Disable) on each interrupt
  // and leaves unmasking to its user: clear the bit first, so that every run gets one.
  const int config = ::open((dev + "/config").c_str(), O_RDWR);
  std::uint16_t command = 0;
  if (config < 0 || ::pread(config, &command, 2, 4) != 2) {
    ::close(fd);
    if (config >= 0) {
      ::close(config);
    }
    return "no-config";
  }
  command = static_cast<std::uint16_t>(command & ~0x400U);
  const bool unmasked = ::pwrite(config, &command, 2, 4) == 2;
  ::close(config);
  if (!unmasked) {
    ::close(fd);
    return "unmask-failed";
  }
  std::uint32_t count_before = 0;
  bar.write32(kRegRaiseIrq, 0x1);
  pollfd pfd{fd, POLLIN, 0};
  std::string result = "timeout";
  if (::poll(&pfd, 1, 5000) == 1 && ::read(fd, &count_before, sizeof count_before) == sizeof count_before) {
    result = "ok count=" + std::to_string(count_before);
  }
  bar.write32(kRegAckIrq, 0x1);
  ::close(fd);
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  // --above ADDR: DMA between pages at or above ADDR (hot-plugged memory); the edu needs a
  // DMA mask that reaches it (the testbed gives it 40 bits).
  std::uint64_t above = 0;
  if (argc == 3 && std::string(argv[1]) == "--above") {
    above = std::strtoull(argv[2], nullptr, 0);
  }
  int devices = 0;
  DIR* dir = ::opendir("/sys/bus/pci/devices");
  if (dir == nullptr) {
    std::printf("KEEL-GUEST edu error=no-sysfs\n");
    return 1;
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') {
      names.push_back(e->d_name);
    }
  }
  ::closedir(dir);
  for (const std::string& name : names) {
    const std::string dev = "/sys/bus/pci/devices/" + name;
    if (read_text(dev + "/vendor") != "0x1234" || read_text(dev + "/device") != "0x11e8") {
      continue;
    }
    ++devices;
    // Memory decode and bus mastering: set bits 1 and 2 of the command register.
    const int config = ::open((dev + "/config").c_str(), O_RDWR);
    std::uint16_t command = 0;
    if (config >= 0 && ::pread(config, &command, 2, 4) == 2) {
      command |= 0x6;
      [[maybe_unused]] ssize_t w = ::pwrite(config, &command, 2, 4);
    }
    if (config >= 0) {
      ::close(config);
    }
    const int res = ::open((dev + "/resource0").c_str(), O_RDWR | O_SYNC);
    void* map = res < 0 ? MAP_FAILED : ::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, res, 0);
    if (map == MAP_FAILED) {
      std::printf("KEEL-GUEST edu bdf=%s id=1234:11e8 error=no-bar0\n", name.c_str());
      continue;
    }
    Bar bar{static_cast<volatile std::uint8_t*>(map)};
    const std::uint32_t id = bar.read32(kRegId);
    const std::string dma = id == kId ? dma_round_trip(bar, above) : "skipped";
    const std::string irq = id == kId ? interrupt_round_trip(bar, dev) : "skipped";
    // Spaces inside a value would split the key=value line: join with '_'.
    auto flat = [](std::string s) {
      for (char& c : s) {
        if (c == ' ') {
          c = '_';
        }
      }
      return s;
    };
    std::printf("KEEL-GUEST edu bdf=%s id=1234:11e8 reg0=0x%08x dma=%s irq=%s\n", name.c_str(), id,
                flat(dma).c_str(), flat(irq).c_str());
    std::fflush(stdout);
    ::munmap(map, 1 << 20);
    ::close(res);
  }
  std::printf("KEEL-GUEST edu devices=%d\n", devices);
  return 0;
}
