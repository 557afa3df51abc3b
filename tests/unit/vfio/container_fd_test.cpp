#include "devices/vfio/container_fd.hpp"

#include <linux/vfio.h>

#include <cstring>
#include <memory>

#include <catch2/catch.hpp>

#include "devices/vfio/device_fd.hpp"
#include "devices/vfio/group.hpp"
#include "devices/vfio/pci_sysfs.hpp"
#include "tests/unit/vfio/fake_sysfs.hpp"
#include "tests/unit/vfio/fake_vfio_sys.hpp"

namespace keel::vfio {
namespace {

using testing::FakeDevice;
using testing::FakeKernelConfig;
using testing::FakeSysfs;
using testing::FakeVfioSys;

TEST_CASE("container: API version and extensions") {
  SECTION("type1v2 with UNMAP_ALL") {
    auto fake = std::make_shared<FakeVfioSys>();
    auto container = ContainerFd::open(fake);
    REQUIRE(container.ok());
    CHECK(container->unmap_all_supported());
    CHECK_FALSE(container->iommu_set());
    CHECK(fake->calls(VFIO_GET_API_VERSION) == 1);
  }
  SECTION("type1v2 without UNMAP_ALL is fine, and noted") {
    FakeKernelConfig config;
    config.unmap_all = false;
    auto container = ContainerFd::open(std::make_shared<FakeVfioSys>(config));
    REQUIRE(container.ok());
    CHECK_FALSE(container->unmap_all_supported());
  }
  SECTION("no type1v2: a clear refusal") {
    FakeKernelConfig config;
    config.type1v2 = false;
    auto container = ContainerFd::open(std::make_shared<FakeVfioSys>(config));
    REQUIRE_FALSE(container.ok());
    CHECK_THAT(container.error().message(), Catch::Contains("type1v2 IOMMU"));
    CHECK_THAT(container.error().message(), Catch::Contains("modprobe vfio_iommu_type1"));
  }
  SECTION("another API version") {
    FakeKernelConfig config;
    config.api_version = 1;
    auto container = ContainerFd::open(std::make_shared<FakeVfioSys>(config));
    REQUIRE_FALSE(container.ok());
    CHECK_THAT(container.error().message(), Catch::Contains("API version 1"));
  }
  SECTION("no /dev/vfio/vfio") {
    auto fake = std::make_shared<FakeVfioSys>();
    fake->inject_open("/dev/vfio/vfio", ENOENT);
    auto container = ContainerFd::open(fake);
    REQUIRE_FALSE(container.ok());
    CHECK(container.error().errno_value() == ENOENT);
    CHECK_THAT(container.error().message(), Catch::Contains("modprobe vfio-pci"));
  }
  SECTION("an extension check failing keeps its errno") {
    auto fake = std::make_shared<FakeVfioSys>();
    fake->inject(VFIO_CHECK_EXTENSION, 2, EIO);
    auto container = ContainerFd::open(fake);
    REQUIRE_FALSE(container.ok());
    CHECK(container.error().errno_value() == EIO);
    CHECK_THAT(container.error().message(),
               Catch::Contains("VFIO_CHECK_EXTENSION(VFIO_UNMAP_ALL)"));
  }
}

TEST_CASE("container: several groups, VFIO_SET_IOMMU once") {
  auto fake = std::make_shared<FakeVfioSys>();
  fake->add_group(3, {});
  fake->add_group(4, {});
  auto container = ContainerFd::open(fake);
  REQUIRE(container.ok());
  auto g3 = Group::open(fake, 3, "/nonexistent");
  auto g4 = Group::open(fake, 4, "/nonexistent");
  REQUIRE(g3.ok());
  REQUIRE(g4.ok());
  REQUIRE(container->attach(*g3).ok());
  REQUIRE(container->attach(*g4).ok());
  CHECK(container->iommu_set());
  CHECK(fake->calls(VFIO_SET_IOMMU) == 1);
  CHECK(fake->calls(VFIO_GROUP_SET_CONTAINER) == 2);
  CHECK(fake->group_container(3) == 0);
  CHECK(fake->group_container(4) == 0);
  CHECK(g3->attached());
  {
    Group moved = std::move(*g4);
    CHECK(moved.attached());
    CHECK_FALSE(g4->attached());
  }  // destroyed: detaches
  CHECK(fake->group_container(4) == -1);
  CHECK(fake->group_container(3) == 0);
}

TEST_CASE("container: a failing VFIO_SET_IOMMU takes the group out again") {
  auto fake = std::make_shared<FakeVfioSys>();
  fake->add_group(3, {});
  fake->inject(VFIO_SET_IOMMU, 1, EPERM);
  auto container = ContainerFd::open(fake);
  REQUIRE(container.ok());
  auto group = Group::open(fake, 3, "/nonexistent");
  REQUIRE(group.ok());
  auto st = container->attach(*group);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().errno_value() == EPERM);
  CHECK_THAT(st.error().message(), Catch::Contains("interrupt remapping"));
  CHECK_FALSE(group->attached());
  CHECK(fake->group_container(3) == -1);
}

TEST_CASE("group: not viable names the devices that are not bound to vfio-pci") {
  FakeSysfs sysfs;
  sysfs.add_device("0000:00:02.0", 5, "vfio-pci");
  sysfs.add_device("0000:00:02.1", 5, "snd_hda_intel");
  sysfs.add_device("0000:00:02.2", 5, "e1000e");
  sysfs.add_device("0000:00:02.3", 5, "");
  auto fake = std::make_shared<FakeVfioSys>();
  fake->add_group(5, {}, /*viable=*/false);
  auto group = Group::open(fake, 5, sysfs.root());
  REQUIRE_FALSE(group.ok());
  const std::string message = group.error().message();
  CHECK_THAT(message, Catch::Contains("IOMMU group 5 is not viable"));
  CHECK_THAT(message, Catch::Contains("0000:00:02.1 (bound to snd_hda_intel)"));
  CHECK_THAT(message, Catch::Contains("0000:00:02.2 (bound to e1000e)"));
  CHECK_THAT(message, !Catch::Contains("0000:00:02.0"));
  CHECK_THAT(message, !Catch::Contains("0000:00:02.3"));  // no driver does not spoil viability
  CHECK_THAT(message, Catch::Contains("driver_override"));
}

TEST_CASE("group: describing an unviable group") {
  CHECK_THAT(describe_unviable_group(2, {{"0000:00:03.0", ""}, {"0000:00:03.1", "vfio-pci"}}),
             Catch::Contains("0000:00:03.0 (no driver) is not bound"));
  CHECK_THAT(describe_unviable_group(2, {{"0000:00:03.1", "vfio-pci"}}),
             Catch::Contains("all 1 of its devices are bound to vfio-pci"));
}

TEST_CASE("group: open errors say what to do") {
  auto fake = std::make_shared<FakeVfioSys>();
  auto missing = Group::open(fake, 9, "/nonexistent");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().errno_value() == ENOENT);
  CHECK_THAT(missing.error().message(), Catch::Contains("IOMMU group 9: no /dev/vfio/9"));
  fake->add_group(9, {});
  fake->inject_open("/dev/vfio/9", EBUSY);
  auto busy = Group::open(fake, 9, "/nonexistent");
  REQUIRE_FALSE(busy.ok());
  CHECK_THAT(busy.error().message(), Catch::Contains("in use by another process"));
}

