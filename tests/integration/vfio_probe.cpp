// vfio_probe: asks the real kernel what a VFIO type1 container offers, the way Keel will.
// Runs inside the testbed's emulated host; never against a fake.
//
//   vfio_probe [--kvm] [--fill] [--max-maps N] [--map-bench N] [--dma] [--dma-fault] TARGET...
//
// TARGET is a group node (/dev/vfio/7), a group number (7) or a PCI address (0000:00:01.0).
// For each target it opens its own container, checks the API version and the type1v2
// extension, attaches the group, selects type1v2, reads VFIO_IOMMU_GET_INFO (growing argsz
// until the capabilities fit) and walks the capability chain. It prints one line per group:
//
//   group=1 device=0000:00:01.0 pgsizes=0x40201000 caps=2,3,1 dma_avail=24
//   iova_ranges=0x0-0xfedfffff,0xfef00000-0x7fffffffff
//
// --fill maps 4 KiB pages one MAP_DMA call at a time until the kernel refuses (at most
// --max-maps, default 4096), then unmaps them, and adds to the line:
//   mapped=24 stop=ENOSPC avail_full=0 avail_after_unmap=24
// --map-bench N maps and unmaps one 4 KiB page at one IOVA N times, timed, and adds
//   map_bench=N map_bench_seconds=S map_bench_per_second=R
// (the raw MAP+UNMAP rate that the lazy benchmark compares the guest's with).
// --kvm first checks /dev/kvm (KVM_GET_API_VERSION, KVM_CREATE_VM) and prints "kvm api=12 vm=ok".
// --dma (edu devices only) maps two pages, has the edu DMA engine copy a pattern from the first
// page into its buffer and from there into the second page, and adds "dma=ok" when the pattern
// arrived (dma=mismatch otherwise).
// --dma-fault (edu only) then has the edu write to an IOVA that is not mapped, which the IOMMU
// must block and the host kernel log as a DMAR fault; adds "dma_fault_iova=0x...". Pair it with
// "scripts/testbed/run --allow-dmar-faults" and check the fault from outside.
//
// Exit status: 0 when every step behaved as the kernel documents, 1 otherwise (stderr says why).

#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>

#include <chrono>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "base/mapping.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace {

using keel::Error;
using keel::Mapping;
using keel::Result;
using keel::Status;
using keel::UniqueFd;

constexpr std::uint64_t kPageSize = 4096;
// A chain longer than this is corrupt (type1 reports three caps).
constexpr int kMaxCapHops = 64;
// argsz grows once in practice; more rounds mean the kernel keeps moving the goalposts.
constexpr int kMaxInfoRounds = 8;
constexpr std::uint32_t kAvailUnlimited = 0xffffffffU;

// The fixed part of vfio_iommu_type1_info_cap_iova_range, whose flexible array member cannot sit
// in a std::optional; the ranges follow it.
struct IovaRangeCapHead {
  vfio_info_cap_header header;
  std::uint32_t nr_iovas;
  std::uint32_t reserved;
};
static_assert(sizeof(IovaRangeCapHead) ==
              offsetof(vfio_iommu_type1_info_cap_iova_range, iova_ranges));

struct IovaRange {
  std::uint64_t start;
  std::uint64_t end;  // inclusive
};

struct IommuInfo {
  std::uint32_t flags = 0;
  std::uint64_t pgsizes = 0;
  std::vector<std::uint16_t> cap_ids;
  std::optional<std::uint32_t> dma_avail;  // absent: kernel < 5.10, "unknown"
  std::vector<IovaRange> iova_ranges;
};

