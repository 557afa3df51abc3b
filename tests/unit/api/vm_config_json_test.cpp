#include "api/vm_config_json.hpp"

#include <catch2/catch.hpp>

#include "api/json_text.hpp"
#include "api/response.hpp"
#include "test_values.hpp"

namespace keel::api {
namespace {

using nlohmann::json;

// VmConfig's size changes when a field is added: then vm_config_json.cpp (both directions),
// api/openapi.yaml and test::same_config need the field too.
static_assert(sizeof(vmm::VmConfig) == 408, "VmConfig changed: update the API's JSON model");

json minimal() { return json{{"payload", {{"kernel", "/boot/vmlinuz"}}}}; }

std::string error_for(const json& body) {
  auto config = vm_config_from_json(body);
  REQUIRE_FALSE(config.ok());
  CHECK(http_status(config.error()) == 400);
  return error_message(config.error());
}

TEST_CASE("a minimal VmConfig gets Keel's defaults") {
  auto config = vm_config_from_json(minimal());
  REQUIRE(config.ok());
  const vmm::VmConfig defaults;
  CHECK(config->kernel == "/boot/vmlinuz");
  CHECK(config->boot_vcpus == defaults.boot_vcpus);
  CHECK(config->memory_size == defaults.memory_size);
  CHECK(config->cmdline == "console=ttyS0");
  CHECK_FALSE(config->initramfs);
  CHECK(config->serial == vmm::SerialMode::kTty);
  CHECK(config->devices.empty());
  CHECK_FALSE(config->exit_on_reboot);
}

TEST_CASE("VmConfig -> JSON -> VmConfig is the identity") {
  std::vector<vmm::VmConfig> configs{test::full_config()};
  vmm::VmConfig minimal_config;
  minimal_config.kernel = "/k";
  configs.push_back(minimal_config);
  for (vmm::SerialMode mode : {vmm::SerialMode::kTty, vmm::SerialMode::kOff}) {
    vmm::VmConfig c = test::full_config();
    c.serial = mode;
    c.serial_file.clear();
    c.initramfs.reset();
    configs.push_back(c);
  }
  vmm::VmConfig auto_mapping = test::full_config();
  auto_mapping.devices[0].dma_mapping = vfio::MappingMode::kAuto;
  configs.push_back(auto_mapping);
  vmm::VmConfig growing = minimal_config;
  growing.memory_hotplug_size = 768 * kMiB;
  configs.push_back(growing);

  for (const vmm::VmConfig& original : configs) {
    const json j = vm_config_to_json(original);
    INFO(j.dump());
    auto back = vm_config_from_json(j);
    REQUIRE(back.ok());
    CHECK(test::same_config(original, *back));
    // And the JSON is stable: JSON -> VmConfig -> JSON gives it back unchanged.
    CHECK(vm_config_to_json(*back) == j);
  }
}

TEST_CASE("VmConfig JSON has cloud-hypervisor's shape, leaving out what is not set") {
  const json j = vm_config_to_json(test::full_config());
  CHECK(j == json::parse(R"({
    "cpus": {"boot_vcpus": 3, "max_vcpus": 6},
    "memory": {"size": 3221225472, "shared": true, "hugepages": true},
    "payload": {"kernel": "/boot/vmlinuz", "cmdline": "console=ttyS0 quiet",
                "initramfs": "/boot/initrd.img"},
    "serial": {"mode": "File", "file": "/tmp/serial.log"},
    "devices": [
      {"path": "/sys/bus/pci/devices/0000:01:00.0", "id": "nic0", "iommu": false,
       "dma_mapping": "eager", "backend": "auto", "dma_low_water": 0},
      {"path": "/sys/bus/pci/devices/0000:02:00.0", "id": "0000:02:00.0", "iommu": true,
       "dma_mapping": "lazy", "backend": "iommufd", "dma_low_water": 0}],
    "disks": [
      {"path": "/images/root.img", "readonly": false, "direct": true, "iommu": false,
       "num_queues": 2, "queue_size": 256, "id": "_disk0"},
      {"path": "/images/data.img", "readonly": true, "direct": false, "iommu": false,
       "num_queues": 1, "queue_size": 128, "id": "data"}],
    "net": [
      {"tap": "tap0", "ip": "192.168.249.1", "mask": "255.255.255.0", "mac": "52:54:00:12:34:56",
       "num_queues": 2, "queue_size": 256, "iommu": false, "id": "_net0"}],
    "iommu": true,
    "rng": {"src": "/dev/urandom", "iommu": false},
    "vsock": {"cid": 3, "socket": "/run/keel.vsock", "iommu": false, "id": "_vsock0"},
    "fs": [{"tag": "myfs", "socket": "/run/virtiofsd.sock", "num_queues": 1, "queue_size": 512,
            "id": "_fs0", "pci_segment": 1}],
    "platform": {"num_pci_segments": 2},
    "exit_on_reboot": true})"));
  // cloud-hypervisor's schema has strings and objects there, never null: unset means absent.
  vmm::VmConfig plain;
  plain.kernel = "/k";
  const json p = vm_config_to_json(plain);
  CHECK_FALSE(p.contains("vsock"));
  CHECK_FALSE(p.contains("rng"));
  CHECK_FALSE(p.contains("fs"));
  CHECK(p["payload"] == json::parse(R"({"kernel": "/k", "cmdline": "console=ttyS0"})"));
  CHECK(p["serial"] == json::parse(R"({"mode": "Tty"})"));
  vmm::NetConfig by_fd;
  by_fd.id = "n";
  CHECK(net_config_to_json(by_fd) ==
        json::parse(R"({"num_queues": 2, "queue_size": 256, "iommu": false, "id": "n"})"));
}

TEST_CASE("null reads as absent") {
  auto config = vm_config_from_json(json::parse(R"({
    "cpus": null, "memory": null, "serial": null, "devices": null, "exit_on_reboot": null,
    "payload": {"kernel": "/k", "cmdline": null, "initramfs": null, "firmware": null}})"));
  REQUIRE(config.ok());
  CHECK(config->boot_vcpus == 1);
  CHECK(config->cmdline == "console=ttyS0");
  CHECK_FALSE(config->initramfs);
}

TEST_CASE("serial modes: Off and Null both discard, File needs a file") {
  auto with_serial = [](const char* serial) {
    json j = minimal();
    j["serial"] = json::parse(serial);
    return j;
  };
  auto off = vm_config_from_json(with_serial(R"({"mode": "Off"})"));
  auto null = vm_config_from_json(with_serial(R"({"mode": "Null"})"));
  REQUIRE(off.ok());
  REQUIRE(null.ok());
  CHECK(off->serial == vmm::SerialMode::kOff);
  CHECK(null->serial == vmm::SerialMode::kOff);
  CHECK(error_for(with_serial(R"({"mode": "File"})")) ==
        "serial.file is missing: mode \"File\" needs the path of the file that receives the "
        "guest's output");
  CHECK(error_for(with_serial(R"({"mode": "Tty", "file": "/x"})")) ==
        "serial.file: only mode \"File\" writes to a file, and mode is \"Tty\"; remove file or "
        "set mode to \"File\"");
  CHECK(error_for(with_serial(R"({"mode": "Pty"})")) ==
        "serial.mode: \"Pty\" is not a mode Keel has; give \"Tty\", \"File\" (with file), "
        "\"Off\" or \"Null\"");
  CHECK(error_for(with_serial(R"({})")).find("serial.mode is missing") == 0);
  CHECK(error_for(with_serial(R"({"mode": "Tty", "socket": "/s"})"))
            .find("serial.socket: the string \"/s\" asks for a serial console on a socket") == 0);
}

TEST_CASE("wrong types name the field, the value and the fix") {
  json size_string = minimal();
  size_string["memory"] = {{"size", "512M"}};
  CHECK(error_for(size_string) ==
        "memory.size: expected an unsigned 64-bit integer, got the string \"512M\"; give the "
        "guest RAM in bytes, e.g. 536870912 for 512 MiB");
  json size_negative = minimal();
  size_negative["memory"] = {{"size", -1}};
  CHECK(error_for(size_negative) ==
        "memory.size: -1 is negative; give the guest RAM in bytes, e.g. 536870912 for 512 MiB");
  json size_float = minimal();
  size_float["memory"] = {{"size", 1.5}};
  CHECK(error_for(size_float)
            .find("memory.size: expected an unsigned 64-bit integer, got the "
                  "number 1.5") == 0);
  json size_huge = json::parse(R"({"payload": {"kernel": "/k"},
                                   "memory": {"size": 18446744073709551616}})");
  CHECK(error_for(size_huge).find("memory.size: expected an unsigned 64-bit integer") == 0);
  json shared = minimal();
  shared["memory"] = {{"size", 1}, {"shared", "yes"}};
  CHECK(error_for(shared).find("memory.shared: expected true or false, got the string \"yes\"") ==
        0);
  json kernel = json{{"payload", {{"kernel", 5}}}};
  CHECK(error_for(kernel).find("payload.kernel: expected a string, got 5; give the path of a "
                               "bzImage") == 0);
  json cpus = minimal();
  cpus["cpus"] = json::array();
  CHECK(error_for(cpus) == "cpus: expected a JSON object (CpusConfig), got an array");
  json devices = minimal();
  devices["devices"] = json::object();
  CHECK(error_for(devices) == "devices: expected an array of DeviceConfig objects, got an object");
  json device_entry = minimal();
  device_entry["devices"] = json::array({"0000:01:00.0"});
  CHECK(error_for(device_entry) ==
        "devices[0]: expected a JSON object (DeviceConfig), got the string \"0000:01:00.0\"");
  CHECK(error_for(json("text")) ==
        "the body: expected a JSON object (VmConfig), got the string \"text\"");
}

TEST_CASE("ranges and missing fields") {
  json zero = minimal();
  zero["cpus"] = {{"boot_vcpus", 0}};
  CHECK(error_for(zero) == "cpus.boot_vcpus: 0 is out of range; give 1 to 254");
  json many = minimal();
  many["cpus"] = {{"boot_vcpus", 255}};
  CHECK(error_for(many) == "cpus.boot_vcpus: 255 is out of range; give 1 to 254");
  json max254 = minimal();
  max254["cpus"] = {{"boot_vcpus", 254}, {"max_vcpus", 254}};
  CHECK(vm_config_from_json(max254).ok());
  json no_ram = minimal();
  no_ram["memory"] = {{"size", 0}};
  CHECK(error_for(no_ram).find("memory.size: 0 gives the guest no RAM") == 0);
  json no_size = minimal();
  no_size["memory"] = {{"shared", true}};
  CHECK(error_for(no_size).find("memory.size is missing") == 0);
  CHECK(error_for(json::object()).find("payload is missing") == 0);
  CHECK(error_for(json{{"payload", json::object()}}).find("payload.kernel is missing") == 0);
  CHECK(error_for(json{{"payload", {{"kernel", ""}}}}).find("payload.kernel is missing") == 0);
  // Sizes no guest can have are refused at vm.create, with the number and the fix.
  json one = minimal();
  one["memory"] = {{"size", 1}};
  CHECK(error_for(one) == "memory.size: memory size 1 bytes is not a multiple of 4 KiB; round it, "
                          "e.g. --memory size=512M");
  json tiny = minimal();
  tiny["memory"] = {{"size", 4096}};
  CHECK(error_for(tiny).find("is too small to boot Linux") != std::string::npos);
  json huge = minimal();
  huge["memory"] = {{"size", 18446744073709547520ULL}};  // 2^64 - 4096
  CHECK(error_for(huge).find("is more than Keel's 16 TiB") != std::string::npos);
  json odd_hugepages = minimal();
  odd_hugepages["memory"] = {{"size", 17 << 20}, {"hugepages", true}};
  CHECK(error_for(odd_hugepages).find("is not a multiple of 2 MiB") != std::string::npos);
}

TEST_CASE("a NUL inside a string is refused, never stored to be opened cut short") {
  json kernel = minimal();
  kernel["payload"]["kernel"] = std::string("/boot/vmlinuz\0/etc/shadow", 25);
  CHECK(error_for(kernel) == "payload.kernel: contains a NUL character (\\u0000), which no path, "
                             "name or command line may hold; remove it");
  json serial = minimal();
  serial["serial"] = {{"mode", "File"}, {"file", std::string("/tmp/log\0x", 10)}};
  CHECK(error_for(serial).find("serial.file: contains a NUL character") == 0);
}

TEST_CASE("unknown fields are refused by name, at every level") {
  json top = minimal();
  top["memroy"] = {{"size", 1}};
  const std::string message = error_for(top);
  INFO(message);
  CHECK(message.find("memroy: unknown field; VmConfig takes cpus, memory, payload, serial, "
                     "devices, disks, net, vsock, fs, exit_on_reboot") == 0);
  CHECK(message.find("exit_on_reboot, iommu, rng, platform (and, from cloud-hypervisor, watchdog,") !=
        std::string::npos);
  json nested = minimal();
  nested["memory"] = {{"sise", 1}};
  CHECK(error_for(nested).find("memory.sise: unknown field; MemoryConfig takes size, shared, "
                               "hugepages") == 0);
  json device = minimal();
  device["devices"] = json::array({{{"path", "/sys/bus/pci/devices/0000:01:00.0"}, {"bdf", "x"}}});
  CHECK(error_for(device).find("devices[0].bdf: unknown field; DeviceConfig takes path, id, "
                               "iommu, dma_low_water, dma_mapping, backend") == 0);
  json payload = minimal();
  payload["payload"]["kernal"] = "/k";
  CHECK(error_for(payload).find("payload.kernal: unknown field") == 0);
}

TEST_CASE("devices: unique paths and ids, iommu refused, dma_mapping read") {
  json j = minimal();
  j["devices"] = json::parse(R"([
    {"path": "/sys/bus/pci/devices/0000:01:00.0", "dma_mapping": "eager"},
    {"path": "/sys/bus/pci/devices/0000:02:00.0", "id": "gpu", "iommu": false}])");
  auto config = vm_config_from_json(j);
  REQUIRE(config.ok());
  REQUIRE(config->devices.size() == 2);
  CHECK(config->devices[0].id == "0000:01:00.0");
  CHECK(config->devices[0].dma_mapping == vfio::MappingMode::kEager);
  CHECK(config->devices[1].id == "gpu");
  CHECK(config->devices[1].dma_mapping == vfio::MappingMode::kAuto);