TEST_CASE("sysfs: resolving a device path") {
  FakeSysfs sysfs;
  sysfs.add_device("0000:00:01.0", 7, "vfio-pci");
  sysfs.add_device("0000:00:04.0", 8, "e1000e");
  sysfs.add_device("0000:00:05.0", 9, "");
  sysfs.add_device("0000:00:06.0", std::nullopt, "");

  auto ok = resolve_pci_device(sysfs.device_path("0000:00:01.0") + "/");
  REQUIRE(ok.ok());
  CHECK(ok->bdf == "0000:00:01.0");
  CHECK(ok->group == 7);
  CHECK(ok->driver == "vfio-pci");

  auto not_pci = resolve_pci_device("/dev/sda");
  REQUIRE_FALSE(not_pci.ok());
  CHECK_THAT(not_pci.error().message(), Catch::Contains("'/dev/sda' is not a PCI device path"));

  auto absent = resolve_pci_device(sysfs.device_path("0000:00:1f.7"));
  REQUIRE_FALSE(absent.ok());
  CHECK(absent.error().kind() == ErrorKind::kInvalid);  // a path the user named: 400, not 404
  CHECK_THAT(absent.error().message(), Catch::Contains("does not exist"));

  auto other = resolve_pci_device(sysfs.device_path("0000:00:04.0"));
  REQUIRE_FALSE(other.ok());
  CHECK_THAT(other.error().message(),
             Catch::Contains("not bound to vfio-pci (it is bound to e1000e)"));
  CHECK_THAT(
      other.error().message(),
      Catch::Contains("echo vfio-pci > " + sysfs.device_path("0000:00:04.0") + "/driver_override"));
  CHECK_THAT(other.error().message(), Catch::Contains("/driver/unbind"));

  auto none = resolve_pci_device(sysfs.device_path("0000:00:05.0"));
  REQUIRE_FALSE(none.ok());
  CHECK_THAT(none.error().message(), Catch::Contains("(it has no driver)"));
  CHECK_THAT(none.error().message(), !Catch::Contains("unbind"));

  auto no_group = resolve_pci_device(sysfs.device_path("0000:00:06.0"));
  REQUIRE_FALSE(no_group.ok());
  CHECK_THAT(no_group.error().message(), Catch::Contains("no IOMMU group (is the IOMMU enabled?"));
  CHECK_THAT(no_group.error().message(), Catch::Contains("intel_iommu=on"));
}

