#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "base/size.hpp"
#include "devices/vfio/dma_backend.hpp"
#include "devices/vfio/mapping_mode.hpp"

namespace keel::vmm {

enum class SerialMode { kTty, kFile, kOff };

// How hot-pluggable memory reaches the guest: a virtio-mem device (the guest plugs and unplugs
// 2 MiB blocks as asked), or ACPI memory devices (DIMMs the VMM plugs whole; never taken back),
// cloud-hypervisor's default and Kata's.
enum class MemoryHotplug { kVirtioMem, kAcpi };

// One host PCI function passed through with VFIO (--device path=…).
struct DeviceConfig {
  std::string path;  // /sys/bus/pci/devices/DDDD:BB:DD.F
  std::string id;    // name for messages and the API; defaults to the BDF
  vfio::MappingMode dma_mapping = vfio::MappingMode::kAuto;
  // iommu=on: the device sits behind Keel's virtual IOMMU (virtio-iommu). The guest's IOMMU
  // driver then decides what it may reach, and its container may map lazily.
  bool iommu = false;
  // With lazy mapping (iommu=on): DMA entries kept free for others; a guest MAP that would eat
  // into them is refused (virtio-iommu NOMEM) before the kernel would say ENOSPC.
  std::uint32_t dma_low_water = 0;
  // backend=: the kernel interface that maps its DMA (a type1 container or iommufd).
  vfio::BackendChoice backend = vfio::BackendChoice::kAuto;
};

// One virtio-blk disk over a raw image file (--disk path=..., cloud-hypervisor's DiskConfig).
struct DiskConfig {
  std::string path;
  bool readonly = false;
  bool direct = false;  // O_DIRECT on the image
  std::uint16_t num_queues = 1;
  std::uint16_t queue_size = 128;
  std::string id;  // name for messages and the API; cloud-hypervisor's "_disk<N>" by default
  bool operator==(const DiskConfig&) const = default;
};

// One virtio-net link over a TAP (--net tap=NAME|fd=N, cloud-hypervisor's NetConfig).
struct NetConfig {
  std::string tap;  // the TAP's name; keel creates it when missing ("" with fd -1: keeltap<N>)
  int fd = -1;      // a TAP fd handed to keel instead (fd=N); keel takes it over
  std::string mac;  // the guest's address; "" for a random locally administered one
  std::string ip, mask;  // the host side's IPv4 address and netmask, when given
  std::uint16_t num_queues = 2;  // one receive and one transmit queue
  std::uint16_t queue_size = 256;
  std::string id;  // cloud-hypervisor's "_net<N>" by default
  bool operator==(const NetConfig&) const = default;
};

// The guest's virtio-vsock device in cloud-hypervisor's hybrid form (--vsock cid=N,socket=PATH,
// its VsockConfig): the host reaches the guest through the Unix socket PATH ("CONNECT <port>"),
// the guest reaches the host's Unix socket PATH_<port>.
struct VsockConfig {
  std::uint64_t cid = 0;  // the guest's context id, 3 or more
  std::string socket;
  std::string id = "_vsock0";
  bool operator==(const VsockConfig&) const = default;
};

// One virtio-fs share served by a vhost-user back end such as virtiofsd (--fs tag=..,socket=..,
// cloud-hypervisor's FsConfig). Needs guest memory shared with the back end (memory_shared).
struct FsConfig {
  std::string tag;     // the guest mounts it by this name (1 to 36 bytes)
  std::string socket;  // the back end's vhost-user socket (it listens, Keel connects)
  std::uint16_t num_queues = 1;  // request queues (the high-priority queue comes on top)
  std::uint16_t queue_size = 1024;
  std::string id;  // cloud-hypervisor's "_fs<N>" by default
  std::uint16_t pci_segment = 0;  // below VmConfig::pci_segments; only segment 0 hot-plugs
  bool operator==(const FsConfig&) const = default;
};

// vm.resize (cloud-hypervisor's VmResize): what to change on a running VM; unset fields stay.
struct ResizeConfig {
  std::optional<std::uint32_t> desired_vcpus;
  std::optional<std::uint64_t> desired_ram;      // bytes: boot RAM plus hot-plugged memory
  std::optional<std::uint64_t> desired_balloon;  // bytes
  bool operator==(const ResizeConfig&) const = default;
};

// Everything needed to build one VM. Filled from the command line (cli.hpp) or, later, the API.
struct VmConfig {
  std::uint32_t boot_vcpus = 1;
  // vCPUs vm.resize may bring the guest to (ACPI vCPU hot-plug; needs the API); 0: boot_vcpus.
  std::uint32_t max_vcpus = 0;
  std::uint64_t memory_size = 512 * kMiB;
  bool memory_shared = false;
  bool memory_hugepages = false;
  // --memory hotplug_method=virtio-mem|acpi,hotplug_size=SIZE: a region above boot RAM that
  // vm.resize plugs into the guest (0: none). A multiple of 128 MiB.
  std::uint64_t memory_hotplug_size = 0;
  MemoryHotplug memory_hotplug_method = MemoryHotplug::kVirtioMem;