  json same_path = minimal();
  same_path["devices"] = json::parse(R"([{"path": "/sys/bus/pci/devices/0000:01:00.0", "id": "a"},
                                         {"path": "/sys/bus/pci/devices/0000:01:00.0/", "id": "b"}])");
  CHECK(error_for(same_path).find("devices[1].path: /sys/bus/pci/devices/0000:01:00.0 is already "
                                  "passed through") == 0);
  json same_id = minimal();
  same_id["devices"] = json::parse(R"([{"path": "/sys/bus/pci/devices/0000:01:00.0", "id": "a"},
                                       {"path": "/sys/bus/pci/devices/0000:02:00.0", "id": "a"}])");
  CHECK(error_for(same_id).find("devices[1].id: \"a\" is used by an earlier entry") == 0);
  json iommu = minimal();
  iommu["devices"] =
      json::parse(R"([{"path": "/sys/bus/pci/devices/0000:01:00.0", "iommu": true}])");
  auto behind = vm_config_from_json(iommu);
  REQUIRE(behind.ok());
  CHECK(behind->devices[0].iommu);
  CHECK(vm_config_to_json(*behind)["devices"][0]["iommu"] == true);
  CHECK(vm_config_to_json(*behind)["iommu"] == true);
  iommu["devices"][0]["dma_low_water"] = 2;
  auto reserve = vm_config_from_json(iommu);
  REQUIRE(reserve.ok());
  CHECK(reserve->devices[0].dma_low_water == 2);
  CHECK(vm_config_to_json(*reserve)["devices"][0]["dma_low_water"] == 2);
  iommu["devices"][0]["dma_low_water"] = 4294967296ULL;
  CHECK(error_for(iommu).find("devices[0].dma_low_water: 4294967296 is more entries") == 0);
  iommu["devices"][0]["dma_low_water"] = 1;
  iommu["devices"][0]["iommu"] = false;
  CHECK(error_for(iommu).find("devices[0]: dma_low_water=1 applies to lazy mapping, which needs the "
                              "device behind the virtual IOMMU") == 0);
  iommu["devices"][0]["iommu"] = "yes";
  CHECK(error_for(iommu).find("devices[0].iommu") == 0);
}

