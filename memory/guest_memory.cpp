#include "memory/guest_memory.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>

#include "base/hex.hpp"
#include "base/size.hpp"
#include "memory/layout.hpp"

namespace keel::memory {
namespace {

constexpr std::uint64_t kPageSize = 4096;
constexpr std::uint64_t kHugePageSize = 2 * kMiB;

Result<RamRegion> map_region(const RegionPlan& plan, const Backing& backing) {
  const std::string what = "guest RAM at " + hex(plan.gpa) + " (" + format_size(plan.size) + ")";
  if (!backing.shared && !backing.hugepages) {
    // 2 MiB-aligned and THP-advised, so KVM can map guest RAM with large pages (fewer stage-2
    // faults than 4 KiB pages).
    KEEL_TRY(auto mapping,
             Mapping::anonymous_aligned(plan.size, kHugePageSize, MAP_NORESERVE, what.c_str()));
    ::madvise(mapping.data(), mapping.size(), MADV_HUGEPAGE);
    return RamRegion(plan.gpa, std::move(mapping), UniqueFd());
  }
  // Hugepages are reserved when mapped (no MAP_NORESERVE): a pool too small fails here with
  // ENOMEM, never later with SIGBUS at the guest's first touch.
  if (!backing.shared) {
    const int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB;
    auto mapping = Mapping::create(plan.size, PROT_READ | PROT_WRITE, flags, -1, 0, what.c_str());
    if (!mapping.ok()) {
      if (mapping.error().errno_value() == ENOMEM) {
        return mapping.error().wrap("not enough free hugepages (see /proc/sys/vm/nr_hugepages)");
      }
      return mapping.error();
    }
    return RamRegion(plan.gpa, std::move(mapping).value(), UniqueFd());
  }
  unsigned int mfd_flags = MFD_CLOEXEC;
  if (backing.hugepages) {
    mfd_flags |= MFD_HUGETLB;
  }
  UniqueFd fd(::memfd_create("keel-guest-ram", mfd_flags));
  if (!fd) {
    return Error::from_errno("memfd_create for " + what);
  }
  if (::ftruncate(fd.get(), static_cast<off_t>(plan.size)) != 0) {
    return Error::from_errno("ftruncate memfd for " + what);
  }
  const int flags = MAP_SHARED | (backing.hugepages ? 0 : MAP_NORESERVE);
  auto mapping = Mapping::create(plan.size, PROT_READ | PROT_WRITE, flags, fd.get(), 0, what.c_str());
  if (!mapping.ok()) {
    if (backing.hugepages && mapping.error().errno_value() == ENOMEM) {
      return mapping.error().wrap("not enough free hugepages (see /proc/sys/vm/nr_hugepages)");
    }
    return mapping.error();
  }
  return RamRegion(plan.gpa, std::move(mapping).value(), std::move(fd));
}

// The 2 MiB pool's pages that a new mapping may still reserve: free minus those reserved
// already. Unknown (no such pool, unreadable sysfs) reads as 0.
std::uint64_t available_hugepages(const std::string& pool) {
  auto read = [&](const char* name) -> std::uint64_t {
    std::ifstream in(pool + "/" + name);
    std::uint64_t v = 0;
    return (in >> v) ? v : 0;
  };
  const std::uint64_t free = read("free_hugepages");
  const std::uint64_t reserved = read("resv_hugepages");
  return free > reserved ? free - reserved : 0;
}

}  // namespace

Status check_hugepages(std::uint64_t needed, const std::string& pool) {
  const std::uint64_t available = available_hugepages(pool);
  if (needed <= available) {
    return ok_status();
  }
  return Error::invalid("hugepages=on needs " + std::to_string(needed) + " free 2 MiB hugepages for " +
                        format_size(needed * kHugePageSize) + " of guest RAM, and the host has " +
                        std::to_string(available) + "; reserve them (echo " +
                        std::to_string(needed) + " > /proc/sys/vm/nr_hugepages, or more if others "
                        "use them) or leave hugepages off");
}

std::vector<RegionPlan> plan_ram(std::uint64_t ram_size) {
  std::vector<RegionPlan> plan;
  const std::uint64_t low = ram_size < layout::kRam32End ? ram_size : layout::kRam32End;
  if (low > 0) {
    plan.push_back({0, low});
  }
  if (ram_size > low) {
    plan.push_back({layout::kRam64Start, ram_size - low});
  }
  return plan;
}

Status check_ram_size(std::uint64_t ram_size, bool hugepages) {
  const std::uint64_t granule = hugepages ? kHugePageSize : kPageSize;
  if (ram_size == 0) {
    return Error::invalid("memory size is 0; give the guest RAM, e.g. --memory size=512M");
  }
  if (ram_size % granule != 0) {
    return Error::invalid("memory size " + std::to_string(ram_size) + " bytes is not a multiple of " +
                          format_size(granule) + "; round it, e.g. --memory size=512M");
  }
  if (ram_size < kMinRamSize) {
    return Error::invalid("memory size " + format_size(ram_size) +
                          " is too small to boot Linux; give at least 16M");
  }
  if (ram_size > kMaxRamSize) {
    return Error::invalid("memory size " + format_size(ram_size) + " is more than Keel's " +
                          format_size(kMaxRamSize) + " (the guest-physical map above 4 GiB); give less");
  }
  return ok_status();
}

Result<GuestMemory> GuestMemory::create(std::uint64_t ram_size, Backing backing,
                                        std::uint64_t hotplug_size) {
  KEEL_TRY_STATUS(check_ram_size(ram_size, backing.hugepages));
  if (backing.hugepages) {
    KEEL_TRY_STATUS(check_hugepages(ram_size / kHugePageSize));
  }
  std::vector<RamRegion> regions;
  for (const RegionPlan& p : plan_ram(ram_size)) {
    KEEL_TRY(auto region, map_region(p, backing));
    regions.push_back(std::move(region));
  }
  GuestMemory memory(std::move(regions));
  if (hotplug_size != 0) {
    if (hotplug_size % kHotplugAlign != 0) {
      return Error::invalid("hotplug_size " + format_size(hotplug_size) +
                            " is not a multiple of 128 MiB (Linux adds memory in 128 MiB blocks); "
                            "round it, e.g. hotplug_size=1G");
    }
    if (backing.hugepages) {
      return Error::invalid("hotplug_size with hugepages=on would reserve every hugepage of the "
                            "region up front; leave hugepages off for a VM that grows");
    }
    const std::uint64_t start = layout::hotplug_start(memory.end());
    if (hotplug_size > kMaxRamSize || start + hotplug_size > layout::kRam64Start + kMaxRamSize) {
      return Error::invalid("hotplug_size " + format_size(hotplug_size) + " takes the guest past " +
                            format_size(kMaxRamSize) + " of memory; give less");
    }
    KEEL_TRY(auto region, map_region({start, hotplug_size}, backing));
    memory.hotplug_.push_back(std::move(region));
  }
  return memory;
}

Status GuestMemory::discard(std::uint64_t gpa, std::uint64_t len) const {
  const RamRegion* region = hotplug_region();
  if (region == nullptr || gpa < region->gpa() || len > region->end() - gpa) {
    return Error::invalid("discard of " + hex(gpa) + "+" + hex(len) +
                          " is outside the hot-pluggable region");
  }
  std::uint8_t* host = region->host() + (gpa - region->gpa());
  if (region->fd() >= 0) {
    // Shared (memfd): the hole in the file is what frees the pages.
    if (::fallocate(region->fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                    static_cast<off_t>(gpa - region->gpa()), static_cast<off_t>(len)) != 0) {
      return Error::from_errno("fallocate(PUNCH_HOLE) of unplugged guest memory");
    }
  }
  if (::madvise(host, len, MADV_DONTNEED) != 0) {
    return Error::from_errno("madvise(DONTNEED) of unplugged guest memory");
  }
  return ok_status();
}

std::uint64_t GuestMemory::ram_size() const {
  std::uint64_t total = 0;
  for (const RamRegion& r : regions_) {
    total += r.size();
  }
  return total;
}

std::uint8_t* GuestMemory::translate(std::uint64_t gpa, std::uint64_t len) const {
  for (const auto* list : {&regions_, &hotplug_}) {
    for (const RamRegion& r : *list) {
      if (gpa >= r.gpa() && gpa < r.end()) {
        const std::uint64_t offset = gpa - r.gpa();
        if (len > r.size() - offset) {
          return nullptr;
        }
        return r.host() + offset;
      }
    }
  }
  return nullptr;
}

Status GuestMemory::write(std::uint64_t gpa, std::span<const std::uint8_t> data) const {
  std::uint8_t* dst = translate(gpa, data.size());
  if (dst == nullptr) {
    return Error::from_errno(EFAULT, "guest write of " + std::to_string(data.size()) +
                                         " bytes at " + hex(gpa) + " is outside guest RAM");
  }
  if (!data.empty()) {
    std::memcpy(dst, data.data(), data.size());
  }
  return ok_status();
}

Status GuestMemory::read(std::uint64_t gpa, std::span<std::uint8_t> out) const {
  const std::uint8_t* src = translate(gpa, out.size());
  if (src == nullptr) {
    return Error::from_errno(EFAULT, "guest read of " + std::to_string(out.size()) + " bytes at " +
                                         hex(gpa) + " is outside guest RAM");
  }
  if (!out.empty()) {
    std::memcpy(out.data(), src, out.size());
  }
  return ok_status();
}

Status GuestMemory::fill(std::uint64_t gpa, std::uint8_t value, std::uint64_t len) const {
  std::uint8_t* dst = translate(gpa, len);
  if (dst == nullptr) {
    return Error::from_errno(EFAULT, "guest fill of " + std::to_string(len) + " bytes at " +
                                         hex(gpa) + " is outside guest RAM");
  }
  std::memset(dst, value, len);
  return ok_status();
}

}  // namespace keel::memory
