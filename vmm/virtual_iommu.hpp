#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "base/result.hpp"
#include "devices/pci/platform.hpp"
#include "devices/virtio/virtio_pci.hpp"
#include "memory/guest_memory.hpp"
#include "vmm/boot/acpi.hpp"
#include "vmm/passthrough.hpp"

namespace keel::vmm {

// The VM's virtual IOMMU: a virtio-iommu PCI function on Keel's root, in front of the
// passthrough devices placed behind it (iommu=on). The guest's MAP and UNMAP requests become
// VFIO mappings of those devices' containers through Passthrough's lazy engines. What the guest
// may map follows the host: the IOVA space its IOMMU translates (input range and, per endpoint,
// the holes between its valid IOVA ranges as reserved regions), the host's page sizes, and the
// x86 MSI window reserved. The guest learns which devices sit behind it from the VIOT table.
class VirtualIommu {
 public:
  // Passthrough must have at least one device behind the virtual IOMMU, and outlive this, as
  // must the memory and the platform.
  static Result<std::unique_ptr<VirtualIommu>> create(Passthrough& passthrough,
                                                      const memory::GuestMemory& memory,
                                                      pci::Platform& platform);
  ~VirtualIommu();
  VirtualIommu(const VirtualIommu&) = delete;
  VirtualIommu& operator=(const VirtualIommu&) = delete;

  // For write_acpi_tables: the virtio-iommu function and the endpoints behind it.
  boot::ViotConfig viot() const { return viot_; }
  std::string guest_bdf() const;
  // The transport's and the device's counters, one flat map (vm.counters' "viommu").
  std::map<std::string, std::uint64_t> counters() const;

 private:
  VirtualIommu(pci::Platform& platform, std::uint8_t slot) : platform_(platform), slot_(slot) {}

  pci::Platform& platform_;
  std::uint8_t slot_;
  boot::ViotConfig viot_;
  std::shared_ptr<virtio::VirtioPciDevice> device_;
};

}  // namespace keel::vmm
