#include "memory/guest_memory.hpp"

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

Result<GuestMemory> GuestMemory::create(std::uint64_t ram_size, Backing backing) {
  KEEL_TRY_STATUS(check_ram_size(ram_size, backing.hugepages));
  if (backing.hugepages) {
    KEEL_TRY_STATUS(check_hugepages(ram_size / kHugePageSize));
  }
  std::vector<RamRegion> regions;
  for (const RegionPlan& p : plan_ram(ram_size)) {
    KEEL_TRY(auto region, map_region(p, backing));
    regions.push_back(std::move(region));
  }
  return GuestMemory(std::move(regions));
}

std::uint64_t GuestMemory::ram_size() const {
  std::uint64_t total = 0;
  for (const RamRegion& r : regions_) {
    total += r.size();
  }
  return total;
}

std::uint8_t* GuestMemory::translate(std::uint64_t gpa, std::uint64_t len) const {
  for (const RamRegion& r : regions_) {
    if (gpa >= r.gpa() && gpa < r.end()) {
      const std::uint64_t offset = gpa - r.gpa();
      if (len > r.size() - offset) {
        return nullptr;
      }
      return r.host() + offset;
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