// The QEMU edu device (1234:11e8): BAR0 registers, see DESIGN.md §5.
constexpr std::uint32_t kEduIdent = 0x010000ed;
constexpr std::size_t kEduRegIdent = 0x00;
constexpr std::size_t kEduRegDmaSrc = 0x80;
constexpr std::size_t kEduRegDmaDst = 0x88;
constexpr std::size_t kEduRegDmaCount = 0x90;
constexpr std::size_t kEduRegDmaCmd = 0x98;
constexpr std::uint64_t kEduDmaStart = 1;
constexpr std::uint64_t kEduDmaToRam = 2;
constexpr std::uint64_t kEduBuffer = 0x40000;
// Transfers must be shorter than 4096 bytes, and the edu's DMA mask is 28 bits.
constexpr std::uint64_t kEduDmaBytes = 256;
constexpr std::uint64_t kDmaIova = 0x200000;       // two mapped pages
constexpr std::uint64_t kDmaFaultIova = 0x300000;  // never mapped
static_assert(kDmaFaultIova + kPageSize < (1ULL << 28));

struct FillResult {
  std::uint32_t mapped = 0;
  int stop_errno = 0;  // 0: stopped at --max-maps
  std::optional<std::uint32_t> avail_full;
  std::optional<std::uint32_t> avail_after_unmap;
};

std::string hex(std::uint64_t v) {
  std::ostringstream out;
  out << "0x" << std::hex << v;
  return out.str();
}

std::string errno_name(int err) {
  switch (err) {
    case ENOSPC:
      return "ENOSPC";
    case ENOMEM:
      return "ENOMEM";
    case EINVAL:
      return "EINVAL";
    case EEXIST:
      return "EEXIST";
    case EPERM:
      return "EPERM";
    case EFAULT:
      return "EFAULT";
    default:
      return "errno" + std::to_string(err);
  }
}

Result<UniqueFd> open_node(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) {
    return Error::from_errno("open " + path);
  }
  return UniqueFd(fd);
}

// Reads a capability-chain structure at `offset` with bounds checks. memcpy, because caps are
// not aligned (DMA_AVAIL is 12 bytes, so the cap after it starts at offset % 8 == 4).
template <typename T>
std::optional<T> read_at(std::span<const std::uint8_t> buf, std::size_t offset) {
  if (offset > buf.size() || buf.size() - offset < sizeof(T)) {
    return std::nullopt;
  }
  T value{};
  std::memcpy(&value, buf.data() + offset, sizeof(T));
  return value;
}

// VFIO_IOMMU_GET_INFO on a container with an IOMMU set. Assumes the kernel raises argsz (and
// sets cap_offset = 0) when the caps do not fit; calls again with the bigger buffer until
// argsz stops growing.
Result<std::vector<std::uint8_t>> get_iommu_info(int container) {
  std::vector<std::uint8_t> buf(sizeof(vfio_iommu_type1_info));
  for (int round = 0; round < kMaxInfoRounds; ++round) {
    std::fill(buf.begin(), buf.end(), 0);
    vfio_iommu_type1_info head{};
    head.argsz = static_cast<std::uint32_t>(buf.size());
    std::memcpy(buf.data(), &head, sizeof(head));
    if (::ioctl(container, VFIO_IOMMU_GET_INFO, buf.data()) != 0) {
      return Error::from_errno("VFIO_IOMMU_GET_INFO");
    }
    std::memcpy(&head, buf.data(), sizeof(head));
    if (head.argsz <= buf.size()) {
      buf.resize(head.argsz);
      return buf;
    }
    buf.resize(head.argsz);
  }
  return Error::invalid("VFIO_IOMMU_GET_INFO: argsz still growing after " +
                        std::to_string(kMaxInfoRounds) + " rounds");
}

