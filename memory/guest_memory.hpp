#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/mapping.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace keel::memory {

// How guest RAM is backed on the host.
struct Backing {
  bool shared = false;     // memfd, MAP_SHARED (shareable with other processes)
  bool hugepages = false;  // hugetlbfs pages (2 MiB), via MAP_HUGETLB / MFD_HUGETLB
};

// One contiguous range of guest-physical RAM and the host memory behind it.
class RamRegion {
 public:
  RamRegion(std::uint64_t gpa, Mapping mapping, UniqueFd fd)
      : gpa_(gpa), mapping_(std::move(mapping)), fd_(std::move(fd)) {}

  std::uint64_t gpa() const { return gpa_; }
  std::uint64_t size() const { return mapping_.size(); }
  std::uint64_t end() const { return gpa_ + mapping_.size(); }  // exclusive
  std::uint8_t* host() const { return mapping_.data(); }
  // The memfd behind a shared region, -1 for anonymous memory.
  int fd() const { return fd_.get(); }

 private:
  std::uint64_t gpa_;
  Mapping mapping_;
  UniqueFd fd_;
};

// Where a RAM region of a given total size sits in the guest-physical map (see layout.hpp):
// one region below the 32-bit hole, and the rest above 4 GiB.
struct RegionPlan {
  std::uint64_t gpa;
  std::uint64_t size;
};
std::vector<RegionPlan> plan_ram(std::uint64_t ram_size);

// Guest RAM sizes Keel takes: whole pages (2 MiB ones with hugepages), enough to boot Linux, and
// small enough that RAM and the 64-bit PCI window above it stay in a 46-bit guest-physical space.
inline constexpr std::uint64_t kMinRamSize = std::uint64_t{16} << 20;
inline constexpr std::uint64_t kMaxRamSize = std::uint64_t{16} << 40;
// An invalid-request Error naming the size and the fix, when `ram_size` is not one of those.
Status check_ram_size(std::uint64_t ram_size, bool hugepages);

// Whether the host's pool of 2 MiB hugepages (`pool`: its sysfs directory) can give `needed`
// more pages; an invalid-request Error with the numbers and the fix (nr_hugepages) if not.
inline constexpr const char* kHugepagePool = "/sys/kernel/mm/hugepages/hugepages-2048kB";
Status check_hugepages(std::uint64_t needed, const std::string& pool = kHugepagePool);

// All guest RAM. Owns the host mappings; translates guest-physical addresses with bounds checks.
class GuestMemory {
 public:
  // Sizes must be a non-zero multiple of 4 KiB (2 MiB with hugepages). `hotplug_size` (a multiple
  // of kHotplugAlign, not with hugepages) reserves a region above boot RAM that a virtio-mem
  // device plugs into the guest block by block; its host memory is only used once touched.
  static Result<GuestMemory> create(std::uint64_t ram_size, Backing backing = {},
                                    std::uint64_t hotplug_size = 0);
  static constexpr std::uint64_t kHotplugAlign = std::uint64_t{128} << 20;  // Linux's memory block

  // Boot RAM (what e820 describes and eager DMA plans map).
  const std::vector<RamRegion>& regions() const { return regions_; }
  std::uint64_t ram_size() const;
  // The first guest-physical address past the highest boot RAM byte.
  std::uint64_t end() const { return regions_.empty() ? 0 : regions_.back().end(); }
  // The hot-pluggable region, null without one.
  const RamRegion* hotplug_region() const { return hotplug_.empty() ? nullptr : &hotplug_.front(); }
  // Past the last byte the guest may ever have as memory: where the 64-bit PCI window may start.
  std::uint64_t top() const { return hotplug_.empty() ? end() : hotplug_.front().end(); }
  // Gives the host memory behind [gpa, gpa+len) of the hot-pluggable region back (unplugged
  // blocks read as zeros when plugged again).
  Status discard(std::uint64_t gpa, std::uint64_t len) const;

  // Host pointer for [gpa, gpa+len) if the whole range is RAM in one region, else nullptr.
  std::uint8_t* translate(std::uint64_t gpa, std::uint64_t len) const;
  bool contains(std::uint64_t gpa, std::uint64_t len) const { return translate(gpa, len) != nullptr; }

  Status write(std::uint64_t gpa, std::span<const std::uint8_t> data) const;
  Status read(std::uint64_t gpa, std::span<std::uint8_t> out) const;
  Status fill(std::uint64_t gpa, std::uint8_t value, std::uint64_t len) const;

  template <typename T>
  Status write_obj(std::uint64_t gpa, const T& value) const {
    return write(gpa, std::span(reinterpret_cast<const std::uint8_t*>(&value), sizeof(T)));
  }
  template <typename T>
  Result<T> read_obj(std::uint64_t gpa) const {
    T value{};
    KEEL_TRY_STATUS(read(gpa, std::span(reinterpret_cast<std::uint8_t*>(&value), sizeof(T))));
    return value;
  }

 private:
  explicit GuestMemory(std::vector<RamRegion> regions) : regions_(std::move(regions)) {}
  std::vector<RamRegion> regions_;
  std::vector<RamRegion> hotplug_;  // zero or one
};

}  // namespace keel::memory
