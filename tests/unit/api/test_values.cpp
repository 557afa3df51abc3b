#include "test_values.hpp"

#include <utility>

#include "api/json_text.hpp"
#include "api/vm_config_json.hpp"

namespace keel::api::test {

vmm::VmConfig full_config() {
  vmm::VmConfig c;
  c.boot_vcpus = 3;
  c.max_vcpus = 6;
  c.memory_size = 3ULL << 30;
  c.memory_shared = true;
  c.memory_hugepages = true;
  c.kernel = "/boot/vmlinuz";
  c.initramfs = "/boot/initrd.img";
  c.cmdline = "console=ttyS0 quiet";
  c.serial = vmm::SerialMode::kFile;
  c.serial_file = "/tmp/serial.log";
  c.devices = {
      {"/sys/bus/pci/devices/0000:01:00.0", "nic0", vfio::MappingMode::kEager},
      {"/sys/bus/pci/devices/0000:02:00.0", "0000:02:00.0", vfio::MappingMode::kLazy, true, 0,
       vfio::BackendChoice::kIommufd},
  };
  c.disks = {{"/images/root.img", false, true, 2, 256, "_disk0"},
             {"/images/data.img", true, false, 1, 128, "data"}};
  c.nets = {{"tap0", -1, "52:54:00:12:34:56", "192.168.249.1", "255.255.255.0", 2, 256, "_net0"}};
  c.exit_on_reboot = true;
  c.rng_source = "/dev/urandom";
  c.vsock = vmm::VsockConfig{3, "/run/keel.vsock", "_vsock0"};
  c.fs = {{"myfs", "/run/virtiofsd.sock", 1, 512, "_fs0", 1}};
  c.pci_segments = 2;
  return c;
}

std::string example_body(std::string_view endpoint) {
  if (endpoint == "vm.create") {
    return dump_json(vm_config_to_json(full_config()));
  }
  const std::pair<std::string_view, const char*> bodies[] = {
      {"vm.add-device", R"({"path": "/sys/bus/pci/devices/0000:01:00.0", "id": "nic0"})"},
      {"vm.add-disk", R"({"path": "/images/root.img", "id": "root", "readonly": true})"},
      {"vm.add-net", R"({"tap": "tap0", "num_queues": 2, "queue_size": 256})"},
      {"vm.add-vsock", R"({"cid": 3, "socket": "/run/keel.vsock"})"},
      {"vm.add-fs", R"({"tag": "myfs", "socket": "/run/virtiofsd.sock", "num_queues": 1,
                        "queue_size": 1024})"},
      {"vm.remove-device", R"({"id": "nic0"})"},
      {"vm.resize", R"({"desired_ram": 1073741824, "desired_vcpus": 2})"},
  };
  for (const auto& [name, body] : bodies) {
    if (name == endpoint) {
      return body;
    }
  }
  return "";
}

vfio::DmaReport capability_report() {
  vfio::DmaReport r;
  r.devices = {"0000:01:00.0", "0000:02:00.0"};
  r.avail_at_open = vfio::DmaBudget{vfio::AvailSource::kCapability, 24};
  r.avail_now = vfio::DmaBudget{vfio::AvailSource::kCapability, 21};
  r.entries_used = 3;
  r.consistent = true;
  r.mode = vfio::Decision::kEager;
  r.requested_mode = vfio::MappingMode::kAuto;
  r.reason = "eager plan needs 3 entries, 24 available";
  r.planned_entries = 3;
  r.mapped_bytes = 3ULL << 30;
  r.peak_entries = 4;
  r.failed_maps.overlap = 1;
  r.failed_maps.budget = 2;
  r.failed_maps.outside_iova = 3;
  r.failed_maps.memlock = 4;
  r.failed_maps.other = 5;
  r.iova_ranges = {{0x0, 0xfedfffff}, {0xfef00000, 0x7fffffffff}};
  r.iova_pgsizes = 0x40201000;
  r.unmap_all_supported = true;
  r.backend_reason = "type1 (auto: the host has no /dev/iommu)";
  r.memlock = vfio::MemlockLimit{4ULL << 30, false};
  r.pinned_bytes_planned = 3ULL << 30;
  r.binding_limit = "memlock";
  return r;
}

vfio::DmaReport absent_report() {
  vfio::DmaReport r;
  r.devices = {"0000:09:00.0"};
  r.avail_at_open = vfio::DmaBudget{vfio::AvailSource::kAbsent, 0};
  r.mode = vfio::Decision::kRefuse;
  r.requested_mode = vfio::MappingMode::kLazy;
  r.reason = "lazy mapping needs a virtual IOMMU";
  return r;
}

vmm::VmmControl::VmInfo full_info() {
  vmm::VmmControl::VmInfo info{
      full_config(), vmm::VmmControl::VmState::kRunning, 3ULL << 30, {}, {}};
  info.devices = {{"nic0", "0000:00:01.0"}, {"0000:02:00.0", "0000:00:02.0"}};
  vfio::DmaReport unlimited = absent_report();
  unlimited.avail_at_open = vfio::DmaBudget{vfio::AvailSource::kUnlimited, 0xffffffffU};
  info.dma = {capability_report(), absent_report(), unlimited};
  return info;
}

bool same_config(const vmm::VmConfig& a, const vmm::VmConfig& b) {
  if (a.devices.size() != b.devices.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.devices.size(); ++i) {
    if (a.devices[i].path != b.devices[i].path || a.devices[i].id != b.devices[i].id ||
        a.devices[i].dma_mapping != b.devices[i].dma_mapping ||
        a.devices[i].iommu != b.devices[i].iommu ||
        a.devices[i].dma_low_water != b.devices[i].dma_low_water) {
      return false;
    }
  }
  return a.boot_vcpus == b.boot_vcpus &&
         vmm::possible_vcpus(a) == vmm::possible_vcpus(b) && a.memory_size == b.memory_size &&
         a.memory_shared == b.memory_shared && a.memory_hugepages == b.memory_hugepages &&
         a.memory_hotplug_size == b.memory_hotplug_size &&
         a.memory_hotplug_method == b.memory_hotplug_method &&
         a.kernel == b.kernel && a.initramfs == b.initramfs && a.cmdline == b.cmdline &&
         a.serial == b.serial && a.serial_file == b.serial_file &&
         a.exit_on_reboot == b.exit_on_reboot && a.rng_source == b.rng_source &&
         a.disks == b.disks && a.nets == b.nets && a.vsock == b.vsock && a.fs == b.fs &&
         a.pci_segments == b.pci_segments;
}

}  // namespace keel::api::test