Result<IommuInfo> parse_iommu_info(std::span<const std::uint8_t> buf) {
  auto head = read_at<vfio_iommu_type1_info>(buf, 0);
  if (!head) {
    return Error::invalid("VFIO_IOMMU_GET_INFO: reply shorter than its header");
  }
  IommuInfo info;
  info.flags = head->flags;
  info.pgsizes = head->iova_pgsizes;
  if ((head->flags & VFIO_IOMMU_INFO_CAPS) == 0) {
    return info;
  }
  std::size_t offset = head->cap_offset;
  for (int hops = 0; offset != 0; ++hops) {
    if (hops == kMaxCapHops) {
      return Error::invalid("capability chain longer than " + std::to_string(kMaxCapHops));
    }
    if (offset < sizeof(vfio_iommu_type1_info)) {
      return Error::invalid("capability at offset " + std::to_string(offset) +
                            " overlaps the info header");
    }
    auto cap = read_at<vfio_info_cap_header>(buf, offset);
    if (!cap) {
      return Error::invalid("capability header at offset " + std::to_string(offset) +
                            " runs past argsz " + std::to_string(buf.size()));
    }
    info.cap_ids.push_back(cap->id);
    if (cap->id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL) {
      auto avail = read_at<vfio_iommu_type1_info_dma_avail>(buf, offset);
      if (!avail) {
        return Error::invalid("DMA_AVAIL capability truncated");
      }
      info.dma_avail = avail->avail;
    } else if (cap->id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
      auto ranges = read_at<IovaRangeCapHead>(buf, offset);
      if (!ranges) {
        return Error::invalid("IOVA_RANGE capability truncated");
      }
      std::size_t first = offset + sizeof(IovaRangeCapHead);
      for (std::uint32_t i = 0; i < ranges->nr_iovas; ++i) {
        auto range = read_at<vfio_iova_range>(buf, first + i * sizeof(vfio_iova_range));
        if (!range) {
          return Error::invalid("IOVA_RANGE capability: range " + std::to_string(i) + " of " +
                                std::to_string(ranges->nr_iovas) + " runs past argsz");
        }
        info.iova_ranges.push_back({range->start, range->end});
      }
    }
    // Other ids (MIGRATION, future ones) are recorded and skipped.
    offset = cap->next;
  }
  return info;
}

// The IOVAs --fill maps: 4 KiB pages inside the valid ranges, one page apart so that no two
// mappings touch, starting at 1 MiB.
std::vector<std::uint64_t> fill_iovas(const std::vector<IovaRange>& ranges, std::uint32_t count) {
  std::vector<std::uint64_t> iovas;
  for (const auto& range : ranges) {
    std::uint64_t iova = std::max<std::uint64_t>(range.start, 0x100000);
    iova = (iova + kPageSize - 1) & ~(kPageSize - 1);
    while (iovas.size() < count && iova <= range.end && range.end - iova >= kPageSize - 1) {
      iovas.push_back(iova);
      iova += 2 * kPageSize;
    }
  }
  return iovas;
}

Result<std::optional<std::uint32_t>> read_avail(int container) {
  auto raw = get_iommu_info(container);
  if (!raw) {
    return raw.error();
  }
  auto info = parse_iommu_info(*raw);
  if (!info) {
    return info.error();
  }
  return info->dma_avail;
}

// Maps one 4 KiB page per VFIO_IOMMU_MAP_DMA until the kernel refuses or max_maps is reached,
// reads DMA_AVAIL, then unmaps every page (exactly as mapped: type1v2 never splits) and reads it
// again.
Result<FillResult> fill(int container, const IommuInfo& info, std::uint32_t max_maps) {
  auto iovas = fill_iovas(info.iova_ranges, max_maps);
  if (iovas.empty()) {
    return Error::invalid("no valid IOVA range to map into");
  }
  auto memory = Mapping::anonymous(iovas.size() * kPageSize, "fill buffer");
  if (!memory) {
    return memory.error();
  }
  FillResult result;
  for (std::size_t i = 0; i < iovas.size(); ++i) {
    vfio_iommu_type1_dma_map map{};
    map.argsz = sizeof(map);
    map.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
    map.vaddr = reinterpret_cast<std::uintptr_t>(memory->data() + i * kPageSize);
    map.iova = iovas[i];
    map.size = kPageSize;
    if (::ioctl(container, VFIO_IOMMU_MAP_DMA, &map) != 0) {
      result.stop_errno = errno;
      break;
    }
    ++result.mapped;
  }
  auto full = read_avail(container);
  if (!full) {
    return full.error().wrap("after filling");
  }
  result.avail_full = *full;
  for (std::uint32_t i = 0; i < result.mapped; ++i) {
    vfio_iommu_type1_dma_unmap unmap{};
    unmap.argsz = sizeof(unmap);
    unmap.iova = iovas[i];
    unmap.size = kPageSize;
    if (::ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap) != 0) {
      return Error::from_errno("VFIO_IOMMU_UNMAP_DMA iova " + hex(iovas[i]));
    }
    if (unmap.size != kPageSize) {
      return Error::invalid("VFIO_IOMMU_UNMAP_DMA iova " + hex(iovas[i]) + " unmapped " +
                            std::to_string(unmap.size) + " bytes, not one page");
    }
  }
  auto after = read_avail(container);
  if (!after) {
    return after.error().wrap("after unmapping");
  }
  result.avail_after_unmap = *after;
  return result;
}