TEST_CASE("cloud-hypervisor's fields are accepted when they ask for nothing Keel lacks") {
  // What cloud-hypervisor itself puts in a config with defaults (its vm.info shape).
  const json ch = json::parse(R"({
    "cpus": {"boot_vcpus": 2, "max_vcpus": 2, "topology": null, "kvm_hyperv": false,
             "max_phys_bits": 46, "affinity": null, "features": {"amx": false}, "nested": true,
             "core_scheduling": "Vm"},
    "memory": {"size": 1073741824, "mergeable": false, "hotplug_method": "Acpi",
               "hotplug_size": null, "hotplugged_size": null, "shared": false,
               "hugepages": false, "hugepage_size": null, "prefault": false, "zones": null,
               "thp": true},
    "payload": {"firmware": null, "kernel": "/k", "cmdline": "console=ttyS0", "initramfs": null,
                "igvm": null, "host_data": null},
    "rate_limit_groups": null, "disks": null, "net": null,
    "rng": {"src": "/dev/urandom", "iommu": false}, "balloon": null, "fs": null, "pmem": null,
    "serial": {"file": null, "mode": "Null", "iommu": null, "socket": null},
    "console": {"file": null, "mode": "Off", "iommu": false, "socket": null},
    "debug_console": {"file": null, "mode": "Off", "iobase": null},
    "devices": [], "user_devices": null, "vdpa": null, "vsock": null, "pvpanic": false,
    "iommu": false, "numa": null, "watchdog": false, "pci_segments": null, "platform": null,
    "tpm": null, "landlock_enable": false, "landlock_rules": null})");
  auto config = vm_config_from_json(ch);
  INFO((config.ok() ? "" : config.error().message()));
  REQUIRE(config.ok());
  CHECK(config->boot_vcpus == 2);
  CHECK(config->memory_size == 1ULL << 30);
  CHECK(config->serial == vmm::SerialMode::kOff);
  // serial was a ConsoleConfig, with iommu, up to cloud-hypervisor v51 (Kata's client sends it).
  json serial_iommu = ch;
  serial_iommu["serial"]["iommu"] = true;
  CHECK(error_for(serial_iommu).find("serial.iommu: true asks for a serial port behind the "
                                     "virtual IOMMU") == 0);
}

