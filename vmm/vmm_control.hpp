#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "devices/vfio/dma_report.hpp"
#include "vmm/vm_config.hpp"

namespace keel::vmm {

// The VMM as the API sees it: one method per operation (cloud-hypervisor's vmm.* and vm.*).
// The API thread calls these; the implementation hands each call to the VMM thread and waits,
// so the API never touches VM state. Errors carry their ErrorKind (base/result.hpp), which only
// api/ turns into HTTP statuses:
//   kInvalid       the request is wrong (bad config, a file that cannot be read)  -> 400
//   kNotFound      the thing named does not exist (no VM, unknown device id)      -> 404
//   kWrongState    the VM is in the wrong state for this (boot twice, not booted) -> 409
//   kNotSupported  Keel cannot do this yet (e.g. hot-plug while running)          -> 409
//   kExists        it is there already (a device id or path added twice)          -> 409
//   kRetry         not now: a change under way must finish (a vCPU being ejected) -> 429
//   kHost          the VMM or the kernel failed, whatever its errno               -> 500
class VmmControl {
 public:
  enum class VmState { kCreated, kRunning, kPaused, kShutdown };

  struct VmmPing {
    std::string version;
    std::uint32_t pid;
  };
  struct DeviceInfo {
    std::string id;
    std::string bdf;  // the guest's PCI address, "0000:00:01.0"
  };
  struct VmInfo {
    VmConfig config;
    VmState state;
    std::uint64_t memory_actual_size;
    std::vector<DeviceInfo> devices;
    std::vector<vfio::DmaReport> dma;  // one per VFIO container
  };
  // vm.counters: what each passthrough device, each VFIO container and the virtual IOMMU
  // counted. api/ names the groups (cloud-hypervisor's shape: one per device, by id).
  using NamedCounters = std::map<std::string, std::uint64_t>;
  struct Counters {
    std::map<std::string, NamedCounters> devices;  // by device id
    std::vector<vfio::DmaReport> dma;              // one per container, in vm.info's order
    NamedCounters viommu;                          // empty without a virtual IOMMU
  };

  virtual ~VmmControl() = default;

  virtual Result<VmmPing> ping() = 0;
  virtual Status shutdown_vmm() = 0;

  virtual Status create_vm(const VmConfig& config) = 0;
  virtual Status boot_vm() = 0;
  virtual Status shutdown_vm() = 0;
  virtual Status reboot_vm() = 0;
  virtual Status pause_vm() = 0;
  virtual Status resume_vm() = 0;
  virtual Status delete_vm() = 0;
  // Shared and immutable: a snapshot many readers may hold at once.
  virtual Result<std::shared_ptr<const VmInfo>> vm_info() = 0;
  virtual Result<Counters> vm_counters() = 0;
  virtual Result<DeviceInfo> add_device(const DeviceConfig& device) = 0;
  // Before vm.boot; an empty id becomes "_disk<N>".
  virtual Result<DeviceInfo> add_disk(const DiskConfig& disk) = 0;
  // vm.add-net: a virtio-net link over a TAP, before the VM boots (an empty id: "_net<N>").
  // `tap`, when valid, is a TAP fd handed over with the request: the VMM keeps it (net.fd names
  // it) until the link is removed or the VM deleted.
  virtual Result<DeviceInfo> add_net(const NetConfig& net, UniqueFd tap) = 0;
  // vm.add-vsock: the VM's one vsock device, before it boots.
  virtual Result<DeviceInfo> add_vsock(const VsockConfig& vsock) = 0;
  // vm.add-fs: a virtio-fs share served by a vhost-user back end (an empty id: "_fs<N>").
  virtual Result<DeviceInfo> add_fs(const FsConfig& fs) = 0;
  virtual Status remove_device(const std::string& id) = 0;
  // vm.resize: desired_ram grows or shrinks the hot-plugged memory (virtio-mem) of a running VM,
  // limited to what every eagerly mapped VFIO container can map.
  virtual Status resize(const ResizeConfig& resize) = 0;
  // vm.power-button: the ACPI power button of a booted VM (running or paused: a paused guest
  // sees it when resumed).
  virtual Status power_button() = 0;
  // vm.nmi: a non-maskable interrupt on every vCPU of a booted VM.
  virtual Status nmi() = 0;
};

}  // namespace keel::vmm