// Reads or writes one register of a PCI device's config space through the VFIO config region.
Status config_access(int device, std::uint64_t region_offset, std::size_t reg, void* data,
                     std::size_t size, bool write) {
  auto off = static_cast<off_t>(region_offset + reg);
  ssize_t n = write ? ::pwrite(device, data, size, off) : ::pread(device, data, size, off);
  if (n != static_cast<ssize_t>(size)) {
    return Error::from_errno(std::string(write ? "write" : "read") + " config register " +
                             hex(reg));
  }
  return keel::ok_status();
}

class Edu {
 public:
  explicit Edu(Mapping bar0) : bar0_(std::move(bar0)) {}

  std::uint32_t read32(std::size_t reg) const {
    return *reinterpret_cast<volatile const std::uint32_t*>(bar0_.data() + reg);
  }
  std::uint64_t read64(std::size_t reg) const {
    return *reinterpret_cast<volatile const std::uint64_t*>(bar0_.data() + reg);
  }
  void write64(std::size_t reg, std::uint64_t value) {
    *reinterpret_cast<volatile std::uint64_t*>(bar0_.data() + reg) = value;
  }

  // Starts one transfer and polls the command register until the start bit clears (the edu
  // finishes about 100 ms after the start; give it 5 s under TCG).
  Status transfer(std::uint64_t src, std::uint64_t dst, std::uint64_t direction) {
    write64(kEduRegDmaSrc, src);
    write64(kEduRegDmaDst, dst);
    write64(kEduRegDmaCount, kEduDmaBytes);
    write64(kEduRegDmaCmd, kEduDmaStart | direction);
    for (int i = 0; i < 500; ++i) {
      if ((read64(kEduRegDmaCmd) & kEduDmaStart) == 0) {
        return keel::ok_status();
      }
      ::usleep(10'000);
    }
    return Error::from_errno(ETIMEDOUT, "edu DMA " + hex(src) + " -> " + hex(dst));
  }

 private:
  Mapping bar0_;
};

// Opens the device, enables memory decoding and bus mastering, maps BAR0 and checks that it is
// an edu.
Result<Edu> open_edu(int device) {
  // VFIO_DEVICE_GET_REGION_INFO(index): fills size, offset (for pread/pwrite/mmap) and flags.
  vfio_region_info config{};
  config.argsz = sizeof(config);
  config.index = VFIO_PCI_CONFIG_REGION_INDEX;
  if (::ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &config) != 0) {
    return Error::from_errno("VFIO_DEVICE_GET_REGION_INFO(config)");
  }
  std::uint16_t command = 0;
  KEEL_TRY_STATUS(config_access(device, config.offset, 0x04, &command, sizeof(command), false));
  command |= 0x0006;  // memory space, bus master
  KEEL_TRY_STATUS(config_access(device, config.offset, 0x04, &command, sizeof(command), true));

