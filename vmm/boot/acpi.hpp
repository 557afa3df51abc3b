#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "base/result.hpp"
#include "memory/guest_memory.hpp"

namespace keel::vmm::boot {

// The xAPIC MADT entries carry 8-bit APIC ids and 0xff is the broadcast id.
inline constexpr std::uint32_t kMaxAcpiCpus = 254;

// The virtual IOMMU as the guest learns of it from the VIOT table: the virtio-iommu PCI function
// and the PCI functions it translates for, all on segment 0. A BDF is (bus << 8) | (slot << 3) |
// function; the endpoint id virtio-iommu requests carry is the endpoint's BDF.
struct ViotConfig {
  std::uint16_t iommu_bdf = 0;
  std::vector<std::uint16_t> endpoint_bdfs;
};

// ACPI memory hot-plug: `count` DIMMs of `size` bytes from `base` (the last ends at base +
// total, so it may be shorter), one PNP0C80 memory device each.
struct MemorySlots {
  std::uint64_t base = 0;
  std::uint64_t size = 0;
  std::uint32_t count = 0;
  std::uint64_t total = 0;  // 0: count * size
};

struct AcpiConfig {
  std::uint32_t num_cpus = 1;  // APIC ids 0..num_cpus-1, enabled at boot
  // Possible vCPUs (0: num_cpus): the MADT lists the others disabled.
  std::uint32_t max_cpus = 0;
  // With acpi_events, the DSDT has a hot-pluggable processor device for each of max_cpus.
  bool cpu_hotplug = false;
  bool com1 = true;            // describe the 16550 at layout::kCom1Port / kCom1Irq
  bool i8042 = true;           // FADT: an 8042 keyboard controller is present
  bool cmos_rtc = false;       // FADT: clear tells Linux not to probe a CMOS RTC
  // DSDT: the Generic Event Device and what it signals, the ejectable PCI slots and the power
  // button (only an API can plug a device or press the button).
  bool acpi_events = true;
  std::optional<ViotConfig> viot = std::nullopt;  // a VIOT table, when the VM has a virtual IOMMU
  // PCI segments, each with bus 0 (MCFG entries, host bridges PCI0, PCI1, ...).
  std::uint16_t pci_segments = 1;
  // With acpi_events: hot-pluggable DIMMs the GED announces (none: no memory devices).
  std::optional<MemorySlots> memory_slots = std::nullopt;
};

// Writes RSDP (at layout::kAcpiStart, where the BIOS-area scan finds it), XSDT, FADT
// (hardware-reduced, sleep/reset registers at layout::kAcpiPmPort), MADT, MCFG and DSDT into
// [kAcpiStart, kAcpiStart + kAcpiMaxSize), and VIOT when config.viot is set. Returns the RSDP's
// guest-physical address.
Result<std::uint64_t> write_acpi_tables(const memory::GuestMemory& mem, const AcpiConfig& config);

}  // namespace keel::vmm::boot