TEST_CASE("sysfs: PCI addresses") {
  CHECK(is_pci_address("0000:00:01.0"));
  CHECK(is_pci_address("abcd:ef:1f.7"));
  CHECK_FALSE(is_pci_address("0000:00:01.8"));
  CHECK_FALSE(is_pci_address("00:01.0"));
  CHECK_FALSE(is_pci_address("0000:00:01.0x"));
  CHECK_FALSE(is_pci_address("0000:0G:01.0"));
}

// A fake edu-like device: config space, a BAR whose middle page holds the MSI-X table (so only
// the areas around it may be mmapped), and INTx/MSI interrupts.
FakeDevice edu(const std::string& bdf) {
  FakeDevice device;
  device.bdf = bdf;
  device.regions.push_back(
      {VFIO_PCI_BAR0_REGION_INDEX,
       VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP,
       0x100000, std::vector<SparseMmapArea>{{0x0, 0x3000}, {0x4000, 0xfc000}}, false});
  device.regions.push_back({VFIO_PCI_BAR2_REGION_INDEX,
                            VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_MMAP, 0x1000,
                            std::nullopt, true});
  device.regions.push_back({VFIO_PCI_CONFIG_REGION_INDEX,
                            VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE, 0x1000,
                            std::nullopt, false});
  device.irqs = {{VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE, 1},
                 {VFIO_PCI_MSI_IRQ_INDEX, VFIO_IRQ_INFO_EVENTFD, 1}};
  return device;
}

struct DeviceRig {
  std::shared_ptr<FakeVfioSys> fake = std::make_shared<FakeVfioSys>();
  std::optional<ContainerFd> container;
  std::optional<Group> group;

  DeviceRig() {
    fake->add_group(1, {edu("0000:00:01.0")});
    auto c = ContainerFd::open(fake);
    REQUIRE(c.ok());
    container.emplace(std::move(*c));
    auto g = Group::open(fake, 1, "/nonexistent");
    REQUIRE(g.ok());
    group.emplace(std::move(*g));
  }
};