  vfio_region_info bar0{};
  bar0.argsz = sizeof(bar0);
  bar0.index = VFIO_PCI_BAR0_REGION_INDEX;
  if (::ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &bar0) != 0) {
    return Error::from_errno("VFIO_DEVICE_GET_REGION_INFO(BAR0)");
  }
  if ((bar0.flags & VFIO_REGION_INFO_FLAG_MMAP) == 0 || bar0.size < 0x100) {
    return Error::invalid("BAR0 cannot be mmapped (flags " + hex(bar0.flags) + ", size " +
                          hex(bar0.size) + ")");
  }
  auto mapping = Mapping::create(bar0.size, PROT_READ | PROT_WRITE, MAP_SHARED, device,
                                 static_cast<off_t>(bar0.offset), "edu BAR0");
  if (!mapping) {
    return mapping.error();
  }
  Edu edu(std::move(*mapping));
  if (std::uint32_t ident = edu.read32(kEduRegIdent); ident != kEduIdent) {
    return Error::invalid("not an edu device: register 0 reads " + hex(ident));
  }
  return edu;
}

struct DmaResult {
  bool round_trip_ok = false;
  bool fault_sent = false;
};

// RAM -> edu buffer -> RAM through two mapped pages; optionally a device write to an unmapped
// IOVA, which the IOMMU must block.
Result<DmaResult> dma_test(int container, int group, const std::string& device_name,
                           bool send_fault) {
  // VFIO_GROUP_GET_DEVICE_FD(name): needs the container's IOMMU set; returns the device fd.
  int fd = ::ioctl(group, VFIO_GROUP_GET_DEVICE_FD, device_name.c_str());
  if (fd < 0) {
    return Error::from_errno("VFIO_GROUP_GET_DEVICE_FD " + device_name);
  }
  UniqueFd device(fd);
  auto edu = open_edu(device.get());
  if (!edu) {
    return edu.error().wrap(device_name);
  }
  auto pages = Mapping::anonymous(2 * kPageSize, "DMA pages");
  if (!pages) {
    return pages.error();
  }
  std::uint8_t* source = pages->data();
  std::uint8_t* target = pages->data() + kPageSize;
  for (std::uint64_t i = 0; i < kEduDmaBytes; ++i) {
    source[i] = static_cast<std::uint8_t>(i * 7 + 3);
  }
  vfio_iommu_type1_dma_map map{};
  map.argsz = sizeof(map);
  map.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
  map.vaddr = reinterpret_cast<std::uintptr_t>(pages->data());
  map.iova = kDmaIova;
  map.size = 2 * kPageSize;
  if (::ioctl(container, VFIO_IOMMU_MAP_DMA, &map) != 0) {
    return Error::from_errno("VFIO_IOMMU_MAP_DMA iova " + hex(kDmaIova));
  }
  DmaResult result;
  Status status = edu->transfer(kDmaIova, kEduBuffer, 0);
  if (status) {
    status = edu->transfer(kEduBuffer, kDmaIova + kPageSize, kEduDmaToRam);
  }
  if (status) {
    result.round_trip_ok = std::memcmp(source, target, kEduDmaBytes) == 0;
  }
  if (status && send_fault) {
    status = edu->transfer(kEduBuffer, kDmaFaultIova, kEduDmaToRam);
    result.fault_sent = status.ok();
  }
  vfio_iommu_type1_dma_unmap unmap{};
  unmap.argsz = sizeof(unmap);
  unmap.iova = kDmaIova;
  unmap.size = 2 * kPageSize;
  if (::ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap) != 0) {
    return Error::from_errno("VFIO_IOMMU_UNMAP_DMA iova " + hex(kDmaIova));
  }
  if (!status) {
    return status.error();
  }
  return result;
}

std::string avail_text(const std::optional<std::uint32_t>& avail) {
  if (!avail) {
    return "absent";
  }
  if (*avail == kAvailUnlimited) {
    return "unlimited";
  }
  return std::to_string(*avail);
}