TEST_CASE("disks: cloud-hypervisor's DiskConfig, ids defaulting to _disk<N>, and back") {
  json body = minimal();
  body["disks"] = json::parse(R"([
    {"path": "/images/root.img", "readonly": false, "direct": true, "iommu": false,
     "num_queues": 2, "queue_size": 256, "vhost_user": false, "vhost_socket": null,
     "rate_limiter_config": null, "pci_segment": 0, "serial": null, "disable_io_uring": false},
    {"path": "/images/data.img", "readonly": true, "id": "data"}])");
  auto config = vm_config_from_json(body);
  INFO((config.ok() ? "" : config.error().message()));
  REQUIRE(config.ok());
  REQUIRE(config->disks.size() == 2);
  CHECK(config->disks[0] == vmm::DiskConfig{"/images/root.img", false, true, 2, 256, "_disk0"});
  CHECK(config->disks[1] == vmm::DiskConfig{"/images/data.img", true, false, 1, 128, "data"});
  auto again = vm_config_from_json(vm_config_to_json(*config));
  REQUIRE(again.ok());
  CHECK(again->disks == config->disks);
}

TEST_CASE("cloud-hypervisor's fields that ask for something Keel lacks are refused by name") {
  struct Case {
    const char* patch;  // merged into a minimal config
    const char* message_start;
  };
  const Case cases[] = {
      {R"({"iommu": 1})", "iommu: "},
      {R"({"disks": [{"path": "/d.img", "vhost_user": true}]})",
       "disks[0].vhost_user: true asks for a vhost-user disk backend"},
      {R"({"disks": {"path": "/d.img"}})", "disks: expected an array of DiskConfig objects"},
      {R"({"disks": [{"readonly": true}]})", "disks[0].path is missing; give the path of a raw"},
      {R"({"disks": [{"path": "/d.img", "num_queues": 17}]})", "disks[0].num_queues: 17 is not 1 to 16"},
      {R"({"disks": [{"path": "/d.img", "queue_size": 100}]})",
       "disks[0]: queue_size=100 is not a power of two from 2 to 32768"},
      {R"({"disks": [{"path": "/d.img", "id": ""}]})", "disks[0].id: empty; give a name"},
      {R"({"net": [{"tap": "t0", "num_queues": 4}]})", "net[0].num_queues: 4 asks for multiqueue"},
      {R"({"net": [{"tap": "t0", "fds": [3]}]})", "net[0].fds: an array asks for TAP fds, which only vm.add-net"},
      {R"({"net": [{"tap": "t0", "mac": "01:00:5e:00:00:01"}]})",
       "net[0]: mac=01:00:5e:00:00:01 is not a unicast MAC address"},
      {R"({"net": [{"tap": "t0", "mask": "255.255.255.0"}]})", "net[0]: ip and mask go together"},
      {R"({"watchdog": true})", "watchdog: true asks for a watchdog device"},
      {R"({"vsock": {"cid": 3}})", "vsock: cid and socket are required"},
      {R"({"vsock": {"cid": 2, "socket": "/v"}})", "vsock: cid=2 is not a guest's context id"},
      {R"({"vsock": {"cid": 3, "socket": "/v", "iommu": true}})", "vsock.iommu: true asks for a vsock"},
      {R"({"vsock": {"cid": 3, "socket": "/v", "id": ""}})", "vsock.id: empty; give a name"},
      {R"({"vsock": {"cid": 3, "socket": "/v", "port": 1}})", "vsock.port: unknown field"},
      {R"({"console": {"mode": "Tty"}})", "console: an object asks for a virtio or debug console"},
      {R"({"cpus": {"boot_vcpus": 2, "max_vcpus": 1}})",
       "cpus.max_vcpus: 1 is out of range; give boot_vcpus (2) to 254"},
      {R"({"cpus": {"kvm_hyperv": true}})", "cpus.kvm_hyperv: true asks for Hyper-V"},
      {R"({"cpus": {"features": {"amx": true}}})", "cpus.features: an object asks for optional"},
      {R"({"memory": {"size": 536870912, "hotplug_size": 1073741824, "hotplug_method": "Dimm"}})",
       "memory.hotplug_method: \"Dimm\" is not a method; give \"Acpi\" or \"VirtioMem\""},
      {R"({"memory": {"size": 536870912, "hotplug_size": 1073741824, "hotplug_method": "VirtioMem", "hotplugged_size": 4}})",
       "memory.hotplugged_size: 4 asks for memory plugged at boot"},
      {R"({"memory": {"size": 536870912, "thp": false}})",
       "memory.thp: false asks for turning transparent huge pages off"},
      {R"({"memory": {"size": 536870912, "zones": [{"id": "z", "size": 1}]}})",
       "memory.zones: an array asks for memory zones"},
      {R"({"payload": {"kernel": "/k", "firmware": "/fw"}})",
       "payload.firmware: the string \"/fw\" asks for booting firmware"},
  };
  for (const Case& c : cases) {
    INFO(c.patch);
    json j = minimal();
    j.merge_patch(json::parse(c.patch));
    CHECK(error_for(j).find(c.message_start) == 0);
  }
}