TEST_CASE("device: needs the container's IOMMU, then reports info, regions and IRQs") {
  DeviceRig rig;
  auto early = DeviceFd::open(rig.fake, *rig.group, "0000:00:01.0");
  REQUIRE_FALSE(early.ok());
  CHECK(early.error().errno_value() == EINVAL);
  REQUIRE(rig.container->attach(*rig.group).ok());

  auto unknown = DeviceFd::open(rig.fake, *rig.group, "0000:00:09.0");
  REQUIRE_FALSE(unknown.ok());
  CHECK_THAT(unknown.error().message(), Catch::Contains("VFIO device 0000:00:09.0"));

  auto device = DeviceFd::open(rig.fake, *rig.group, "0000:00:01.0");
  REQUIRE(device.ok());
  CHECK(device->name() == "0000:00:01.0");
  CHECK(device->info().is_pci());
  CHECK(device->info().num_regions == VFIO_PCI_CONFIG_REGION_INDEX + 1);
  CHECK(device->info().num_irqs == 2);

  const int before = rig.fake->calls(VFIO_DEVICE_GET_REGION_INFO);
  auto bar0 = device->region_info(VFIO_PCI_BAR0_REGION_INDEX);
  REQUIRE(bar0.ok());
  CHECK(rig.fake->calls(VFIO_DEVICE_GET_REGION_INFO) - before == 2);  // argsz grew once
  CHECK(bar0->size == 0x100000);
  CHECK(bar0->offset == FakeVfioSys::region_offset(VFIO_PCI_BAR0_REGION_INDEX));
  CHECK(bar0->mmappable());
  REQUIRE(bar0->sparse_areas.has_value());
  REQUIRE(bar0->sparse_areas->size() == 2);
  CHECK((*bar0->sparse_areas)[1].offset == 0x4000);
  CHECK((*bar0->sparse_areas)[1].size == 0xfc000);
  CHECK_FALSE(bar0->msix_mappable);

  auto bar2 = device->region_info(VFIO_PCI_BAR2_REGION_INDEX);
  REQUIRE(bar2.ok());
  CHECK(bar2->msix_mappable);
  CHECK_FALSE(bar2->sparse_areas.has_value());

  const int plain_before = rig.fake->calls(VFIO_DEVICE_GET_REGION_INFO);
  auto config = device->region_info(VFIO_PCI_CONFIG_REGION_INDEX);
  REQUIRE(config.ok());
  CHECK(rig.fake->calls(VFIO_DEVICE_GET_REGION_INFO) - plain_before == 1);
  CHECK_FALSE(config->mmappable());

  auto missing = device->region_info(VFIO_PCI_BAR5_REGION_INDEX);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().errno_value() == EINVAL);

  auto msi = device->irq_info(VFIO_PCI_MSI_IRQ_INDEX);
  REQUIRE(msi.ok());
  CHECK(msi->count == 1);
  CHECK((msi->flags & VFIO_IRQ_INFO_EVENTFD) != 0);
  CHECK_FALSE(device->irq_info(VFIO_PCI_MSIX_IRQ_INDEX).ok());
}

TEST_CASE("device: region access and mmap go through the seam, inside the region") {
  DeviceRig rig;
  REQUIRE(rig.container->attach(*rig.group).ok());
  auto device = DeviceFd::open(rig.fake, *rig.group, "0000:00:01.0");
  REQUIRE(device.ok());
  auto config = device->region_info(VFIO_PCI_CONFIG_REGION_INDEX);
  REQUIRE(config.ok());
  const std::uint16_t command = 0x0006;
  REQUIRE(device->write(*config, 0x04, &command, sizeof(command)).ok());
  std::uint16_t back = 0;
  REQUIRE(device->read(*config, 0x04, &back, sizeof(back)).ok());
  CHECK(back == command);
  auto outside = device->read(*config, 0xfff, &back, sizeof(back));
  REQUIRE_FALSE(outside.ok());
  CHECK(outside.error().errno_value() == EFAULT);
  CHECK_THAT(outside.error().message(), Catch::Contains("0000:00:01.0 region 7"));

  auto bar0 = device->region_info(VFIO_PCI_BAR0_REGION_INDEX);
  REQUIRE(bar0.ok());
  const std::uint32_t ident = 0x010000ed;
  REQUIRE(device->write(*bar0, 0x4000, &ident, sizeof(ident)).ok());
  auto mapping = device->mmap(*bar0, 0x4000, 0x1000, PROT_READ | PROT_WRITE);
  REQUIRE(mapping.ok());
  std::uint32_t seen = 0;
  std::memcpy(&seen, mapping->data(), sizeof(seen));
  CHECK(seen == ident);
  auto table = device->mmap(*bar0, 0x3000, 0x1000, PROT_READ);
  REQUIRE_FALSE(table.ok());
  CHECK_THAT(table.error().message(), Catch::Contains("not inside one of the region's 2"));
  CHECK_FALSE(device->mmap(*config, 0, 0x1000, PROT_READ).ok());

  auto bar2 = device->region_info(VFIO_PCI_BAR2_REGION_INDEX);
  REQUIRE(bar2.ok());
  CHECK_FALSE(device->write(*bar2, 0, &ident, sizeof(ident)).ok());
}

}  // namespace
}  // namespace keel::vfio