struct Target {
  std::string group_path;
  std::string group;
  std::string device;  // a PCI address in the group, for the report
};

Result<Target> resolve_target(std::string arg) {
  namespace fs = std::filesystem;
  std::error_code ec;
  Target target;
  if (arg.find(':') != std::string::npos) {
    if (std::count(arg.begin(), arg.end(), ':') == 1) {
      arg = "0000:" + arg;
    }
    fs::path link = fs::path("/sys/bus/pci/devices") / arg / "iommu_group";
    fs::path group = fs::read_symlink(link, ec);
    if (ec) {
      return Error(keel::ErrorKind::kHost, ec, "PCI device " + arg + " has no IOMMU group (" + link.string() + ")");
    }
    target.group = group.filename().string();
    target.device = arg;
  } else if (arg.starts_with("/")) {
    target.group = fs::path(arg).filename().string();
  } else {
    target.group = arg;
  }
  if (target.group.empty() || target.group.find_first_not_of("0123456789") != std::string::npos) {
    return Error::invalid("'" + arg +
                          "' is neither a group node, a group number nor a PCI address");
  }
  target.group_path = "/dev/vfio/" + target.group;
  if (target.device.empty()) {
    for (const auto& entry :
         fs::directory_iterator("/sys/kernel/iommu_groups/" + target.group + "/devices", ec)) {
      target.device = entry.path().filename().string();
      break;
    }
  }
  return target;
}

