#include "tests/unit/vfio/fake_sysfs.hpp"

#include <stdlib.h>

#include <stdexcept>
#include <string>

namespace keel::vfio::testing {
namespace fs = std::filesystem;

FakeSysfs::FakeSysfs() {
  std::string pattern = (fs::temp_directory_path() / "keel-sysfs-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("mkdtemp " + pattern);  // test setup only
  }
  root_ = pattern;
  fs::create_directories(root_ / "bus/pci/devices");
  fs::create_directories(root_ / "bus/pci/drivers");
  fs::create_directories(root_ / "devices/pci0000:00");
  fs::create_directories(root_ / "kernel/iommu_groups");
}

FakeSysfs::~FakeSysfs() {
  std::error_code ec;
  fs::remove_all(root_, ec);
}

void FakeSysfs::add_device(const std::string& bdf, std::optional<std::uint32_t> group,
                           const std::string& driver) {
  const fs::path dir = root_ / "devices/pci0000:00" / bdf;
  fs::create_directories(dir);
  fs::create_directory_symlink("../../../devices/pci0000:00/" + bdf,
                               root_ / "bus/pci/devices" / bdf);
  if (group) {
    const std::string number = std::to_string(*group);
    fs::create_directories(root_ / "kernel/iommu_groups" / number / "devices");
    fs::create_directory_symlink("../../../kernel/iommu_groups/" + number, dir / "iommu_group");
    fs::create_directory_symlink("../../../../devices/pci0000:00/" + bdf,
                                 root_ / "kernel/iommu_groups" / number / "devices" / bdf);
  }
  if (!driver.empty()) {
    fs::create_directories(root_ / "bus/pci/drivers" / driver);
    fs::create_directory_symlink("../../../bus/pci/drivers/" + driver, dir / "driver");
  }
}

std::string FakeSysfs::device_path(const std::string& bdf) const {
  return (root_ / "bus/pci/devices" / bdf).string();
}

}  // namespace keel::vfio::testing
