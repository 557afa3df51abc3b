// iommufd_probe: Keel's iommufd calls (devices/vfio/iommufd.*) against the real kernel, inside
// the testbed's emulated host booted with a host kernel that has IOMMUFD and VFIO_DEVICE_CDEV
// (run --host-kernel iommufd). Never against a fake.
//
//   iommufd_probe [--maps N] [--map-bench N] [--dma] BDF
//
// Opens /dev/iommu, finds the device's cdev in sysfs, binds it, allocates an IO address space,
// attaches the device and reads the IOVA ranges. One line:
//
//   iommufd device=0000:00:01.0 cdev=/dev/vfio/devices/vfio0 devid=1 ioas=2 charged=user
//   alignment=0x1000 iova_ranges=0x0-0xfedfffff,0xfef00000-0xffffffffffffffff
//
// --maps N maps N separate 4 KiB pages of one buffer (one IOMMU_IOAS_MAP each, IOVAs a page
// apart from each other so that nothing could merge), then unmaps them one by one, and adds
//   mapped=N stop=ok map_seconds=S unmap_seconds=S      (stop=ENOMEM etc. when the kernel refused)
// --map-bench N maps and unmaps one 4 KiB page at one IOVA N times with the bare calls
// (Iommufd::map/unmap, no DmaMapper), as vfio_probe --map-bench does on type1, and adds
//   map_bench=N map_bench_seconds=S map_bench_per_second=R
// --dma (edu only) maps two pages and has the edu copy a pattern from the first into its buffer
// and back into the second: adds "dma=ok" (dma=mismatch otherwise).
// Exit status 0 when every step behaved as the kernel documents, 1 otherwise (stderr says why).

#include <linux/vfio.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "base/hex.hpp"
#include "base/mapping.hpp"
#include "devices/vfio/device_fd.hpp"
#include "devices/vfio/dma_backend.hpp"
#include "devices/vfio/dma_mapper.hpp"
#include "devices/vfio/iommufd.hpp"