  std::string kernel;
  std::optional<std::string> initramfs;
  std::string cmdline = "console=ttyS0";

  SerialMode serial = SerialMode::kTty;
  std::string serial_file;  // with SerialMode::kFile

  std::vector<DeviceConfig> devices;
  std::vector<DiskConfig> disks;
  std::vector<NetConfig> nets;
  std::vector<FsConfig> fs;
  // --rng src=PATH: a virtio-rng device fed from PATH (cloud-hypervisor's /dev/urandom default).
  std::optional<std::string> rng_source;
  std::optional<VsockConfig> vsock;

  bool exit_on_reboot = false;  // --no-reboot: a guest reboot ends keel instead of restarting
  // PCI segments (platform.num_pci_segments), each with bus 0; segment 0 has everything but the
  // virtio-fs shares placed elsewhere.
  std::uint16_t pci_segments = 1;
};

inline constexpr std::uint32_t kMaxVcpus = 254;  // APIC ids 0..254 in xAPIC mode; 255 is broadcast

// The vCPUs a VM can have: max_vcpus, or boot_vcpus when that is unset.
inline std::uint32_t possible_vcpus(const VmConfig& config) {
  return config.max_vcpus > config.boot_vcpus ? config.max_vcpus : config.boot_vcpus;
}
// Whether vm.resize can plug and unplug vCPUs (1 to max_vcpus): max_vcpus was given, above 1.
// Not "above boot_vcpus": vm.resize makes boot_vcpus the current count, and a VM rebooted at
// max_vcpus must still be able to shrink.
inline bool vcpu_hotplug(const VmConfig& config) { return config.max_vcpus > 1; }
inline constexpr std::uint16_t kMaxDiskQueues = 16;

// ACPI memory hot-plug splits the hot-pluggable region into DIMMs of one size (the last may be
// shorter): 128 MiB (Linux's memory block), or a larger multiple of it so that there are at most
// layout::kMaxMemorySlots; 2 GiB multiples when boot RAM ends at 64 GiB or above, where Linux's
// memory blocks (on a hypervisor) grow up to 2 GiB and it refuses ranges not aligned to them.
std::uint64_t acpi_memory_slot_size(std::uint64_t hotplug_size, std::uint64_t boot_ram_size);

// The rules a configuration must follow whichever way it came (command line, API): the one
// place they are checked. Messages name the field; callers add where it came from ("--device",
// "devices[0]"). The parsers check their own syntax first.
Status check_device(const DeviceConfig& device);
Status check_disk(const DiskConfig& disk);
// The id a disk gets when none is given: "_disk<index>", as cloud-hypervisor names them.
std::string default_disk_id(std::size_t index);
Status check_net(const NetConfig& net);
std::string default_net_id(std::size_t index);  // "_net<index>"
Status check_vsock(const VsockConfig& vsock);
Status check_fs(const FsConfig& fs);
std::string default_fs_id(std::size_t index);  // "_fs<index>"
Status check_vm(const VmConfig& config);

}  // namespace keel::vmm
