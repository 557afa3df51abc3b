#include "vmm/cli.hpp"

#include <catch2/catch.hpp>

namespace keel::vmm {
namespace {

Result<CliRequest> parse(std::vector<std::string> args) { return parse_command_line(args); }

std::string error_of(std::vector<std::string> args) {
  auto r = parse(std::move(args));
  REQUIRE_FALSE(r.ok());
  return r.error().context();
}

TEST_CASE("cli parses cloud-hypervisor style options") {
  auto r = parse({"--kernel", "/k", "--initramfs", "/i", "--cmdline", "console=ttyS0 quiet",
                  "--cpus", "boot=2,max=6", "--api-socket", "path=/tmp/k.sock", "--memory",
                  "size=1G,shared=on,hugepages=off", "--serial",
                  "file=/tmp/s.log", "-vv", "--no-reboot"});
  REQUIRE(r.ok());
  const VmConfig& c = r->config;
  CHECK(c.kernel == "/k");
  CHECK(c.initramfs == "/i");
  CHECK(c.cmdline == "console=ttyS0 quiet");
  CHECK(c.boot_vcpus == 2);
  CHECK(c.max_vcpus == 6);
  CHECK(c.memory_size == kGiB);
  CHECK(c.memory_shared);
  CHECK_FALSE(c.memory_hugepages);
  CHECK(c.serial == SerialMode::kFile);
  CHECK(c.serial_file == "/tmp/s.log");
  CHECK(c.exit_on_reboot);
  CHECK(r->verbosity == 2);
}

TEST_CASE("cli: --memory hotplug_method=virtio-mem|acpi,hotplug_size=SIZE; other methods refused") {
  auto r = parse({"--kernel", "/k", "--memory", "size=256M,hotplug_method=virtio-mem,hotplug_size=768M"});
  REQUIRE(r.ok());
  CHECK(r->config.memory_size == 256 * kMiB);
  CHECK(r->config.memory_hotplug_size == 768 * kMiB);
  CHECK(r->config.memory_hotplug_method == MemoryHotplug::kVirtioMem);
  auto acpi = parse({"--kernel", "/k", "--memory", "size=1G,hotplug_method=acpi,hotplug_size=1G"});
  REQUIRE(acpi.ok());
  CHECK(acpi->config.memory_hotplug_method == MemoryHotplug::kAcpi);
  CHECK(acpi_memory_slot_size(1ULL << 30, 1ULL << 30) == 128 * kMiB);   // 8 DIMMs
  CHECK(acpi_memory_slot_size(8ULL << 30, 1ULL << 30) == 128 * kMiB);   // 64, the most
  CHECK(acpi_memory_slot_size(16ULL << 30, 1ULL << 30) == 256 * kMiB);  // then larger DIMMs
  CHECK(acpi_memory_slot_size(8320ULL << 20, 1ULL << 30) == 256 * kMiB);  // the last shorter
  // Boot RAM ending at 64 GiB or above: Linux's blocks may be 2 GiB, and so are the DIMMs.
  CHECK(acpi_memory_slot_size(16ULL << 30, 64ULL << 30) == 2048 * kMiB);
  CHECK(parse({"--kernel", "/k", "--memory", "size=1G,hotplug_method=acpi,hotplug_size=8320M"})
            .ok());
  CHECK(error_of({"--kernel", "/k", "--memory", "size=1G,hotplug_method=dimm,hotplug_size=1G"}) ==
        "--memory: hotplug_method=dimm is not one Keel has; give hotplug_method=virtio-mem or acpi");
  CHECK(error_of({"--kernel", "/k", "--memory", "size=1G,hotplug_size=100M"}).find(
            "not a multiple of 128 MiB") != std::string::npos);
}

TEST_CASE("cli defaults") {
  auto r = parse({"--kernel", "/k"});
  REQUIRE(r.ok());
  CHECK(r->config.boot_vcpus == 1);
  CHECK(r->config.memory_size == 512 * kMiB);
  CHECK(r->config.cmdline == "console=ttyS0");
  CHECK(r->config.serial == SerialMode::kTty);
  CHECK_FALSE(r->config.initramfs.has_value());
  CHECK(parse({"--kernel", "/k", "--serial", "off"})->config.serial == SerialMode::kOff);
}

TEST_CASE("cli rejects wrong and conflicting options with a one-line reason") {
  CHECK(error_of({}).find("no payload: give --kernel PATH, or --api-socket") == 0);
  CHECK(error_of({"--initramfs", "/i"}) == "--initramfs and --cmdline need --kernel");
  CHECK(error_of({"--kernel", "/k", "--memory", "size=0"}) ==
        "--memory: size=0 gives the guest no RAM; use e.g. size=512M");
  CHECK(error_of({"--kernel", "/k", "--memory", "size=12X"}).find("unknown unit") != std::string::npos);
  CHECK(error_of({"--kernel", "/k", "--memory", "size=1G,numa=on"}) ==
        "--memory: unknown option \"numa\" (known: size, shared, hugepages, hotplug_method, hotplug_size)");
  CHECK(error_of({"--kernel", "/k", "--memory", "shared=yes"}) == "--memory: shared=yes must be on or off");
  CHECK(error_of({"--kernel", "/k", "--cpus", "boot=0"}) == "--cpus: boot=0 is out of range; use 1 to 254");
  CHECK(error_of({"--kernel", "/k", "--cpus", "boot=300"}).find("out of range") != std::string::npos);
  CHECK(error_of({"--kernel", "/k", "--cpus", "4"}) == "--cpus: \"4\" is not key=value");
  CHECK(error_of({"--kernel", "/k", "--cpus", "boot=two"}) == "--cpus: boot=two is not a number of vCPUs");
  CHECK(error_of({"--kernel", "/k", "--cpus", "boot=1,boot=2"}) == "--cpus: \"boot\" given twice");
  CHECK(error_of({"--kernel", "/k", "--cpus", "boot=2,max=1"}) ==
        "--cpus: max=1 is below boot=2; give max at least boot");
  CHECK(error_of({"--kernel", "/k", "--cpus", "boot=2,max=255"}) ==
        "--cpus: max=255 is out of range; use 1 to 254");
  CHECK(error_of({"--kernel", "/k", "--cpus", "boot=1,max=2"}) ==
        "--cpus: max=2 above boot needs --api-socket: only vm.resize plugs vCPUs");
  CHECK(error_of({"--kernel", "/k", "--cpus", "max=4"}) ==
        "--cpus: boot is missing; give boot=N, e.g. boot=2");
  CHECK(error_of({"--kernel", "/k", "--serial", "pty"}) == "--serial: \"pty\" is not tty, off or file=PATH");
  CHECK(error_of({"--kernel", "/k", "--bogus"}).find("--bogus") != std::string::npos);
  CHECK(error_of({"--kernel"}).find("kernel") != std::string::npos);
}

}  // namespace
}  // namespace keel::vmm