// The VmConfig Kata Containers' cloud-hypervisor driver (clh.go, 4.1) sends for a sandbox with
// its defaults: built with the client generated from cloud-hypervisor v51.1's OpenAPI file, whose
// constructors spell every default out.
json kata_vm_config() {
  return json::parse(R"({
    "payload": {"kernel": "/opt/kata/share/kata-containers/vmlinux.container",
                "cmdline": "root=/dev/vda1 rootflags=data=ordered,errors=remount-ro ro rootfstype=ext4 panic=1 no_timer_check noreplace-smp quiet"},
    "platform": {"num_pci_segments": 2, "tdx": false, "sev_snp": false},
    "cpus": {"boot_vcpus": 1, "max_vcpus": 4, "kvm_hyperv": false, "nested": true,
             "topology": {"threads_per_core": 1, "cores_per_die": 4, "dies_per_package": 1,
                          "packages": 1}},
    "memory": {"size": 2147483648, "shared": true, "hugepages": false, "mergeable": false,
               "prefault": false, "thp": true, "hotplug_method": "Acpi",
               "hotplug_size": 8589934592},
    "rng": {"src": "/dev/urandom", "iommu": false},
    "disks": [{"path": "/opt/kata/share/kata-containers/kata-containers.img", "readonly": true,
               "image_type": "Raw", "num_queues": 1, "queue_size": 128, "direct": false,
               "vhost_user": false, "iommu": false, "sparse": true, "backing_files": false}],
    "serial": {"mode": "Off", "iommu": false},
    "console": {"mode": "Off", "iommu": false},
    "vsock": {"cid": 3, "socket": "/run/vc/vm/sandbox/clh.sock", "iommu": false},
    "fs": [{"tag": "kataShared", "socket": "/run/vc/vm/sandbox/virtiofsd.sock",
            "num_queues": 1, "queue_size": 1024, "pci_segment": 1}],
    "iommu": false, "watchdog": false, "pvpanic": false, "landlock_enable": false
  })");
}

