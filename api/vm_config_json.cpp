#include "api/vm_config_json.hpp"

#include <algorithm>
#include <set>
#include <tuple>

#include "api/json_object_reader.hpp"
#include "memory/guest_memory.hpp"
#include "memory/layout.hpp"
#include "api/json_text.hpp"

namespace keel::api {
namespace {

using nlohmann::json;

constexpr std::string_view kVcpuHint = "the number of vCPUs, 1 to 254, e.g. 2";
constexpr std::string_view kSizeHint = "the guest RAM in bytes, e.g. 536870912 for 512 MiB";

// Shorthands for the cloud-hypervisor fields Keel accepts only when they ask for nothing.
void no_device(JsonObjectReader& r, std::string_view key, std::string_view what) {
  r.accept_if(key, is_empty_array, what, "remove it or send []");
}
void no_object(JsonObjectReader& r, std::string_view key, std::string_view what) {
  r.accept_if(key, is_never, what, "remove it or send null");
}
void off(JsonObjectReader& r, std::string_view key, std::string_view what) {
  r.accept_if(key, is_false, what, "remove it or send false");
}

// cloud-hypervisor's CpuTopology, accepted when it describes what Keel gives the guest: one
// package, one die, single-thread cores, one per vCPU (vmm/cpuid.cpp), max_vcpus of them.
void read_topology(JsonObjectReader& cpus, const json* value, std::uint64_t max_vcpus) {
  if (value == nullptr) {
    return;
  }
  auto field = [value](const char* key, std::uint64_t keel) {
    return !value->contains(key) || (*value)[key].is_null() ||
           ((*value)[key].is_number_integer() && (*value)[key].get<std::int64_t>() >= 0 &&
            (*value)[key].get<std::uint64_t>() == keel);
  };
  const bool known = value->is_object() && std::all_of(value->items().begin(), value->items().end(), [](const auto& item) {
    return item.key() == "threads_per_core" || item.key() == "cores_per_die" ||
           item.key() == "dies_per_package" || item.key() == "packages";
  });
  if (!known || !field("threads_per_core", 1) || !field("cores_per_die", max_vcpus) ||
      !field("dies_per_package", 1) || !field("packages", 1)) {
    cpus.unsupported("topology", describe_json(*value) +
                                     " asks for a CPU topology other than Keel's, which Keel "
                                     "does not support; send {\"threads_per_core\": 1, "
                                     "\"cores_per_die\": " +
                                     std::to_string(max_vcpus) +
                                     ", \"dies_per_package\": 1, \"packages\": 1} (one "
                                     "package of single-thread cores, one per vCPU) or leave it out");
  }
}

Status read_cpus(const json& value, vmm::VmConfig& config, Unsupported& unsupported) {
  KEEL_TRY(auto r, JsonObjectReader::open(value, "cpus", "CpusConfig", &unsupported));
  KEEL_TRY(auto boot, r.unsigned_integer("boot_vcpus", kVcpuHint));
  if (boot) {
    if (*boot < 1 || *boot > vmm::kMaxVcpus) {
      return Error::invalid("cpus.boot_vcpus: " + std::to_string(*boot) +
                            " is out of range; give 1 to " + std::to_string(vmm::kMaxVcpus));
    }
    config.boot_vcpus = static_cast<std::uint32_t>(*boot);
  }
  // cloud-hypervisor requires max_vcpus; above boot_vcpus, vm.resize can plug the rest (ACPI).
  KEEL_TRY(auto max, r.unsigned_integer("max_vcpus",
                                        "boot_vcpus, or more to let vm.resize plug vCPUs"));
  if (max) {
    if (*max < config.boot_vcpus || *max > vmm::kMaxVcpus) {
      return Error::invalid("cpus.max_vcpus: " + std::to_string(*max) + " is out of range; give " +
                            "boot_vcpus (" + std::to_string(config.boot_vcpus) + ") to " +
                            std::to_string(vmm::kMaxVcpus));
    }
    config.max_vcpus = static_cast<std::uint32_t>(*max);
  }
  read_topology(r, r.value("topology"), max.value_or(config.boot_vcpus));
  off(r, "kvm_hyperv", "Hyper-V enlightenments");
  r.accept_if("affinity", is_empty_array, "vCPU pinning", "remove it or send []");
  r.accept_if("features", is_all_false_object, "optional CPU features",
                              "remove it or set every feature to false");
  r.ignore("max_phys_bits");
  r.ignore("nested");
  r.ignore("core_scheduling");
  return r.finish();
}

Status read_memory(const json& value, vmm::VmConfig& config, Unsupported& unsupported) {
  KEEL_TRY(auto r, JsonObjectReader::open(value, "memory", "MemoryConfig", &unsupported));
  KEEL_TRY(auto size, r.unsigned_integer("size", kSizeHint));
  if (size && *size == 0) {
    return Error::invalid("memory.size: 0 gives the guest no RAM; give " + std::string(kSizeHint));
  }
  KEEL_TRY(auto shared,
           r.boolean("shared", "true to back guest RAM with a shared memfd, else false"));
  config.memory_shared = shared.value_or(false);
  auto hugepages =
      r.boolean("hugepages", "true to back guest RAM with hugetlbfs pages, else false");
  if (!hugepages.ok()) {
    return hugepages.error();
  }
  config.memory_hugepages = hugepages->value_or(false);

  KEEL_TRY(auto hotplug_size, r.unsigned_integer("hotplug_size", "bytes, a multiple of 128 MiB"));
  KEEL_TRY(auto method, r.string("hotplug_method", "\"Acpi\" or \"VirtioMem\""));
  r.accept_if("hotplugged_size", is_zero,
                              "memory plugged at boot (vm.resize plugs it once the VM runs)",
                              "remove it or send 0");
  // cloud-hypervisor's default method is "Acpi" (DIMMs).
  const std::string m = method.value_or("Acpi");
  if (m != "Acpi" && m != "VirtioMem") {
    return Error::invalid("memory.hotplug_method: \"" + m +
                          "\" is not a method; give \"Acpi\" or \"VirtioMem\"");
  }
  if (hotplug_size.value_or(0) != 0) {
    config.memory_hotplug_method =
        m == "Acpi" ? vmm::MemoryHotplug::kAcpi : vmm::MemoryHotplug::kVirtioMem;
    config.memory_hotplug_size = *hotplug_size;
  }
  off(r, "mergeable", "KSM page merging");
  no_object(r, "hugepage_size",
                            "a huge page size of your choice (Keel uses the default size)");
  off(r, "prefault", "prefaulting guest RAM");
  off(r, "reserve", "reserving guest RAM");
  r.accept_if("thp", is_true, "turning transparent huge pages off",
                              "remove it or send true (Keel always asks for them)");
  no_device(r, "zones", "memory zones");
  KEEL_TRY_STATUS(r.finish());
  if (!size) {  // after finish(), so a misspelt "sise" is named as such
    return Error::invalid("memory.size is missing; give " + std::string(kSizeHint));
  }
  config.memory_size = *size;
  Status in_range = memory::check_ram_size(config.memory_size, config.memory_hugepages);
  if (!in_range.ok()) {
    return Error::invalid("memory.size: " + in_range.error().message());
  }
  return ok_status();
}

// cloud-hypervisor's RngConfig: {"src": PATH, "iommu": false}; its VmConfig carries one by
// default, and so every such VM gets its virtio-rng.
Status read_rng(const json& value, vmm::VmConfig& config, Unsupported& unsupported) {
  KEEL_TRY(auto r, JsonObjectReader::open(value, "rng", "RngConfig", &unsupported));
  KEEL_TRY(auto src,
           r.string("src", "the path of the host's entropy source, e.g. \"/dev/urandom\""));
  off(r, "iommu", "virtio-rng behind the virtual IOMMU");
  KEEL_TRY_STATUS(r.finish());
  if (src && (src)->empty()) {
    return Error::invalid("rng.src: empty; give the path of an entropy source, e.g. /dev/urandom");
  }
  config.rng_source = src.value_or("/dev/urandom");
  return ok_status();
}

Status read_payload(const json& value, vmm::VmConfig& config, Unsupported& unsupported) {
  KEEL_TRY(auto r, JsonObjectReader::open(value, "payload", "PayloadConfig", &unsupported));
  constexpr std::string_view kKernelHint =
      "the path of a bzImage or an ELF vmlinux with a PVH note, e.g. /boot/vmlinuz";
  KEEL_TRY(auto kernel, r.string("kernel", kKernelHint));
  KEEL_TRY(auto cmdline, r.string("cmdline", "the kernel command line, e.g. \"console=ttyS0\""));
  if (cmdline) {
    config.cmdline = *cmdline;
  }
  KEEL_TRY(auto initramfs, r.string("initramfs", "the path of an initramfs image, or null"));
  config.initramfs = initramfs;
  no_object(r, "firmware", "booting firmware (Keel boots payload.kernel directly)");
  no_object(r, "igvm", "an IGVM payload");
  no_object(r, "host_data", "confidential-guest host data");
  KEEL_TRY_STATUS(r.finish());
  if (!kernel || (kernel)->empty()) {
    return Error::invalid("payload.kernel is missing; give " + std::string(kKernelHint) +
                          " (Keel boots kernels directly, without firmware)");
  }
  config.kernel = *kernel;
  return ok_status();
}

Status read_serial(const json& value, vmm::VmConfig& config, Unsupported& unsupported) {
  KEEL_TRY(auto r, JsonObjectReader::open(value, "serial", "SerialConfig", &unsupported));
  constexpr std::string_view kModeHint = "\"Tty\", \"File\" (with file), \"Off\" or \"Null\"";
  KEEL_TRY(auto mode, r.string("mode", kModeHint));
  KEEL_TRY(auto file,
           r.string("file", "the path of the file that receives the guest's COM1 output"));
  no_object(r, "socket", "a serial console on a socket");
  // Kata's client sends it (cloud-hypervisor's serial was a ConsoleConfig before v52).
  off(r, "iommu", "a serial port behind the virtual IOMMU");
  KEEL_TRY_STATUS(r.finish());
  if (!mode) {
    return Error::invalid("serial.mode is missing; give " + std::string(kModeHint));
  }
  if (*mode == "Tty") {
    config.serial = vmm::SerialMode::kTty;
  } else if (*mode == "File") {
    config.serial = vmm::SerialMode::kFile;
  } else if (*mode == "Off" || *mode == "Null") {
    // Keel's COM1 always exists; "Off" and "Null" both discard its output (keel --serial off).
    config.serial = vmm::SerialMode::kOff;
  } else {
    return Error::invalid("serial.mode: \"" + excerpt(*mode) + "\" is not a mode Keel has; give " +
                          std::string(kModeHint));
  }
  if (config.serial == vmm::SerialMode::kFile) {
    if (!file || (file)->empty()) {
      return Error::invalid(
          "serial.file is missing: mode \"File\" needs the path of the file "
          "that receives the guest's output");
    }
    config.serial_file = *file;
  } else if (file) {
    return Error::invalid("serial.file: only mode \"File\" writes to a file, and mode is \"" +
                          *mode + "\"; remove file or set mode to \"File\"");
  }
  return ok_status();
}

Status read_devices(const json& value, vmm::VmConfig& config, Unsupported& unsupported) {
  if (!value.is_array()) {
    return Error::invalid("devices: expected an array of DeviceConfig objects, got " +
                          describe_json(value));
  }
  std::set<std::string> ids, paths;
  for (std::size_t i = 0; i < value.size(); ++i) {
    const std::string where = "devices[" + std::to_string(i) + "]";
    KEEL_TRY(auto device, device_config_from_json(value[i], where, &unsupported));
    if (!paths.insert(device.path).second) {
      return Error::invalid(
          where + ".path: " + device.path +
          " is already passed through by an earlier entry; give each device once");
    }
    if (!ids.insert(device.id).second) {
      return Error::invalid(where + ".id: \"" + device.id +
                            "\" is used by an earlier entry; give each device its own id");
    }
    config.devices.push_back(std::move(device));
  }
  return ok_status();
}

Status read_disks(const json& value, vmm::VmConfig& config, Unsupported& unsupported) {
  if (!value.is_array()) {
    return Error::invalid("disks: expected an array of DiskConfig objects, got " +
                          describe_json(value));
  }
  for (std::size_t i = 0; i < value.size(); ++i) {
    KEEL_TRY(auto disk, disk_config_from_json(value[i], "disks[" + std::to_string(i) + "]",
                                              vmm::default_disk_id(i), &unsupported));
    config.disks.push_back(std::move(disk));
  }
  return ok_status();
}

Status read_nets(const json& value, vmm::VmConfig& config, Unsupported& unsupported) {
  if (!value.is_array()) {
    return Error::invalid("net: expected an array of NetConfig objects, got " + describe_json(value));
  }
  for (std::size_t i = 0; i < value.size(); ++i) {
    KEEL_TRY(auto net, net_config_from_json(value[i], "net[" + std::to_string(i) + "]",
                                            vmm::default_net_id(i), &unsupported));
    config.nets.push_back(std::move(net));
  }
  return ok_status();
}

// cloud-hypervisor's PlatformConfig: Keel's machine has one PCI segment, no SMBIOS tables and no
// confidential computing, so only values that say so are accepted.
Status read_platform(const json& value, vmm::VmConfig& config, Unsupported& unsupported) {
  KEEL_TRY(auto r, JsonObjectReader::open(value, "platform", "PlatformConfig", &unsupported));
  KEEL_TRY(auto segments,
           r.unsigned_integer("num_pci_segments", "the PCI segments, 1 to 16 (e.g. 2)"));
  if (segments) {
    if (*segments == 0 || *segments > memory::layout::kMaxPciSegments) {
      return Error::invalid("platform.num_pci_segments: " + std::to_string(*segments) +
                            " is out of range; give 1 to " +
                            std::to_string(memory::layout::kMaxPciSegments));
    }
    config.pci_segments = static_cast<std::uint16_t>(*segments);
  }
  r.accept_if("iommu_segments", is_empty_array,
              "whole PCI segments behind the virtual IOMMU (Keel places it per device: "
              "DeviceConfig.iommu)",
              "remove it or send [] and set iommu on each device instead");
  for (const char* key : {"iommu_address_width", "iommu_address_width_bits"}) {
    no_object(r, key, "an IOMMU address width of your choice");
  }
  for (const char* key : {"serial_number", "uuid", "system_serial_number", "system_uuid",
                          "system_manufacturer", "system_product_name", "system_version",
                          "system_family", "system_sku_number", "chassis_asset_tag"}) {
    no_object(r, key, "an SMBIOS identity (Keel writes no SMBIOS tables)");
  }
  no_device(r, "oem_strings", "SMBIOS OEM strings (Keel writes no SMBIOS tables)");
  off(r, "tdx", "an Intel TDX guest");
  off(r, "sev_snp", "an AMD SEV-SNP guest");
  off(r, "iommufd",
      "iommufd for every VFIO device (Keel picks it per device: DeviceConfig.backend \"iommufd\", "
      "and \"auto\" takes it wherever the host has it)");
  off(r, "vfio_p2p_dma", "peer-to-peer DMA between passed-through devices (Keel does not map "
                         "their BARs in the IOMMU)");
  return r.finish();
}

}  // namespace

std::string_view to_string(vmm::SerialMode mode) {
  switch (mode) {
    case vmm::SerialMode::kTty:
      return "Tty";
    case vmm::SerialMode::kFile:
      return "File";
    case vmm::SerialMode::kOff:
      return "Off";
  }
  return "Off";
}

Result<vmm::DeviceConfig> device_config_from_json(const json& value, const std::string& path,
                                                  Unsupported* unsupported) {
  KEEL_TRY(auto r, JsonObjectReader::open(value, path, "DeviceConfig", unsupported));
  auto at = [&path](std::string_view key) {
    return path.empty() ? std::string(key) : path + "." + std::string(key);
  };
  vmm::DeviceConfig device;
  constexpr std::string_view kDevicePathHint =
      "the sysfs path of a PCI function bound to vfio-pci, e.g. /sys/bus/pci/devices/0000:01:00.0";
  KEEL_TRY(auto device_path, r.string("path", kDevicePathHint));
  KEEL_TRY(auto id, r.string("id", "a name for the device, e.g. \"nic0\""));
  KEEL_TRY(auto iommu,
           r.boolean("iommu", "true to place the device behind the virtual IOMMU, else false"));
  device.iommu = iommu.value_or(false);
  KEEL_TRY(auto low_water,
           r.unsigned_integer("dma_low_water",
                              "a number of DMA entries to keep free when mapping lazily, e.g. 2"));
  if (low_water) {
    if (*low_water > 0xffffffffULL) {
      return Error::invalid(at("dma_low_water") + ": " + std::to_string(*low_water) +
                            " is more entries than a container can hold; give at most 4294967295");
    }
    device.dma_low_water = static_cast<std::uint32_t>(*low_water);
  }
  constexpr std::string_view kMappingHint = "\"auto\", \"eager\" or \"lazy\"";
  KEEL_TRY(auto mapping, r.string("dma_mapping", kMappingHint));
  if (mapping) {
    KEEL_TRY_WRAP(device.dma_mapping, vfio::parse_mapping_mode(*mapping), at("dma_mapping"));
  }
  KEEL_TRY(auto backend, r.string("backend", "\"auto\", \"type1\" or \"iommufd\""));
  if (backend) {
    KEEL_TRY_WRAP(device.backend, vfio::parse_backend_choice(*backend), at("backend"));
  }
  r.accept_if("pci_segment", is_zero, "a PCI segment other than 0", "remove it or send 0");
  r.accept_if("pci_device_id", is_never, "a PCI slot of your choice",
                              "remove it (Keel assigns slots)");
  r.accept_if("x_nv_gpudirect_clique", is_never, "an NVIDIA GPUDirect clique", "remove it");
  r.accept_if("x_exclude_mmap_bars", is_empty_array, "BARs kept out of mmap",
                              "remove it or send []");
  KEEL_TRY_STATUS(r.finish());
  if (!device_path || (device_path)->empty()) {
    return Error::invalid(at("path") + " is missing; give " + std::string(kDevicePathHint));
  }
  device.path = *device_path;
  while (device.path.size() > 1 && device.path.back() == '/') {
    device.path.pop_back();
  }
  device.id = id ? *id : device.path.substr(device.path.rfind('/') + 1);
  if (device.id.empty()) {
    return Error::invalid(at("id") +
                          ": empty; give a name, or leave id out to use the PCI address");
  }
  Status checked = vmm::check_device(device);
  if (!checked.ok()) {
    return path.empty() ? checked.error() : checked.error().wrap(path);
  }
  return device;
}

json device_config_to_json(const vmm::DeviceConfig& device) {
  return json{{"path", device.path},
              {"id", device.id},
              {"iommu", device.iommu},
              {"dma_mapping", to_string(device.dma_mapping)},
              {"backend", to_string(device.backend)},
              {"dma_low_water", device.dma_low_water}};
}

// cloud-hypervisor's DiskConfig: a raw image file served by virtio-blk.
Result<vmm::DiskConfig> disk_config_from_json(const json& value, const std::string& path,
                                              const std::string& default_id,
                                              Unsupported* unsupported) {
  KEEL_TRY(auto r, JsonObjectReader::open(value, path, "DiskConfig", unsupported));
  auto at = [&path](std::string_view key) {
    return path.empty() ? std::string(key) : path + "." + std::string(key);
  };
  vmm::DiskConfig disk;
  constexpr std::string_view kPathHint = "the path of a raw disk image file, e.g. /var/lib/keel/root.img";
  KEEL_TRY(auto image, r.string("path", kPathHint));
  KEEL_TRY(auto id, r.string("id", "a name for the disk, e.g. \"root\""));
  KEEL_TRY(auto readonly, r.boolean("readonly", "true for a read-only disk, else false"));
  KEEL_TRY(auto direct, r.boolean("direct", "true to open the image with O_DIRECT, else false"));
  KEEL_TRY(auto queues, r.unsigned_integer("num_queues", "the number of request queues, 1 to 16"));
  KEEL_TRY(auto queue_size,
           r.unsigned_integer("queue_size", "the entries per queue, a power of two, e.g. 128"));
  off(r, "iommu", "a disk behind the virtual IOMMU");
  off(r, "vhost_user", "a vhost-user disk backend");
  no_object(r, "vhost_socket", "a vhost-user disk backend");
  no_object(r, "rate_limiter_config", "disk rate limiting");
  no_object(r, "rate_limit_group", "disk rate limiting");
  r.accept_if("pci_segment", is_zero, "a PCI segment other than 0", "remove it or send 0");
  no_object(r, "serial", "a disk serial of your choice (Keel derives it from the image)");
  no_object(r, "queue_affinity", "queue-to-CPU affinity");
  r.accept_if("image_type", [](const json& v) { return v == "Raw"; },
              "a disk image format other than raw", "convert the image to raw or send \"Raw\"");
  r.accept_if("backing_files", is_false, "qcow2 backing files", "remove it or send false");
  // Keel's discard punches holes (FALLOC_FL_PUNCH_HOLE): the image may be sparse.
  r.accept_if("sparse", is_true, "a disk image kept fully allocated",
              "remove it or send true");
  // Keel takes a whole-image lock (flock); either granularity keeps a second VMM out.
  r.ignore("lock_granularity");
  // Keel's data path is its own (queue worker threads); these choose between cloud-hypervisor's.
  r.ignore("disable_io_uring");
  r.ignore("disable_aio");
  KEEL_TRY_STATUS(r.finish());
  if (!image || image->empty()) {
    return Error::invalid(at("path") + " is missing; give " + std::string(kPathHint));
  }
  disk.path = *image;
  if (id && id->empty()) {
    return Error::invalid(at("id") + ": empty; give a name, or leave id out for \"_disk<N>\"");
  }
  disk.id = id.value_or(default_id);
  disk.readonly = readonly.value_or(false);
  disk.direct = direct.value_or(false);
  if (queues) {
    if (*queues == 0 || *queues > vmm::kMaxDiskQueues) {
      return Error::invalid(at("num_queues") + ": " + std::to_string(*queues) + " is not 1 to " +
                            std::to_string(vmm::kMaxDiskQueues));
    }
    disk.num_queues = static_cast<std::uint16_t>(*queues);
  }
  if (queue_size) {
    if (*queue_size > 32768) {
      return Error::invalid(at("queue_size") + ": " + std::to_string(*queue_size) +
                            " is more than 32768; give a power of two, e.g. 128");
    }
    disk.queue_size = static_cast<std::uint16_t>(*queue_size);
  }
  Status checked = vmm::check_disk(disk);
  if (!checked.ok()) {
    return path.empty() ? checked.error() : checked.error().wrap(path);
  }
  return disk;
}

json disk_config_to_json(const vmm::DiskConfig& disk) {
  return json{{"path", disk.path},           {"readonly", disk.readonly},
              {"direct", disk.direct},       {"iommu", false},
              {"num_queues", disk.num_queues}, {"queue_size", disk.queue_size},
              {"id", disk.id}};
}

// cloud-hypervisor's NetConfig: a virtio-net link over a TAP.
Result<vmm::NetConfig> net_config_from_json(const json& value, const std::string& path,
                                            const std::string& default_id,
                                            Unsupported* unsupported) {
  KEEL_TRY(auto r, JsonObjectReader::open(value, path, "NetConfig", unsupported));
  auto at = [&path](std::string_view key) {
    return path.empty() ? std::string(key) : path + "." + std::string(key);
  };
  vmm::NetConfig net;
  KEEL_TRY(auto tap, r.string("tap", "the TAP's name, e.g. \"tap0\" (created when missing)"));
  KEEL_TRY(auto ip, r.string("ip", "the host side's IPv4 address, e.g. \"192.168.249.1\""));
  KEEL_TRY(auto mask, r.string("mask", "the host side's netmask, e.g. \"255.255.255.0\""));
  KEEL_TRY(auto mac, r.string("mac", "the guest's MAC address, e.g. \"52:54:00:12:34:56\""));
  KEEL_TRY(auto id, r.string("id", "a name for the link, e.g. \"net0\""));
  KEEL_TRY(auto queues, r.unsigned_integer("num_queues", "2: one receive and one transmit queue"));
  KEEL_TRY(auto queue_size,
           r.unsigned_integer("queue_size", "the entries per queue, a power of two, e.g. 256"));
  off(r, "iommu", "a network link behind the virtual IOMMU");
  off(r, "vhost_user", "a vhost-user network backend");
  no_object(r, "vhost_socket", "a vhost-user network backend");
  r.ignore("vhost_mode");  // means nothing without vhost_user
  no_object(r, "host_mac", "a host-side MAC address of your choice");
  no_object(r, "mtu", "an MTU of your choice (the TAP's is used)");
  r.accept_if("fds", is_empty_array,
              "TAP fds, which only vm.add-net takes (passed with the request over the API "
              "socket, SCM_RIGHTS)",
              "give tap, or add the link with vm.add-net and its fd");
  if (queues && *queues != 2) {
    r.unsupported("num_queues", std::to_string(*queues) +
                                    " asks for multiqueue, which Keel's virtio-net does not have "
                                    "yet; give 2 or remove it");
  }
  no_object(r, "rate_limiter_config", "network rate limiting");
  r.accept_if("pci_segment", is_zero, "a PCI segment other than 0", "remove it or send 0");
  // cloud-hypervisor's switches for offloads towards the guest; Keel offers the guest's
  // offloads to the host (CSUM, HOST_TSO4/6) and hands it whole frames either way.
  r.ignore("offload_tso");
  r.ignore("offload_ufo");
  r.ignore("offload_csum");
  KEEL_TRY_STATUS(r.finish());
  net.tap = tap.value_or("");
  net.ip = ip.value_or("");
  net.mask = mask.value_or("");
  if (!net.ip.empty() && net.mask.empty()) {
    net.mask = "255.255.255.0";  // cloud-hypervisor's default mask
  }
  net.mac = mac.value_or("");
  if (id && id->empty()) {
    return Error::invalid(at("id") + ": empty; give a name, or leave id out for \"_net<N>\"");
  }
  net.id = id.value_or(default_id);
  if (queue_size) {
    if (*queue_size > 32768) {
      return Error::invalid(at("queue_size") + ": " + std::to_string(*queue_size) +
                            " is more than 32768; give a power of two, e.g. 256");
    }
    net.queue_size = static_cast<std::uint16_t>(*queue_size);
  }
  Status checked = vmm::check_net(net);
  if (!checked.ok()) {
    return path.empty() ? checked.error() : checked.error().wrap(path);
  }
  return net;
}

json net_config_to_json(const vmm::NetConfig& net) {
  json out{{"num_queues", net.num_queues}, {"queue_size", net.queue_size},
           {"iommu", false}, {"id", net.id}};
  // What is not set is left out: cloud-hypervisor's schema has strings there, never null.
  for (const auto& [key, value] : {std::pair<const char*, const std::string*>{"tap", &net.tap},
                                   {"ip", &net.ip}, {"mask", &net.mask}, {"mac", &net.mac}}) {
    if (!value->empty()) {
      out[key] = *value;
    }
  }
  return out;
}

Result<vmm::VsockConfig> vsock_config_from_json(const json& value, const std::string& path,
                                                Unsupported* unsupported) {
  KEEL_TRY(auto r, JsonObjectReader::open(value, path, "VsockConfig", unsupported));
  auto at = [&path](std::string_view key) {
    return path.empty() ? std::string(key) : path + "." + std::string(key);
  };
  KEEL_TRY(auto cid, r.unsigned_integer("cid", "the guest's context id, 3 or more, e.g. 3"));
  KEEL_TRY(auto socket, r.string("socket", "the host's Unix socket path, e.g. \"/run/keel.vsock\""));
  KEEL_TRY(auto id, r.string("id", "a name for the device, e.g. \"vsock0\""));
  off(r, "iommu", "a vsock device behind the virtual IOMMU");
  r.accept_if("pci_segment", is_zero, "a PCI segment other than 0", "remove it or send 0");
  KEEL_TRY_STATUS(r.finish());
  if (!cid || !socket) {
    return Error::invalid((path.empty() ? std::string("VsockConfig") : path) +
                          ": cid and socket are required, e.g. {\"cid\": 3, \"socket\": "
                          "\"/run/keel.vsock\"}");
  }
  vmm::VsockConfig vsock;
  vsock.cid = *cid;
  vsock.socket = *socket;
  if (id && id->empty()) {
    return Error::invalid(at("id") + ": empty; give a name, or leave id out for \"_vsock0\"");
  }
  if (id) {
    vsock.id = *id;
  }
  Status checked = vmm::check_vsock(vsock);
  if (!checked.ok()) {
    return path.empty() ? checked.error() : checked.error().wrap(path);
  }
  return vsock;
}

json vsock_config_to_json(const vmm::VsockConfig& vsock) {
  return json{{"cid", vsock.cid}, {"socket", vsock.socket}, {"iommu", false}, {"id", vsock.id}};
}

Result<vmm::FsConfig> fs_config_from_json(const json& value, const std::string& path,
                                          const std::string& default_id,
                                          Unsupported* unsupported) {
  KEEL_TRY(auto r, JsonObjectReader::open(value, path, "FsConfig", unsupported));
  auto at = [&path](std::string_view key) {
    return path.empty() ? std::string(key) : path + "." + std::string(key);
  };
  KEEL_TRY(auto tag, r.string("tag", "the guest's mount tag, e.g. \"myfs\""));
  KEEL_TRY(auto socket,
           r.string("socket", "the virtiofsd socket path, e.g. \"/run/virtiofsd.sock\""));
  KEEL_TRY(auto id, r.string("id", "a name for the share, e.g. \"fs0\""));
  KEEL_TRY(auto queues, r.unsigned_integer("num_queues", "the request queues, e.g. 1"));
  KEEL_TRY(auto queue_size,
           r.unsigned_integer("queue_size", "the entries per queue, a power of two, e.g. 1024"));
  KEEL_TRY(auto segment, r.unsigned_integer("pci_segment", "below platform.num_pci_segments"));
  KEEL_TRY_STATUS(r.finish());
  if (!tag || !socket) {
    return Error::invalid((path.empty() ? std::string("FsConfig") : path) +
                          ": tag and socket are required, e.g. {\"tag\": \"myfs\", \"socket\": "
                          "\"/run/virtiofsd.sock\"}");
  }
  vmm::FsConfig fs;
  fs.tag = *tag;
  fs.socket = *socket;
  if (id && id->empty()) {
    return Error::invalid(at("id") + ": empty; give a name, or leave id out for \"_fs<N>\"");
  }
  fs.id = id.value_or(default_id);
  if (segment) {
    if (*segment >= memory::layout::kMaxPciSegments) {
      return Error::invalid(at("pci_segment") + ": " + std::to_string(*segment) +
                            " is out of range; give 0 to " +
                            std::to_string(memory::layout::kMaxPciSegments - 1));
    }
    fs.pci_segment = static_cast<std::uint16_t>(*segment);
  }
  for (const auto& [key, given, field] :
       {std::tuple{"num_queues", &queues, &fs.num_queues},
        std::tuple{"queue_size", &queue_size, &fs.queue_size}}) {
    if (*given) {
      if (**given > 32768) {
        return Error::invalid(at(key) + ": " + std::to_string(**given) + " is out of range");
      }
      *field = static_cast<std::uint16_t>(**given);
    }
  }
  vmm::FsConfig checked_copy = fs;
  if (checked_copy.id.empty()) {
    checked_copy.id = "_fs";  // named by the VMM (vm.add-fs)
  }
  Status checked = vmm::check_fs(checked_copy);
  if (!checked.ok()) {
    return path.empty() ? checked.error() : checked.error().wrap(path);
  }
  return fs;
}

json fs_config_to_json(const vmm::FsConfig& fs) {
  json out{{"tag", fs.tag},
           {"socket", fs.socket},
           {"num_queues", fs.num_queues},
           {"queue_size", fs.queue_size},
           {"id", fs.id}};
  if (fs.pci_segment != 0) {
    out["pci_segment"] = fs.pci_segment;
  }
  return out;
}

Result<vmm::VmConfig> vm_config_from_json(const json& value) {
  // Everything the body asks for that Keel lacks, named together at the end.
  Unsupported unsupported;
  KEEL_TRY(auto r, JsonObjectReader::open(value, "", "VmConfig", &unsupported));
  const json* cpus = r.value("cpus");
  const json* memory = r.value("memory");
  const json* payload = r.value("payload");
  const json* serial = r.value("serial");
  const json* devices = r.value("devices");
  const json* disks = r.value("disks");
  const json* nets = r.value("net");
  const json* vsock = r.value("vsock");
  const json* fs = r.value("fs");
  auto exit_on_reboot =
      r.boolean("exit_on_reboot", "true to end keel when the guest reboots, else false");
  if (!exit_on_reboot.ok()) {
    return exit_on_reboot.error();
  }
  // cloud-hypervisor's VM-level switch: Keel places the virtual IOMMU whenever a device asks
  // for it (iommu: true), so either value is accepted and the answer says whether it is there.
  KEEL_TRY_STATUS(
      r.boolean("iommu", "true or false (the virtual IOMMU comes with a device's iommu)"));
  off(r, "watchdog", "a watchdog device");
  off(r, "pvpanic", "a pvpanic device");
  off(r, "landlock_enable", "Landlock sandboxing");
  for (const char* key : {"pmem", "user_devices", "vdpa", "numa", "pci_segments",
                          "rate_limit_groups", "generic_vhost_user", "landlock_rules"}) {
    no_device(r, key, std::string("\"") + key + "\" entries");
  }
  for (const char* key : {"balloon", "tpm", "rtc"}) {
    no_object(r, key, std::string("a \"") + key + "\" configuration");
  }
  for (const char* key : {"console", "debug_console"}) {
    r.accept_if(key, is_console_off, "a virtio or debug console",
                "remove it or send {\"mode\": \"Off\"} (the guest's console is COM1: see "
                "serial)");
  }
  const json* rng = r.value("rng");
  const json* platform = r.value("platform");
  KEEL_TRY_STATUS(r.finish());

  vmm::VmConfig config;
  config.exit_on_reboot = exit_on_reboot->value_or(false);
  if (cpus != nullptr) {
    KEEL_TRY_STATUS(read_cpus(*cpus, config, unsupported));
  }
  if (memory != nullptr) {
    KEEL_TRY_STATUS(read_memory(*memory, config, unsupported));
  }
  if (platform != nullptr) {
    KEEL_TRY_STATUS(read_platform(*platform, config, unsupported));
  }
  if (payload == nullptr) {
    return Error::invalid(
        "payload is missing; give {\"kernel\": PATH} with the path of a "
        "bzImage or PVH vmlinux, and optionally cmdline and initramfs");
  }
  KEEL_TRY_STATUS(read_payload(*payload, config, unsupported));
  if (serial != nullptr) {
    KEEL_TRY_STATUS(read_serial(*serial, config, unsupported));
  }
  if (devices != nullptr) {
    KEEL_TRY_STATUS(read_devices(*devices, config, unsupported));
  }
  if (rng != nullptr) {
    KEEL_TRY_STATUS(read_rng(*rng, config, unsupported));
  }
  if (disks != nullptr && !disks->is_null()) {
    KEEL_TRY_STATUS(read_disks(*disks, config, unsupported));
  }
  if (nets != nullptr && !nets->is_null()) {
    KEEL_TRY_STATUS(read_nets(*nets, config, unsupported));
  }
  if (vsock != nullptr && !vsock->is_null()) {
    KEEL_TRY(config.vsock, vsock_config_from_json(*vsock, "vsock", &unsupported));
  }
  if (fs != nullptr && !fs->is_null()) {
    if (!fs->is_array()) {
      return Error::invalid("fs: expected an array of FsConfig objects, got " + describe_json(*fs));
    }
    for (std::size_t i = 0; i < fs->size(); ++i) {
      KEEL_TRY(auto share, fs_config_from_json((*fs)[i], "fs[" + std::to_string(i) + "]",
                                               vmm::default_fs_id(i), &unsupported));
      config.fs.push_back(std::move(share));
    }
  }
  KEEL_TRY_STATUS(unsupported.status());
  return config;
}


json memory_config_to_json(const vmm::VmConfig& config) {
  json memory = {{"size", config.memory_size},
                 {"shared", config.memory_shared},
                 {"hugepages", config.memory_hugepages}};
  if (config.memory_hotplug_size != 0) {
    memory["hotplug_method"] =
        config.memory_hotplug_method == vmm::MemoryHotplug::kAcpi ? "Acpi" : "VirtioMem";
    memory["hotplug_size"] = config.memory_hotplug_size;
  }
  return memory;
}

json vm_config_to_json(const vmm::VmConfig& config) {
  json devices = json::array();
  for (const vmm::DeviceConfig& device : config.devices) {
    devices.push_back(device_config_to_json(device));
  }
  json disks = json::array();
  for (const vmm::DiskConfig& disk : config.disks) {
    disks.push_back(disk_config_to_json(disk));
  }
  json nets = json::array();
  for (const vmm::NetConfig& net : config.nets) {
    nets.push_back(net_config_to_json(net));
  }
  // What is not set is left out, as cloud-hypervisor writes it: its schema has no nulls.
  json payload{{"kernel", config.kernel}, {"cmdline", config.cmdline}};
  if (config.initramfs) {
    payload["initramfs"] = *config.initramfs;
  }
  json serial{{"mode", to_string(config.serial)}};
  if (config.serial == vmm::SerialMode::kFile) {
    serial["file"] = config.serial_file;
  }
  json out{
      {"cpus", {{"boot_vcpus", config.boot_vcpus}, {"max_vcpus", vmm::possible_vcpus(config)}}},
      {"memory", memory_config_to_json(config)},
      {"payload", std::move(payload)},
      {"serial", std::move(serial)},
      {"devices", std::move(devices)},
      {"disks", std::move(disks)},
      {"net", std::move(nets)},
      {"iommu", std::any_of(config.devices.begin(), config.devices.end(),
                            [](const vmm::DeviceConfig& d) { return d.iommu; })},
      {"exit_on_reboot", config.exit_on_reboot},
  };
  if (!config.fs.empty()) {
    json fs = json::array();
    for (const vmm::FsConfig& share : config.fs) {
      fs.push_back(fs_config_to_json(share));
    }
    out["fs"] = std::move(fs);
  }
  if (config.vsock) {
    out["vsock"] = vsock_config_to_json(*config.vsock);
  }
  if (config.rng_source) {
    out["rng"] = json{{"src", *config.rng_source}, {"iommu", false}};
  }
  if (config.pci_segments > 1) {
    out["platform"] = json{{"num_pci_segments", config.pci_segments}};
  }
  return out;
}

}  // namespace keel::api
