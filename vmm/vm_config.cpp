#include "vmm/vm_config.hpp"

#include "base/size.hpp"

#include <sys/un.h>

#include <algorithm>

#include "devices/virtio/tap.hpp"
#include "devices/virtio/virtio_fs.hpp"
#include "devices/virtio/virtqueue.hpp"

#include <string>

#include "memory/guest_memory.hpp"
#include "memory/layout.hpp"

namespace keel::vmm {

Status check_device(const DeviceConfig& device) {
  if (device.path.empty()) {
    return Error::invalid("path is required: /sys/bus/pci/devices/DDDD:BB:DD.F");
  }
  if (device.id.empty()) {
    return Error::invalid("id is empty; give a name");
  }
  if (device.dma_low_water != 0 && !device.iommu) {
    return Error::invalid("dma_low_water=" + std::to_string(device.dma_low_water) +
                          " applies to lazy mapping, which needs the device behind the virtual "
                          "IOMMU (iommu=on, or \"iommu\": true)");
  }
  return ok_status();
}

Status check_disk(const DiskConfig& disk) {
  if (disk.path.empty()) {
    return Error::invalid("path is required: a raw image file, e.g. path=/var/lib/keel/root.img");
  }
  if (disk.path.find('\0') != std::string::npos) {
    return Error::invalid("path contains a NUL byte");
  }
  if (disk.num_queues == 0 || disk.num_queues > kMaxDiskQueues) {
    return Error::invalid("num_queues=" + std::to_string(disk.num_queues) + " is not 1 to " +
                          std::to_string(kMaxDiskQueues));
  }
  const std::uint32_t q = disk.queue_size;
  if (!virtio::Virtqueue::valid_max_size(q)) {
    return Error::invalid("queue_size=" + std::to_string(q) +
                          " is not a power of two from 2 to 32768 (e.g. 128)");
  }
  return ok_status();
}

std::string default_disk_id(std::size_t index) { return "_disk" + std::to_string(index); }

std::string default_net_id(std::size_t index) { return "_net" + std::to_string(index); }

Status check_net(const NetConfig& net) {
  if (!net.tap.empty() && net.fd >= 0) {
    return Error::invalid("tap=" + net.tap + " and fd=" + std::to_string(net.fd) +
                          " both name the link; give one");
  }
  if (net.tap.size() >= 16) {
    return Error::invalid("tap=" + net.tap + " is longer than an interface name (15 characters)");
  }
  if (!net.mac.empty() && !virtio::parse_mac(net.mac)) {
    return Error::invalid("mac=" + net.mac +
                          " is not a unicast MAC address, e.g. 52:54:00:12:34:56");
  }
  if (net.fd >= 0 && !net.ip.empty()) {
    return Error::invalid("ip= with fd=" + std::to_string(net.fd) +
                          ": a TAP handed to keel is configured by whoever made it (it may live "
                          "in another network namespace); give tap= to have keel set ip");
  }
  if (net.ip.empty() != net.mask.empty()) {
    return Error::invalid("ip and mask go together: give both (e.g. ip=192.168.249.1,"
                          "mask=255.255.255.0) or neither");
  }
  if (net.num_queues != 2) {
    return Error::invalid("num_queues=" + std::to_string(net.num_queues) +
                          ": Keel's virtio-net has one receive and one transmit queue (2); "
                          "multiqueue is not supported yet");
  }
  const std::uint32_t q = net.queue_size;
  if (!virtio::Virtqueue::valid_max_size(q)) {
    return Error::invalid("queue_size=" + std::to_string(q) +
                          " is not a power of two from 2 to 32768 (e.g. 256)");
  }
  return ok_status();
}

Status check_vsock(const VsockConfig& vsock) {
  // Linux addresses vsock peers with 32 bits; 0-2 are the hypervisor, local and host, and
  // U32_MAX is "any".
  if (vsock.cid < 3 || vsock.cid >= 0xffffffffULL) {
    return Error::invalid("cid=" + std::to_string(vsock.cid) +
                          " is not a guest's context id; use 3 to 4294967294");
  }
  // Guests reach PATH_<port>: that must fit a Unix socket address (107 characters) too.
  constexpr std::size_t kRoom = sizeof(sockaddr_un::sun_path) - 1 - sizeof("_4294967295") + 1;
  if (vsock.socket.empty() || vsock.socket.size() > kRoom) {
    return Error::invalid("socket=" + vsock.socket + ": give a Unix socket path of 1 to " +
                          std::to_string(kRoom) +
                          " characters (room is left for the _<port> of guest connections)");
  }
  if (vsock.id.empty()) {
    return Error::invalid("id is empty; give a name");
  }
  return ok_status();
}

std::uint64_t acpi_memory_slot_size(std::uint64_t hotplug_size, std::uint64_t boot_ram_size) {
  const auto plan = memory::plan_ram(boot_ram_size);
  const std::uint64_t ram_end = plan.empty() ? 0 : plan.back().gpa + plan.back().size;
  const std::uint64_t block = ram_end >= (std::uint64_t{64} << 30) ? std::uint64_t{2} << 30
                                                                    : memory::GuestMemory::kHotplugAlign;
  const std::uint64_t blocks = (hotplug_size + block - 1) / block;
  const std::uint64_t per_slot = (blocks + memory::layout::kMaxMemorySlots - 1) /
                                 memory::layout::kMaxMemorySlots;
  return std::max<std::uint64_t>(per_slot, 1) * block;
}

std::string default_fs_id(std::size_t index) { return "_fs" + std::to_string(index); }

Status check_fs(const FsConfig& fs) {
  if (fs.tag.empty() || fs.tag.size() > virtio::VirtioFs::kTagSize) {
    return Error::invalid("tag=\"" + fs.tag + "\" is " + std::to_string(fs.tag.size()) +
                          " bytes; give the guest's mount tag of 1 to " +
                          std::to_string(virtio::VirtioFs::kTagSize) + " bytes, e.g. tag=myfs");
  }
  if (fs.socket.empty() || fs.socket.size() >= sizeof(sockaddr_un::sun_path)) {
    return Error::invalid("socket=" + fs.socket + ": give the vhost-user back end's Unix socket "
                          "path (1 to " + std::to_string(sizeof(sockaddr_un::sun_path) - 1) +
                          " characters), e.g. socket=/run/virtiofsd.sock");
  }
  if (fs.num_queues == 0 || fs.num_queues > kMaxDiskQueues) {
    return Error::invalid("num_queues=" + std::to_string(fs.num_queues) +
                          " is out of range; use 1 to " + std::to_string(kMaxDiskQueues) +
                          " request queues (QEMU 7.2's virtiofsd serves 1)");
  }
  if (!virtio::Virtqueue::valid_max_size(fs.queue_size)) {
    return Error::invalid("queue_size=" + std::to_string(fs.queue_size) +
                          " is not a power of two from 2 to 32768 (e.g. 1024)");
  }
  if (fs.id.empty()) {
    return Error::invalid("id is empty; give a name");
  }
  return ok_status();
}

Status check_vm(const VmConfig& config) {
  if (config.kernel.empty()) {
    return Error::invalid("payload.kernel is required: the path of a bzImage or PVH vmlinux");
  }
  if (config.boot_vcpus == 0 || config.boot_vcpus > kMaxVcpus) {
    return Error::invalid("cpus.boot_vcpus=" + std::to_string(config.boot_vcpus) +
                          " is out of range; use 1 to " + std::to_string(kMaxVcpus));
  }
  if (config.max_vcpus != 0 &&
      (config.max_vcpus < config.boot_vcpus || config.max_vcpus > kMaxVcpus)) {
    return Error::invalid("cpus.max_vcpus=" + std::to_string(config.max_vcpus) +
                          " is out of range; use boot_vcpus (" + std::to_string(config.boot_vcpus) +
                          ") to " + std::to_string(kMaxVcpus));
  }
  if (config.pci_segments == 0 || config.pci_segments > memory::layout::kMaxPciSegments) {
    return Error::invalid("platform.num_pci_segments " + std::to_string(config.pci_segments) +
                          " is out of range; give 1 to " +
                          std::to_string(memory::layout::kMaxPciSegments));
  }
  if (config.memory_size == 0) {
    return Error::invalid("memory.size=0 gives the guest no RAM; use e.g. 536870912 (512 MiB)");
  }
  KEEL_TRY_STATUS(memory::check_ram_size(config.memory_size, config.memory_hugepages));
  if (config.memory_hotplug_size != 0) {
    if (config.memory_hotplug_size % memory::GuestMemory::kHotplugAlign != 0) {
      return Error::invalid("memory.hotplug_size " + format_size(config.memory_hotplug_size) +
                            " is not a multiple of 128 MiB (Linux adds memory in 128 MiB "
                            "blocks); round it, e.g. 1G");
    }
    if (config.memory_hugepages) {
      return Error::invalid("memory.hotplug_size with hugepages would reserve every hugepage of "
                            "the region up front; leave hugepages off for a VM that grows");
    }
    if (config.memory_hotplug_size > memory::kMaxRamSize) {
      return Error::invalid("memory.hotplug_size " + format_size(config.memory_hotplug_size) +
                            " is more than Keel's " + format_size(memory::kMaxRamSize) +
                            "; give less");
    }

  }
  for (const DeviceConfig& device : config.devices) {
    Status checked = check_device(device);
    if (!checked.ok()) {
      return checked.error().wrap("device " + (device.id.empty() ? device.path : device.id));
    }
  }
  for (std::size_t i = 0; i < config.disks.size(); ++i) {
    const DiskConfig& disk = config.disks[i];
    const std::string name = "disk " + (disk.id.empty() ? disk.path : disk.id);
    KEEL_TRY_STATUS_WRAP(check_disk(disk), name);
    if (disk.id.empty()) {
      return Error::invalid(name + ": id is empty; give a name");
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (config.disks[j].path == disk.path) {
        return Error::invalid(name + ": " + disk.path + " is given twice; one image is one disk");
      }
      if (config.disks[j].id == disk.id) {
        return Error::invalid(name + ": id \"" + disk.id + "\" is used twice");
      }
    }
    for (const DeviceConfig& device : config.devices) {
      if (device.id == disk.id) {
        return Error::invalid(name + ": id \"" + disk.id + "\" is also a passthrough device's");
      }
    }
  }
  for (std::size_t i = 0; i < config.nets.size(); ++i) {
    const NetConfig& net = config.nets[i];
    const std::string name = "net " + net.id;
    KEEL_TRY_STATUS_WRAP(check_net(net), name);
    if (net.id.empty()) {
      return Error::invalid("net: id is empty; give a name");
    }
    for (std::size_t j = 0; j < i; ++j) {
      const NetConfig& other = config.nets[j];
      if (other.id == net.id) {
        return Error::invalid(name + ": id \"" + net.id + "\" is used twice");
      }
      if ((!net.tap.empty() && other.tap == net.tap) || (net.fd >= 0 && other.fd == net.fd)) {
        return Error::invalid(name + ": the same TAP is given twice; one TAP is one link");
      }
    }
    const auto taken = [&net](const std::string& id) { return id == net.id; };
    if (std::any_of(config.devices.begin(), config.devices.end(),
                    [&](const DeviceConfig& d) { return taken(d.id); }) ||
        std::any_of(config.disks.begin(), config.disks.end(),
                    [&](const DiskConfig& d) { return taken(d.id); })) {
      return Error::invalid(name + ": id \"" + net.id + "\" is also another device's");
    }
  }
  for (std::size_t i = 0; i < config.fs.size(); ++i) {
    const FsConfig& fs = config.fs[i];
    const std::string name = "fs " + fs.id;
    KEEL_TRY_STATUS_WRAP(check_fs(fs), name);
    if (!config.memory_shared) {
      return Error::invalid(name + ": virtiofsd maps guest memory itself; give the VM shared "
                            "memory (--memory shared=on, or \"shared\": true)");
    }
    if (fs.pci_segment >= config.pci_segments) {
      return Error::invalid(name + ": pci_segment " + std::to_string(fs.pci_segment) +
                            " is not one of the VM's " + std::to_string(config.pci_segments) +
                            " PCI segments; raise platform.num_pci_segments or give 0");
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (config.fs[j].id == fs.id || config.fs[j].tag == fs.tag ||
          config.fs[j].socket == fs.socket) {
        return Error::invalid(name + ": its id, tag or socket is also fs " + config.fs[j].id +
                              "'s; each share has its own (one back end serves one device)");
      }
    }
    const auto same = [&fs](const auto& d) { return d.id == fs.id; };
    if (std::any_of(config.devices.begin(), config.devices.end(), same) ||
        std::any_of(config.disks.begin(), config.disks.end(), same) ||
        std::any_of(config.nets.begin(), config.nets.end(), same)) {
      return Error::invalid(name + ": id \"" + fs.id + "\" is also another device's");
    }
  }
  if (config.vsock) {
    const std::string& id = config.vsock->id;
    KEEL_TRY_STATUS_WRAP(check_vsock(*config.vsock), "vsock");
    const auto same = [&id](const auto& d) { return d.id == id; };
    if (std::any_of(config.devices.begin(), config.devices.end(), same) ||
        std::any_of(config.disks.begin(), config.disks.end(), same) ||
        std::any_of(config.nets.begin(), config.nets.end(), same) ||
        std::any_of(config.fs.begin(), config.fs.end(), same)) {
      return Error::invalid("vsock: id \"" + id + "\" is also another device's");
    }
  }
  return ok_status();
}

}  // namespace keel::vmm