// N MAP+UNMAP pairs of one page at the first valid IOVA; the seconds they took.
Result<double> map_bench(int container, const IommuInfo& info, std::uint32_t count) {
  auto iovas = fill_iovas(info.iova_ranges, 1);
  if (iovas.empty()) {
    return Error::invalid("no valid IOVA range to map into");
  }
  auto memory = Mapping::anonymous(kPageSize, "bench page");
  if (!memory) {
    return memory.error();
  }
  const auto start = std::chrono::steady_clock::now();
  for (std::uint32_t i = 0; i < count; ++i) {
    vfio_iommu_type1_dma_map map{};
    map.argsz = sizeof(map);
    map.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
    map.vaddr = reinterpret_cast<std::uintptr_t>(memory->data());
    map.iova = iovas[0];
    map.size = kPageSize;
    if (::ioctl(container, VFIO_IOMMU_MAP_DMA, &map) != 0) {
      return Error::from_errno("VFIO_IOMMU_MAP_DMA iova " + hex(iovas[0]));
    }
    vfio_iommu_type1_dma_unmap unmap{};
    unmap.argsz = sizeof(unmap);
    unmap.iova = iovas[0];
    unmap.size = kPageSize;
    if (::ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap) != 0) {
      return Error::from_errno("VFIO_IOMMU_UNMAP_DMA iova " + hex(iovas[0]));
    }
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Opens a container and attaches one group to it with type1v2. Prints the group's line.
struct Options {
  bool kvm = false;
  bool fill = false;
  std::uint32_t max_maps = 4096;
  std::uint32_t map_bench = 0;
  bool dma = false;
  bool dma_fault = false;
};

Status probe_group(const Target& target, const Options& options) {
  // The container must outlive the group's attachment: declared first, destroyed last.
  auto container = open_node("/dev/vfio/vfio", O_RDWR);
  if (!container) {
    return container.error();
  }
  // VFIO_GET_API_VERSION: no argument; returns VFIO_API_VERSION (0) on every kernel since 3.6.
  int api = ::ioctl(container->get(), VFIO_GET_API_VERSION);
  if (api != VFIO_API_VERSION) {
    return Error::invalid("VFIO_GET_API_VERSION returned " + std::to_string(api) + ", expected " +
                          std::to_string(VFIO_API_VERSION));
  }
  // VFIO_CHECK_EXTENSION(type): returns > 0 when the container supports the IOMMU type.
  if (::ioctl(container->get(), VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) <= 0) {
    return Error::invalid("the container does not support VFIO_TYPE1v2_IOMMU");
  }
  auto group = open_node(target.group_path, O_RDWR);
  if (!group) {
    return group.error();
  }
  // VFIO_GROUP_GET_STATUS: fills flags; VIABLE means every device of the group is bound to a
  // VFIO driver (or none).
  vfio_group_status status{};
  status.argsz = sizeof(status);
  if (::ioctl(group->get(), VFIO_GROUP_GET_STATUS, &status) != 0) {
    return Error::from_errno("VFIO_GROUP_GET_STATUS " + target.group_path);
  }
  if ((status.flags & VFIO_GROUP_FLAGS_VIABLE) == 0) {
    return Error::invalid("group " + target.group +
                          " is not viable: bind every device in it to vfio-pci");
  }
  // VFIO_GROUP_SET_CONTAINER: takes a pointer to the container fd; the group must be unattached.
  int container_fd = container->get();
  if (::ioctl(group->get(), VFIO_GROUP_SET_CONTAINER, &container_fd) != 0) {
    return Error::from_errno("VFIO_GROUP_SET_CONTAINER " + target.group_path);
  }
  // VFIO_SET_IOMMU(type): needs at least one group attached; EPERM here usually means no
  // interrupt remapping.
  if (::ioctl(container->get(), VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) != 0) {
    return Error::from_errno("VFIO_SET_IOMMU(VFIO_TYPE1v2_IOMMU) for group " + target.group);
  }
  auto raw = get_iommu_info(container->get());
  if (!raw) {
    return raw.error();
  }
  auto info = parse_iommu_info(*raw);
  if (!info) {
    return info.error().wrap("VFIO_IOMMU_GET_INFO of group " + target.group);
  }

  std::ostringstream line;
  line << "group=" << target.group << " device=" << (target.device.empty() ? "-" : target.device)
       << " pgsizes=" << hex(info->pgsizes) << " caps=";
  for (std::size_t i = 0; i < info->cap_ids.size(); ++i) {
    line << (i ? "," : "") << info->cap_ids[i];
  }
  if (info->cap_ids.empty()) {
    line << "none";
  }
  line << " dma_avail=" << avail_text(info->dma_avail) << " iova_ranges=";
  for (std::size_t i = 0; i < info->iova_ranges.size(); ++i) {
    line << (i ? "," : "") << hex(info->iova_ranges[i].start) << "-"
         << hex(info->iova_ranges[i].end);
  }
  if (info->iova_ranges.empty()) {
    line << "none";
  }
  if (options.fill) {
    auto filled = fill(container->get(), *info, options.max_maps);
    if (!filled) {
      return filled.error().wrap("fill group " + target.group);
    }
    line << " mapped=" << filled->mapped
         << " stop=" << (filled->stop_errno ? errno_name(filled->stop_errno) : "max-maps")
         << " avail_full=" << avail_text(filled->avail_full)
         << " avail_after_unmap=" << avail_text(filled->avail_after_unmap);
  }
  if (options.map_bench > 0) {
    auto seconds = map_bench(container->get(), *info, options.map_bench);
    if (!seconds) {
      return seconds.error().wrap("map bench group " + target.group);
    }
    char figures[96];
    std::snprintf(figures, sizeof figures, " map_bench=%u map_bench_seconds=%.3f map_bench_per_second=%.1f",
                  options.map_bench, *seconds, *seconds > 0 ? options.map_bench / *seconds : 0.0);
    line << figures;
  }
  if (options.dma || options.dma_fault) {
    if (target.device.empty()) {
      return Error::invalid("group " + target.group + " has no device for the DMA test");
    }
    auto dma = dma_test(container->get(), group->get(), target.device, options.dma_fault);
    if (!dma) {
      return dma.error().wrap("DMA test");
    }
    line << " dma=" << (dma->round_trip_ok ? "ok" : "mismatch");
    if (dma->fault_sent) {
      line << " dma_fault_iova=" << hex(kDmaFaultIova);
    }
  }
  std::printf("%s\n", line.str().c_str());
  std::fflush(stdout);
  // Detach before the container closes, so the group is reusable at once.
  if (::ioctl(group->get(), VFIO_GROUP_UNSET_CONTAINER) != 0) {
    return Error::from_errno("VFIO_GROUP_UNSET_CONTAINER " + target.group_path);
  }
  return keel::ok_status();
}

// Opens /dev/kvm, checks KVM_GET_API_VERSION == 12 and that KVM_CREATE_VM works (which needs
// the vendor module, kvm-amd here, to have found usable hardware virtualization).
Status probe_kvm() {
  auto kvm = open_node("/dev/kvm", O_RDWR);
  if (!kvm) {
    return kvm.error();
  }
  // KVM_GET_API_VERSION: no argument; 12 is the only stable value.
  int api = ::ioctl(kvm->get(), KVM_GET_API_VERSION, 0);
  if (api != KVM_API_VERSION) {
    return Error::invalid("KVM_GET_API_VERSION returned " + std::to_string(api));
  }
  // KVM_CREATE_VM(0): the default VM type; returns a VM fd.
  int vm = ::ioctl(kvm->get(), KVM_CREATE_VM, 0);
  if (vm < 0) {
    return Error::from_errno("KVM_CREATE_VM");
  }
  UniqueFd vm_fd(vm);
  std::printf("kvm api=%d vm=ok\n", api);
  std::fflush(stdout);
  return keel::ok_status();
}

int usage() {
  std::fprintf(stderr,
               "usage: vfio_probe [--kvm] [--fill] [--max-maps N] [--map-bench N] [--dma] "
               "[--dma-fault] "
               "TARGET...\n"
               "  TARGET: /dev/vfio/N, N, or a PCI address such as 0000:00:01.0\n");
  return 2;
}

int run(int argc, char** argv) {
  Options options;
  std::vector<std::string> targets;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--kvm") {
      options.kvm = true;
    } else if (arg == "--fill") {
      options.fill = true;
    } else if (arg == "--dma") {
      options.dma = true;
    } else if (arg == "--dma-fault") {
      options.dma_fault = true;
    } else if (arg == "--max-maps" && i + 1 < argc) {
      char* end = nullptr;
      unsigned long value = std::strtoul(argv[++i], &end, 10);
      if (*end != '\0' || value == 0 || value > 1'000'000) {
        return usage();
      }
      options.max_maps = static_cast<std::uint32_t>(value);
    } else if (arg == "--map-bench" && i + 1 < argc) {
      char* end = nullptr;
      unsigned long value = std::strtoul(argv[++i], &end, 10);
      if (*end != '\0' || value == 0 || value > 1'000'000) {
        return usage();
      }
      options.map_bench = static_cast<std::uint32_t>(value);
    } else if (arg.starts_with("-")) {
      return usage();
    } else {
      targets.emplace_back(arg);
    }
  }
  if (!options.kvm && targets.empty()) {
    return usage();
  }
  int exit_status = 0;
  if (options.kvm) {
    if (auto st = probe_kvm(); !st) {
      std::fprintf(stderr, "vfio_probe: kvm: %s\n", st.error().message().c_str());
      exit_status = 1;
    }
  }
  for (const auto& arg : targets) {
    auto target = resolve_target(arg);
    if (!target) {
      std::fprintf(stderr, "vfio_probe: %s\n", target.error().message().c_str());
      exit_status = 1;
      continue;
    }
    if (auto st = probe_group(*target, options); !st) {
      std::fprintf(stderr, "vfio_probe: group %s: %s\n", target->group.c_str(),
                   st.error().message().c_str());
      exit_status = 1;
    }
  }
  return exit_status;
}

}  // namespace

int main(int argc, char** argv) {
  // Only std::bad_alloc and friends can get here; report them instead of terminating.
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vfio_probe: %s\n", e.what());
    return 1;
  }
}