namespace keel::vmm {
namespace {

TEST_CASE("cli --device is repeatable with id and dma_mapping") {
  auto r = parse_command_line({"--kernel", "/k", "--device", "path=/sys/bus/pci/devices/0000:00:01.0/",
                               "--device", "path=/sys/bus/pci/devices/0000:00:02.0,id=nic,dma_mapping=eager,iommu=on,dma_low_water=3"});
  REQUIRE(r.ok());
  REQUIRE(r->config.devices.size() == 2);
  CHECK(r->config.devices[0].path == "/sys/bus/pci/devices/0000:00:01.0");
  CHECK(r->config.devices[0].id == "0000:00:01.0");
  CHECK(r->config.devices[0].dma_mapping == vfio::MappingMode::kAuto);
  CHECK(r->config.devices[1].id == "nic");
  CHECK(r->config.devices[1].dma_mapping == vfio::MappingMode::kEager);
  CHECK_FALSE(r->config.devices[0].iommu);
  CHECK(r->config.devices[1].iommu);
  CHECK(r->config.devices[0].dma_low_water == 0);
  CHECK(r->config.devices[1].dma_low_water == 3);
}

TEST_CASE("cli --device errors") {
  auto err = [](std::vector<std::string> args) {
    auto r = parse_command_line(args);
    REQUIRE_FALSE(r.ok());
    return r.error().context();
  };
  CHECK(err({"--kernel", "/k", "--device", "id=x"}).find("path= is required") != std::string::npos);
  CHECK(err({"--kernel", "/k", "--device", "path=/a,dma_mapping=lots"}) ==
        "--device: dma_mapping: 'lots' is not a DMA mapping mode; give auto, eager or lazy");
  CHECK(err({"--kernel", "/k", "--device", "path=/a,iommu=yes"}) == "--device: iommu=yes is not on or off");
  CHECK(err({"--kernel", "/k", "--device", "path=/a,iommu=on,dma_low_water=-1"}) ==
        "--device: dma_low_water=-1 is not a number from 0 to 4294967295");
  CHECK(err({"--kernel", "/k", "--device", "path=/a,iommu=on,dma_low_water=4294967296"}).find(
            "is not a number") != std::string::npos);
  CHECK(err({"--kernel", "/k", "--device", "path=/a,dma_low_water=2"}) ==
        "--device: dma_low_water=2 applies to lazy mapping, which needs the device behind the "
        "virtual IOMMU (iommu=on, or \"iommu\": true)");
  CHECK(err({"--kernel", "/k", "--device", "path=/a,id=x", "--device", "path=/b,id=x"}) ==
        "--device: id \"x\" is used twice");
  CHECK(err({"--kernel", "/k", "--device", "path=/a", "--device", "path=/a/"}) == "--device: /a is given twice");
  CHECK(err({"--kernel", "/k", "--device", "path=/a,bogus=1"}).find("unknown option \"bogus\"") != std::string::npos);
}

}  // namespace
}  // namespace keel::vmm

