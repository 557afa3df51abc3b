#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"

namespace keel::vfio {

inline constexpr const char* kSysfsRoot = "/sys";
inline constexpr const char* kVfioPciDriver = "vfio-pci";

// True for a PCI address as sysfs spells it: "0000:00:01.0" (lower-case hex).
bool is_pci_address(std::string_view text);

// A PCI device as sysfs describes it.
struct PciDeviceLocation {
  std::string bdf;             // "0000:00:01.0"
  std::uint32_t group = 0;     // its IOMMU group number (/dev/vfio/<group>)
  std::string driver;          // the bound driver, "" when none
  std::filesystem::path path;  // the sysfs directory the user named
};

// Resolves a user's device path (/sys/bus/pci/devices/DDDD:BB:DD.F, trailing '/' allowed) to its
// PCI address and IOMMU group, and checks that it is bound to vfio-pci. Errors name the path and
// the fix: not a PCI device path; no such device; no IOMMU group (the host IOMMU is off); bound
// to another driver or to none (with the driver_override commands that rebind it).
Result<PciDeviceLocation> resolve_pci_device(const std::string& path);

// One device of an IOMMU group and its driver ("" when none).
struct GroupMember {
  std::string bdf;
  std::string driver;
};

// Lists <sysfs_root>/kernel/iommu_groups/<group>/devices/* and their drivers, sorted by address.
Result<std::vector<GroupMember>> group_members(const std::filesystem::path& sysfs_root,
                                               std::uint32_t group);

// The sentence that tells the user which devices keep IOMMU group `group` from being viable (bound
// to a driver other than vfio-pci) and how to fix it. Falls back to the members without a driver
// when none is bound elsewhere.
std::string describe_unviable_group(std::uint32_t group, const std::vector<GroupMember>& members);

}  // namespace keel::vfio
