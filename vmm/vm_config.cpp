#include "vmm/vm_config.hpp"

#include <string>

#include "memory/guest_memory.hpp"

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

Status check_vm(const VmConfig& config) {
  if (config.kernel.empty()) {
    return Error::invalid("payload.kernel is required: the path of a bzImage or PVH vmlinux");
  }
  if (config.boot_vcpus == 0 || config.boot_vcpus > kMaxVcpus) {
    return Error::invalid("cpus.boot_vcpus=" + std::to_string(config.boot_vcpus) +
                          " is out of range; use 1 to " + std::to_string(kMaxVcpus));
  }
  if (config.memory_size == 0) {
    return Error::invalid("memory.size=0 gives the guest no RAM; use e.g. 536870912 (512 MiB)");
  }
  KEEL_TRY_STATUS(memory::check_ram_size(config.memory_size, config.memory_hugepages));
  for (const DeviceConfig& device : config.devices) {
    Status checked = check_device(device);
    if (!checked.ok()) {
      return checked.error().wrap("device " + (device.id.empty() ? device.path : device.id));
    }
  }
  return ok_status();
}

}  // namespace keel::vmm