TEST_CASE("every field that asks for what Keel lacks is named in one answer") {
  json body = kata_vm_config();
  body["watchdog"] = true;
  body["disks"][0]["vhost_user"] = true;
  body["platform"]["tdx"] = true;
  const std::string message = error_for(body);
  INFO(message);
  CHECK(message.find("3 fields ask for what Keel does not support: (1) ") == 0);
  CHECK(message.find("watchdog: true asks for a watchdog device") != std::string::npos);
  CHECK(message.find("disks[0].vhost_user: true asks for") != std::string::npos);
  CHECK(message.find("platform.tdx: true asks for an Intel TDX guest") != std::string::npos);
}

TEST_CASE("Kata's VmConfig is accepted as it is, with its meaning") {
  // vCPUs up to max_vcpus to plug, the topology Keel's own (one package of single-thread cores,
  // one per possible vCPU), ACPI memory hot-plug, two PCI segments with the share on the
  // second, serial and console off, the image disk raw.
  const json fixed = kata_vm_config();
  auto config = vm_config_from_json(fixed);
  INFO((config.ok() ? "" : config.error().message()));
  REQUIRE(config.ok());
  CHECK(config->boot_vcpus == 1);
  CHECK(config->max_vcpus == 4);
  CHECK(vm_config_to_json(*config)["cpus"]["max_vcpus"] == 4);
  CHECK(config->memory_shared);
  CHECK(config->memory_hotplug_size == 8589934592ULL);
  CHECK(config->memory_hotplug_method == vmm::MemoryHotplug::kAcpi);  // DIMMs, as Kata asks
  CHECK(config->pci_segments == 2);
  CHECK(vm_config_to_json(*config)["platform"]["num_pci_segments"] == 2);
  CHECK(vm_config_to_json(*config)["memory"]["hotplug_method"] == "Acpi");
  CHECK(config->serial == vmm::SerialMode::kOff);
  REQUIRE(config->disks.size() == 1);
  CHECK(config->disks[0].readonly);
  REQUIRE(config->vsock);
  CHECK(config->vsock->cid == 3);
  REQUIRE(config->fs.size() == 1);  // Kata's shared rootfs: its tag, socket and queue
  CHECK(config->fs[0].tag == "kataShared");
  CHECK(config->fs[0].socket == "/run/vc/vm/sandbox/virtiofsd.sock");
  CHECK(config->fs[0].queue_size == 1024);
  CHECK(config->fs[0].id == "_fs0");
  CHECK(config->fs[0].pci_segment == 1);
  const Status valid = vmm::check_vm(*config);  // what vm.create checks next
  INFO((valid.ok() ? "" : valid.error().message()));
  CHECK(valid.ok());

  // A single one reads as before; a body with a wrong value is refused for that first.
  json one = fixed;
  one["watchdog"] = true;
  CHECK(error_for(one).find("watchdog: true asks for a watchdog device, which Keel does not "
                            "support; remove it or send false") == 0);
  json wrong = kata_vm_config();
  wrong["memory"]["size"] = 0;
  CHECK(error_for(wrong).find("memory.size: 0 gives the guest no RAM") == 0);
}