namespace {

using namespace keel;
using namespace keel::vfio;

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kMapsBase = 0x100000000;  // above 4 GiB, clear of every reserved range

const char* errno_name(int err) {
  switch (err) {
    case ENOMEM: return "ENOMEM";
    case ENOSPC: return "ENOSPC";
    case EINVAL: return "EINVAL";
    case EEXIST: return "EEXIST";
    case ENOENT: return "ENOENT";
    case EFAULT: return "EFAULT";
    default: return "other";
  }
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// --maps: one IOMMU_IOAS_MAP per page, through Keel's DmaMapper on the iommufd backend (as a
// container's lazy engine maps); returns the text it adds.
Result<std::string> fill(Iommufd& iommufd, std::uint32_t ioas, std::uint64_t count) {
  KEEL_TRY(const bool per_process, iommufd.charged_per_process());
  IommufdDmaBackend backend(iommufd, ioas, per_process);
  KEEL_TRY(const DmaBudget budget, backend.budget());
  DmaMapper mapper(backend, budget);
  auto buffer = Mapping::anonymous(count * kPage, "pages to map");
  if (!buffer) {
    return buffer.error();
  }
  std::memset(buffer->data(), 0x5a, count * kPage);  // populate: pinning faults nothing in
  const auto start = std::chrono::steady_clock::now();
  std::uint64_t mapped = 0;
  std::string stop = "ok";
  for (; mapped < count; ++mapped) {
    auto st = mapper.map(kMapsBase + mapped * 2 * kPage, kPage,
                         reinterpret_cast<std::uint64_t>(buffer->data() + mapped * kPage),
                         "probe page");
    if (!st) {
      stop = errno_name(st.error().errno_value());
      std::fprintf(stderr, "iommufd_probe: map %llu stopped: %s\n",
                   static_cast<unsigned long long>(mapped), st.error().message().c_str());
      break;
    }
  }
  const double map_s = seconds_since(start);
  const auto unmap_start = std::chrono::steady_clock::now();
  for (std::uint64_t i = 0; i < mapped; ++i) {
    KEEL_TRY_STATUS(mapper.unmap(kMapsBase + i * 2 * kPage));
  }
  return " mapped=" + std::to_string(mapped) + " stop=" + stop +
         " map_seconds=" + std::to_string(map_s) +
         " unmap_seconds=" + std::to_string(seconds_since(unmap_start));
}

// --map-bench: N MAP+UNMAP pairs of one page at one IOVA, bare ioctls, timed.
Result<std::string> map_bench(Iommufd& iommufd, std::uint32_t ioas, std::uint64_t count) {
  KEEL_TRY(Mapping page, Mapping::anonymous(kPage, "bench page"));
  std::memset(page.data(), 0x5a, kPage);
  const auto va = reinterpret_cast<std::uint64_t>(page.data());
  const auto start = std::chrono::steady_clock::now();
  for (std::uint64_t i = 0; i < count; ++i) {
    KEEL_TRY_STATUS(iommufd.map(ioas, kMapsBase, kPage, va, {}, "IOMMU_IOAS_MAP bench page"));
    KEEL_TRY([[maybe_unused]] const std::uint64_t unmapped,
             iommufd.unmap(ioas, kMapsBase, kPage, "IOMMU_IOAS_UNMAP bench page"));
  }
  const double s = seconds_since(start);
  char rate[64];
  std::snprintf(rate, sizeof rate, "%.1f", s > 0 ? count / s : 0.0);
  return " map_bench=" + std::to_string(count) + " map_bench_seconds=" + std::to_string(s) +
         " map_bench_per_second=" + rate;
}

// --dma: the edu's DMA engine through the IOAS (registers: DESIGN.md section 5).
Result<std::string> edu_dma(Iommufd& iommufd, std::uint32_t ioas, DeviceFd& device) {
  KEEL_TRY(const RegionInfo config, device.region_info(VFIO_PCI_CONFIG_REGION_INDEX));
  std::uint16_t command = 0;
  KEEL_TRY_STATUS(device.read(config, 0x04, &command, sizeof command));
  command |= 0x0006;  // memory space, bus master
  KEEL_TRY_STATUS(device.write(config, 0x04, &command, sizeof command));
  KEEL_TRY(const RegionInfo bar0, device.region_info(VFIO_PCI_BAR0_REGION_INDEX));
  KEEL_TRY(Mapping regs, device.mmap(bar0, 0, 0x1000, PROT_READ | PROT_WRITE));
  auto reg32 = [&](std::size_t off) { return *reinterpret_cast<volatile std::uint32_t*>(regs.data() + off); };
  auto reg64 = [&](std::size_t off) -> volatile std::uint64_t& {
    return *reinterpret_cast<volatile std::uint64_t*>(regs.data() + off);
  };
  if (reg32(0) != 0x010000ed) {
    return Error::invalid("not an edu: register 0 reads " + hex(reg32(0)));
  }
  KEEL_TRY(Mapping pages, Mapping::anonymous(2 * kPage, "DMA pages"));
  for (std::uint64_t i = 0; i < 256; ++i) {
    pages.data()[i] = static_cast<std::uint8_t>(i * 7 + 3);
  }
  constexpr std::uint64_t kIova = 0x200000, kEduBuffer = 0x40000;
  KEEL_TRY_STATUS(iommufd.map(ioas, kIova, 2 * kPage, reinterpret_cast<std::uint64_t>(pages.data()),
                              {}, "IOMMU_IOAS_MAP edu DMA pages"));
  auto transfer = [&](std::uint64_t src, std::uint64_t dst, std::uint64_t to_ram) -> Status {
    reg64(0x80) = src;
    reg64(0x88) = dst;
    reg64(0x90) = 256;
    reg64(0x98) = 1 | to_ram;
    for (int i = 0; i < 500; ++i) {
      if ((reg64(0x98) & 1) == 0) {
        return ok_status();
      }
      ::usleep(10'000);
    }
    return Error::from_errno(ETIMEDOUT, "edu DMA " + hex(src) + " -> " + hex(dst));
  };
  Status st = transfer(kIova, kEduBuffer, 0);
  if (st) {
    st = transfer(kEduBuffer, kIova + kPage, 2);
  }
  const bool equal = st && std::memcmp(pages.data(), pages.data() + kPage, 256) == 0;
  KEEL_TRY(const std::uint64_t unmapped,
           iommufd.unmap(ioas, kIova, 2 * kPage, "IOMMU_IOAS_UNMAP edu DMA pages"));
  if (unmapped != 2 * kPage) {
    return Error::invalid("IOMMU_IOAS_UNMAP of the edu DMA pages unmapped " + hex(unmapped) +
                          " bytes, not " + hex(2 * kPage));
  }
  KEEL_TRY_STATUS(st);
  return std::string(equal ? " dma=ok" : " dma=mismatch");
}

Result<std::string> probe(const std::string& bdf, std::uint64_t maps, std::uint64_t bench,
                          bool dma) {
  std::shared_ptr<VfioSys> sys = make_kernel_vfio_sys();
  KEEL_TRY(Iommufd iommufd, Iommufd::open(sys));
  KEEL_TRY(const std::filesystem::path cdev, find_device_cdev("/sys", bdf));
  KEEL_TRY(UniqueFd fd, sys->open(cdev.string()));
  KEEL_TRY(const std::uint32_t devid, bind_device(*sys, fd.get(), iommufd, bdf));
  KEEL_TRY(const std::uint32_t ioas, iommufd.alloc_ioas());
  KEEL_TRY_STATUS(attach_device(*sys, fd.get(), ioas, bdf));
  KEEL_TRY(DeviceFd device, DeviceFd::adopt(sys, std::move(fd), bdf));
  KEEL_TRY(const IoasRanges ranges, iommufd.iova_ranges(ioas));
  KEEL_TRY(const bool per_process, iommufd.charged_per_process());
  std::string line = "iommufd device=" + bdf + " cdev=" + cdev.string() +
                     " devid=" + std::to_string(devid) + " ioas=" + std::to_string(ioas) +
                     " charged=" + (per_process ? "process" : "user") +
                     " alignment=" + hex(ranges.alignment) + " iova_ranges=";
  for (std::size_t i = 0; i < ranges.ranges.size(); ++i) {
    line += (i ? "," : "") + hex(ranges.ranges[i].start) + "-" + hex(ranges.ranges[i].last);
  }
  if (maps > 0) {
    KEEL_TRY(const std::string filled, fill(iommufd, ioas, maps));
    line += filled;
  }
  if (bench > 0) {
    KEEL_TRY(const std::string timed, map_bench(iommufd, ioas, bench));
    line += timed;
  }
  if (dma) {
    KEEL_TRY(const std::string copied, edu_dma(iommufd, ioas, device));
    line += copied;
  }
  return line;
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t maps = 0, bench = 0;
  bool dma = false;
  std::string bdf;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--maps" && i + 1 < argc) {
      maps = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--map-bench" && i + 1 < argc) {
      bench = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--dma") {
      dma = true;
    } else if (bdf.empty() && arg.rfind("--", 0) != 0) {
      bdf = arg;
    } else {
      std::fprintf(stderr, "usage: iommufd_probe [--maps N] [--map-bench N] [--dma] BDF\n");
      return 2;
    }
  }
  if (bdf.empty()) {
    std::fprintf(stderr, "usage: iommufd_probe [--maps N] [--map-bench N] [--dma] BDF\n");
    return 2;
  }
  auto line = probe(bdf, maps, bench, dma);
  if (!line) {
    std::fprintf(stderr, "iommufd_probe: %s\n", line.error().message().c_str());
    return 1;
  }
  std::printf("%s\n", line->c_str());
  return 0;
}
