#include "devices/vfio/pci_sysfs.hpp"

#include <algorithm>
#include <cctype>
#include <system_error>

namespace keel::vfio {
namespace fs = std::filesystem;
namespace {

bool is_lower_hex(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c)) != 0 || (c >= 'a' && c <= 'f');
  });
}

// The last component of a symlink's target ("../../../bus/pci/drivers/vfio-pci" -> "vfio-pci"),
// or "" when the link does not exist.
Result<std::string> link_name(const fs::path& link) {
  std::error_code ec;
  fs::path target = fs::read_symlink(link, ec);
  if (ec == std::errc::no_such_file_or_directory) {
    return std::string();
  }
  if (ec) {
    return Error(ErrorKind::kHost, ec, "read link " + link.string());
  }
  return target.filename().string();
}

std::string rebind_commands(const std::string& bdf, const fs::path& device_dir, bool has_driver) {
  const std::string dir = device_dir.string();
  std::string fix = "echo vfio-pci > " + dir + "/driver_override";
  if (has_driver) {
    fix += "; echo " + bdf + " > " + dir + "/driver/unbind";
  }
  fix += "; echo " + bdf + " > /sys/bus/pci/drivers_probe";
  return fix;
}

}  // namespace

bool is_pci_address(std::string_view text) {
  // DDDD:BB:DD.F
  if (text.size() != 12 || text[4] != ':' || text[7] != ':' || text[10] != '.') {
    return false;
  }
  return is_lower_hex(text.substr(0, 4)) && is_lower_hex(text.substr(5, 2)) &&
         is_lower_hex(text.substr(8, 2)) && text[11] >= '0' && text[11] <= '7';
}

Result<PciDeviceLocation> resolve_pci_device(const std::string& path) {
  std::string trimmed = path;
  while (trimmed.size() > 1 && trimmed.back() == '/') {
    trimmed.pop_back();
  }
  PciDeviceLocation location;
  location.path = trimmed;
  location.bdf = location.path.filename().string();
  if (!is_pci_address(location.bdf)) {
    return Error::invalid("'" + path +
                          "' is not a PCI device path: expected /sys/bus/pci/devices/"
                          "DDDD:BB:DD.F, e.g. /sys/bus/pci/devices/0000:00:01.0");
  }
  std::error_code ec;
  if (!fs::is_directory(location.path, ec)) {
    return Error::invalid("PCI device " + location.bdf + ": " + trimmed +
                          " does not exist (check the address with lspci -D)");
  }
  KEEL_TRY(auto group, link_name(location.path / "iommu_group"));
  if (group.empty()) {
    return Error::from_errno(ENODEV, "PCI device " + location.bdf +
                                         " has no IOMMU group (is the IOMMU enabled? add "
                                         "intel_iommu=on or amd_iommu=on to the host kernel "
                                         "command line)");
  }
  if (group.size() > 9 || group.find_first_not_of("0123456789") != std::string::npos) {
    return Error::invalid("PCI device " + location.bdf + ": IOMMU group link " +
                          (location.path / "iommu_group").string() + " names '" + group +
                          "', not a group number");
  }
  location.group = static_cast<std::uint32_t>(std::stoul(group));
  KEEL_TRY(auto driver, link_name(location.path / "driver"));
  location.driver = driver;
  if (location.driver != kVfioPciDriver) {
    const std::string bound =
        location.driver.empty() ? "it has no driver" : "it is bound to " + location.driver;
    return Error::invalid(
        "PCI device " + location.bdf + " is not bound to vfio-pci (" + bound +
        "): " + rebind_commands(location.bdf, location.path, !location.driver.empty()));
  }
  return location;
}

Result<std::vector<GroupMember>> group_members(const fs::path& sysfs_root, std::uint32_t group) {
  const fs::path dir = sysfs_root / "kernel" / "iommu_groups" / std::to_string(group) / "devices";
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) {
    return Error(
        ErrorKind::kHost, ec, "list the devices of IOMMU group " + std::to_string(group) + " in " + dir.string());
  }
  std::vector<GroupMember> members;
  for (const auto& entry : it) {
    GroupMember member;
    member.bdf = entry.path().filename().string();
    KEEL_TRY(auto driver, link_name(entry.path() / "driver"));
    member.driver = driver;
    members.push_back(std::move(member));
  }
  std::sort(members.begin(), members.end(),
            [](const GroupMember& a, const GroupMember& b) { return a.bdf < b.bdf; });
  return members;
}

std::string describe_unviable_group(std::uint32_t group, const std::vector<GroupMember>& members) {
  std::vector<const GroupMember*> culprits;
  for (const auto& member : members) {
    if (!member.driver.empty() && member.driver != kVfioPciDriver) {
      culprits.push_back(&member);
    }
  }
  if (culprits.empty()) {
    for (const auto& member : members) {
      if (member.driver != kVfioPciDriver) {
        culprits.push_back(&member);
      }
    }
  }
  const std::string name = "IOMMU group " + std::to_string(group);
  if (culprits.empty()) {
    return name + " is not viable, yet all " + std::to_string(members.size()) +
           " of its devices are bound to vfio-pci: check dmesg";
  }
  std::string list;
  for (const GroupMember* member : culprits) {
    list += (list.empty() ? "" : ", ") + member->bdf + " (" +
            (member->driver.empty() ? "no driver" : "bound to " + member->driver) + ")";
  }
  return name + " is not viable: " + list + (culprits.size() == 1 ? " is" : " are") +
         " not bound to vfio-pci; every device of the group must be: for each, echo vfio-pci > "
         "/sys/bus/pci/devices/<address>/driver_override, unbind it from its driver and echo "
         "<address> > /sys/bus/pci/drivers_probe";
}

}  // namespace keel::vfio