TEST_CASE("cpus.topology is accepted when it is Keel's, named when it is not") {
  json body = minimal();
  body["cpus"] = {{"boot_vcpus", 2}, {"max_vcpus", 2},
                  {"topology", {{"threads_per_core", 1}, {"cores_per_die", 2}}}};
  CHECK(vm_config_from_json(body).ok());
  for (const char* patch : {R"({"threads_per_core": 2, "cores_per_die": 1})",
                            R"({"cores_per_die": 1, "packages": 2})", R"({"dies": 1})",
                            R"({"cores_per_die": 3})"}) {
    INFO(patch);
    json bad = body;
    bad["cpus"]["topology"] = json::parse(patch);
    CHECK(error_for(bad).find("cpus.topology: ") == 0);
    CHECK(error_for(bad).find("\"cores_per_die\": 2") != std::string::npos);
  }
}

TEST_CASE("platform: one segment and nothing Keel lacks") {
  json body = minimal();
  body["platform"] = {{"num_pci_segments", 1}, {"iommu_segments", json::array()},
                      {"tdx", false}, {"sev_snp", false}, {"iommufd", false},
                      {"vfio_p2p_dma", false}, {"uuid", nullptr}};
  CHECK(vm_config_from_json(body).ok());
  const std::pair<const char*, const char*> cases[] = {
      {R"({"iommu_segments": [0]})", "platform.iommu_segments: an array asks for whole PCI segments"},
      {R"({"uuid": "00000000-0000-0000-0000-000000000001"})",
       "platform.uuid: the string \"00000000-0000-0000-0000-000000000001\" asks for an SMBIOS identity"},
      {R"({"tdx": true})", "platform.tdx: true asks for an Intel TDX guest"},
      {R"({"vfio_p2p_dma": true})", "platform.vfio_p2p_dma: true asks for peer-to-peer DMA"},
      {R"({"numa_nodes": 1})", "platform.numa_nodes: unknown field; PlatformConfig takes"},
      {R"([1])", "platform: expected a JSON object (PlatformConfig)"},
  };
  for (const auto& [patch, start] : cases) {
    INFO(patch);
    json bad = minimal();
    bad["platform"] = json::parse(patch);
    CHECK(error_for(bad).find(start) == 0);
  }
}

