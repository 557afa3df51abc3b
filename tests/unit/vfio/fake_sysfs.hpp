#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

// A throwaway sysfs tree in a temporary directory, shaped like the real one for what Keel reads:
//   <root>/bus/pci/devices/<bdf> -> ../../../devices/pci0000:00/<bdf>
//   <root>/devices/pci0000:00/<bdf>/iommu_group -> ../../../kernel/iommu_groups/<N>
//   <root>/devices/pci0000:00/<bdf>/driver -> ../../../bus/pci/drivers/<driver>
//   <root>/kernel/iommu_groups/<N>/devices/<bdf> -> ../../../../devices/pci0000:00/<bdf>
// Removed on destruction.
namespace keel::vfio::testing {

class FakeSysfs {
 public:
  FakeSysfs();
  ~FakeSysfs();
  FakeSysfs(const FakeSysfs&) = delete;
  FakeSysfs& operator=(const FakeSysfs&) = delete;

  // driver "" = no driver; group unset = no IOMMU group.
  void add_device(const std::string& bdf, std::optional<std::uint32_t> group,
                  const std::string& driver);

  const std::filesystem::path& root() const { return root_; }
  // The path a user would name: <root>/bus/pci/devices/<bdf>.
  std::string device_path(const std::string& bdf) const;

 private:
  std::filesystem::path root_;
};

}  // namespace keel::vfio::testing