namespace keel::vmm {
namespace {
TEST_CASE("cli --disk is repeatable, with cloud-hypervisor's options and _disk<N> ids") {
  auto r = parse({"--kernel", "/k", "--disk", "path=/img/root.img", "--disk",
                  "path=/img/data.img,readonly=on,direct=on,num_queues=4,queue_size=256,id=data"});
  REQUIRE(r.ok());
  REQUIRE(r->config.disks.size() == 2);
  CHECK(r->config.disks[0] == DiskConfig{"/img/root.img", false, false, 1, 128, "_disk0"});
  CHECK(r->config.disks[1] == DiskConfig{"/img/data.img", true, true, 4, 256, "data"});
  CHECK(error_of({"--kernel", "/k", "--disk", "readonly=on"}).find("--disk: path is required") == 0);
  CHECK(error_of({"--kernel", "/k", "--disk", "path=/a,num_queues=0"}) ==
        "--disk: num_queues=0 is not 1 to 16");
  CHECK(error_of({"--kernel", "/k", "--disk", "path=/a,queue_size=100"}) ==
        "--disk: queue_size=100 is not a power of two from 2 to 32768 (e.g. 128)");
  CHECK(error_of({"--kernel", "/k", "--disk", "path=/a,queue_size=70000"}) ==
        "--disk: queue_size=70000 is not a number from 0 to 65535");
  CHECK(error_of({"--kernel", "/k", "--disk", "path=/a,readonly=maybe"}) ==
        "--disk: readonly=maybe must be on or off");
  CHECK(error_of({"--kernel", "/k", "--disk", "path=/a,cache=none"}).find("unknown option \"cache\"") !=
        std::string::npos);
  CHECK(error_of({"--kernel", "/k", "--disk", "path=/a", "--disk", "path=/a"}) ==
        "disk _disk1: /a is given twice; one image is one disk");
  CHECK(error_of({"--kernel", "/k", "--disk", "path=/a,id=x", "--disk", "path=/b,id=x"}) ==
        "disk x: id \"x\" is used twice");
}

TEST_CASE("cli --net takes cloud-hypervisor's tap, fd, mac, ip and mask") {
  auto r = parse({"--kernel", "/k", "--net", "tap=tap0,mac=52:54:00:12:34:56,ip=192.168.249.1,mask=255.255.255.0",
                  "--net", "fd=7,id=uplink"});
  REQUIRE(r.ok());
  REQUIRE(r->config.nets.size() == 2);
  CHECK(r->config.nets[0] == NetConfig{"tap0", -1, "52:54:00:12:34:56", "192.168.249.1",
                                       "255.255.255.0", 2, 256, "_net0"});
  CHECK(r->config.nets[1] == NetConfig{"", 7, "", "", "", 2, 256, "uplink"});
  CHECK(error_of({"--kernel", "/k", "--net", "tap=t0,fd=7"}) ==
        "--net: tap=t0 and fd=7 both name the link; give one");
  CHECK(error_of({"--kernel", "/k", "--net", "fd=1"}).find("standard input, output or error") !=
        std::string::npos);
  CHECK(error_of({"--kernel", "/k", "--net", "fd=7,ip=10.0.0.1,mask=255.0.0.0"}).find("ip= with fd=7") !=
        std::string::npos);
  CHECK(error_of({"--kernel", "/k", "--net", "tap=t0,mac=zz"}).find("mac=zz is not a unicast MAC") !=
        std::string::npos);
  CHECK(error_of({"--kernel", "/k", "--net", "tap=t0,ip=10.0.0.1"}).find("ip and mask go together") !=
        std::string::npos);
  CHECK(error_of({"--kernel", "/k", "--net", "tap=t0,num_queues=4"}).find("multiqueue is not supported") !=
        std::string::npos);
  CHECK(error_of({"--kernel", "/k", "--net", "tap=t0", "--net", "tap=t0"}) ==
        "net _net1: the same TAP is given twice; one TAP is one link");
  CHECK(error_of({"--kernel", "/k", "--net", "tap=averyveryverylongname"}).find("longer than an interface name") !=
        std::string::npos);
}

TEST_CASE("cli --api-socket starts idle without a payload") {
  auto r = parse_command_line({"--api-socket", "path=/tmp/k.sock"});
  REQUIRE(r.ok());
  CHECK(r->api_socket == "/tmp/k.sock");
  CHECK_FALSE(r->has_payload);
  auto both = parse_command_line({"--api-socket", "/tmp/k.sock", "--kernel", "/k"});
  REQUIRE(both.ok());
  CHECK(both->has_payload);
  CHECK_FALSE(parse_command_line({"--api-socket", "path="}).ok());
}

TEST_CASE("cli: empty values and over-long socket paths are usage errors, named") {
  // "--kernel=" must not take the next option as its value.
  CHECK(error_of({"--kernel=", "--api-socket=/tmp/k.sock"}) == "--kernel: the value after '=' is empty");
  CHECK(error_of({"--api-socket=", "--kernel", "/k"}) == "--api-socket: the value after '=' is empty");
  CHECK(error_of({"--kernel", "", "--api-socket", "/tmp/k.sock"}) == "--kernel: the value is empty");
  const std::string long_path = "/tmp/" + std::string(120, 'a') + ".sock";
  CHECK(error_of({"--api-socket", "path=" + long_path}) ==
        "--api-socket: the path is 130 bytes; a Unix socket path takes at most 107 (use a "
        "shorter directory)");
  // Sizes no guest can have, refused before anything is built.
  CHECK(error_of({"--kernel", "/k", "--memory", "size=20000T"}).find("is more than Keel's 16 TiB") !=
        std::string::npos);
  CHECK(error_of({"--kernel", "/k", "--memory", "size=4M"}).find("too small to boot Linux") !=
        std::string::npos);
}
}  // namespace
}  // namespace keel::vmm