TEST_CASE("disks: raw images, sparse, no backing files; lock_granularity either way") {
  json body = minimal();
  body["disks"] = json::parse(R"([{"path": "/d.img", "image_type": "Raw", "sparse": true,
                                   "backing_files": false, "lock_granularity": "ByteRange"}])");
  CHECK(vm_config_from_json(body).ok());
  body["disks"][0]["image_type"] = "Qcow2";
  body["disks"][0]["backing_files"] = true;
  const std::string message = error_for(body);
  CHECK(message.find("2 fields ask for what Keel does not support: (1) disks[0].image_type: the "
                     "string \"Qcow2\" asks for a disk image format other than raw") == 0);
  CHECK(message.find("(2) disks[0].backing_files: true asks for qcow2 backing files") !=
        std::string::npos);
  // vm.add-disk alone names them the same way.
  auto disk = disk_config_from_json(body["disks"][0], "", "");
  REQUIRE_FALSE(disk.ok());
  CHECK(disk.error().message().find("2 fields ask for what Keel does not support: (1) "
                                    "image_type: ") == 0);
}

TEST_CASE("device_config JSON round trip") {
  for (const vmm::DeviceConfig& device : test::full_config().devices) {
    const json j = device_config_to_json(device);
    auto back = device_config_from_json(j, "");
    REQUIRE(back.ok());
    CHECK(back->path == device.path);
    CHECK(back->id == device.id);
    CHECK(back->dma_mapping == device.dma_mapping);
  }
}

}  // namespace
}  // namespace keel::api

namespace keel::api {
namespace {

TEST_CASE("rng: cloud-hypervisor's RngConfig gives the VM its virtio-rng") {
  json with = minimal();
  with["rng"] = {{"src", "/dev/urandom"}, {"iommu", false}};
  auto config = vm_config_from_json(with);
  REQUIRE(config.ok());
  CHECK(config->rng_source == "/dev/urandom");
  CHECK(vm_config_to_json(*config)["rng"] == json{{"src", "/dev/urandom"}, {"iommu", false}});
  json default_src = minimal();
  default_src["rng"] = json::object();
  CHECK(vm_config_from_json(default_src)->rng_source == "/dev/urandom");
  json none = minimal();
  none["rng"] = nullptr;
  CHECK_FALSE(vm_config_from_json(none)->rng_source.has_value());
  CHECK(vm_config_to_json(*vm_config_from_json(none))["rng"].is_null());
  json iommu = minimal();
  iommu["rng"] = {{"src", "/dev/urandom"}, {"iommu", true}};
  CHECK(error_for(iommu).find("rng.iommu") == 0);
  json empty = minimal();
  empty["rng"] = {{"src", ""}};
  CHECK(error_for(empty).find("rng.src: empty") == 0);
}

}  // namespace
}  // namespace keel::api
