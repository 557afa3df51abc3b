#include "vmm/boot/acpi.hpp"

#include <algorithm>
#include <array>
#include <cstring>

#include "base/hex.hpp"
#include "memory/layout.hpp"
#include "vmm/boot/acpi_table.hpp"
#include "vmm/boot/dsdt.hpp"

namespace keel::vmm::boot {

namespace layout = memory::layout;

namespace {

constexpr std::uint64_t kTableAlign = 16;  // the RSDP scan steps 16 bytes; tables follow suit
constexpr std::size_t kRsdpSize = 36;
constexpr std::size_t kRsdpV1Size = 20;  // what the first checksum covers

// FADT (ACPI 6.0, revision 6, 276 bytes).
constexpr std::uint8_t kFadtRevision = 6;
constexpr std::size_t kFadtBootArchOffset = 109;  // IAPC_BOOT_ARCH
constexpr std::size_t kFadtSleepControlOffset = 244;
constexpr std::size_t kFadtSize = 276;
constexpr std::uint32_t kFadtWbinvd = 1U << 0;
constexpr std::uint32_t kFadtPowerButton = 1U << 4;  // set: no fixed-feature power button
constexpr std::uint32_t kFadtSleepButton = 1U << 5;  // set: no fixed-feature sleep button
constexpr std::uint32_t kFadtResetRegSup = 1U << 10;
constexpr std::uint32_t kFadtHwReducedAcpi = 1U << 20;
constexpr std::uint16_t kBootArch8042 = 1U << 1;
constexpr std::uint16_t kBootArchNoVga = 1U << 2;
constexpr std::uint16_t kBootArchNoAspm = 1U << 4;
constexpr std::uint16_t kBootArchNoCmosRtc = 1U << 5;
constexpr std::uint8_t kGasSystemIo = 1;
constexpr std::uint8_t kGasAccessByte = 1;
constexpr std::array<std::uint8_t, 8> kHypervisorVendor{'K', 'E', 'E', 'L', 0, 0, 0, 0};

// MADT (ACPI 6.0, revision 4).
constexpr std::uint8_t kMadtRevision = 4;
constexpr std::uint32_t kMadtPcatCompat = 1U << 0;  // dual 8259s are present (KVM's irqchip)
constexpr std::uint8_t kMadtLocalApic = 0;
constexpr std::uint8_t kMadtIoApic = 1;
constexpr std::uint8_t kMadtLocalApicNmi = 4;
constexpr std::uint32_t kLocalApicEnabled = 1U << 0;
constexpr std::uint8_t kIoApicId = 0;  // KVM's IOAPIC id register resets to 0
constexpr std::uint8_t kAllProcessors = 0xff;
constexpr std::uint8_t kNmiLint = 1;

constexpr std::uint8_t kMcfgRevision = 1;
constexpr std::uint8_t kXsdtRevision = 1;
constexpr std::uint8_t kRsdpRevision = 2;

void append_gas_io(AcpiTable& t, std::uint16_t port) {
  t.u8(kGasSystemIo);
  t.u8(8);  // bit width
  t.u8(0);  // bit offset
  t.u8(kGasAccessByte);
  t.u64(port);
}

std::vector<std::uint8_t> build_fadt(const AcpiConfig& config, std::uint64_t dsdt_gpa) {
  AcpiTable t("FACP", kFadtRevision);
  t.u32(0);  // FIRMWARE_CTRL: no FACS, nothing to wake from
  t.u32(0);  // DSDT: X_DSDT is used instead
  t.u8(0);   // reserved
  t.u8(0);   // Preferred_PM_Profile: unspecified
  t.u16(static_cast<std::uint16_t>(layout::kAcpiSciIrq));
  // SMI_CMD through CENTURY: the fixed PM hardware that hardware-reduced ACPI does without.
  t.pad_to(kFadtBootArchOffset);
  std::uint16_t boot_arch = kBootArchNoVga | kBootArchNoAspm;
  boot_arch |= config.i8042 ? kBootArch8042 : 0;
  boot_arch |= config.cmos_rtc ? 0 : kBootArchNoCmosRtc;
  t.u16(boot_arch);
  t.u8(0);  // reserved
  t.u32(kFadtWbinvd | kFadtPowerButton | kFadtSleepButton | kFadtResetRegSup | kFadtHwReducedAcpi);
  append_gas_io(t, layout::kAcpiPmPort + layout::kAcpiResetOffset);
  t.u8(layout::kAcpiResetValue);
  t.u16(0);  // ARM_BOOT_ARCH
  t.u8(0);   // FADT minor version: 6.0
  t.u64(0);  // X_FIRMWARE_CTRL
  t.u64(dsdt_gpa);
  // X_PM1a_EVT_BLK through X_GPE1_BLK: absent, as above.
  t.pad_to(kFadtSleepControlOffset);
  append_gas_io(t, layout::kAcpiPmPort + layout::kAcpiSleepControlOffset);
  append_gas_io(t, layout::kAcpiPmPort + layout::kAcpiSleepStatusOffset);
  t.append(kHypervisorVendor);
  t.pad_to(kFadtSize);
  return std::move(t).finish();
}

std::vector<std::uint8_t> build_madt(const AcpiConfig& config) {
  AcpiTable t("APIC", kMadtRevision);
  t.u32(static_cast<std::uint32_t>(layout::kLapicStart));
  t.u32(kMadtPcatCompat);
  // vCPUs beyond num_cpus are listed disabled: Linux counts them as possible CPUs, to be
  // hot-plugged (with MADT revision 4 no online-capable flag is needed).
  for (std::uint32_t cpu = 0; cpu < std::max(config.num_cpus, config.max_cpus); ++cpu) {
    t.u8(kMadtLocalApic);
    t.u8(8);
    t.u8(static_cast<std::uint8_t>(cpu));  // ACPI processor UID
    t.u8(static_cast<std::uint8_t>(cpu));  // APIC id
    t.u32(cpu < config.num_cpus ? kLocalApicEnabled : 0);
  }
  t.u8(kMadtIoApic);
  t.u8(12);
  t.u8(kIoApicId);
  t.u8(0);
  t.u32(static_cast<std::uint32_t>(layout::kIoapicStart));
  t.u32(0);  // GSI base
  // No interrupt source override: KVM's default routing sends ISA IRQ n (the in-kernel PIT
  // raises IRQ 0) to IOAPIC pin n, so the identity mapping the guest assumes without one is true.
  t.u8(kMadtLocalApicNmi);
  t.u8(6);
  t.u8(kAllProcessors);
  t.u16(0);  // flags: conforms to the bus
  t.u8(kNmiLint);
  return std::move(t).finish();
}

std::vector<std::uint8_t> build_mcfg(std::uint16_t segments) {
  AcpiTable t("MCFG", kMcfgRevision);
  t.u64(0);  // reserved
  for (std::uint16_t segment = 0; segment < segments; ++segment) {
    t.u64(layout::ecam_start(segment));
    t.u16(segment);                                                  // PCI segment
    t.u8(0);                                                         // first bus
    t.u8(static_cast<std::uint8_t>((layout::kEcamSize >> 20) - 1));  // 1 MiB of ECAM per bus
    t.u32(0);
  }
  return std::move(t).finish();
}

// VIOT (ACPI 6.4 §5.2.31, virtio-iommu's firmware description; revision 0): a virtio-pci IOMMU
// node, then one PCI-range node per endpoint pointing at it. One node per endpoint rather than
// one range: the endpoints sit on scattered slots, and a range would also claim the slots
// between them (the virtio-iommu device itself among them).
std::vector<std::uint8_t> build_viot(const ViotConfig& viot) {
  constexpr std::uint16_t kNodeOffset = kAcpiHeaderSize + 12;
  constexpr std::uint8_t kVirtioIommuPciNode = 3, kPciRangeNode = 1;
  constexpr std::uint16_t kVirtioIommuPciSize = 16, kPciRangeSize = 24;
  AcpiTable t("VIOT", 0);
  t.u16(static_cast<std::uint16_t>(1 + viot.endpoint_bdfs.size()));  // node count
  t.u16(kNodeOffset);
  t.pad_to(kNodeOffset);  // 8 reserved bytes

  t.u8(kVirtioIommuPciNode);
  t.u8(0);
  t.u16(kVirtioIommuPciSize);
  t.u16(0);  // segment
  t.u16(viot.iommu_bdf);
  t.pad_to(kNodeOffset + kVirtioIommuPciSize);

  for (std::uint16_t bdf : viot.endpoint_bdfs) {
    const std::size_t start = t.size();
    t.u8(kPciRangeNode);
    t.u8(0);
    t.u16(kPciRangeSize);
    t.u32(bdf);  // endpoint id of bdf_start
    t.u16(0);    // segments 0..0
    t.u16(0);
    t.u16(bdf);  // BDFs bdf..bdf
    t.u16(bdf);
    t.u16(kNodeOffset);  // output node: the virtio-iommu node above
    t.pad_to(start + kPciRangeSize);
  }
  return std::move(t).finish();
}

std::vector<std::uint8_t> build_xsdt(const std::vector<std::uint64_t>& tables) {
  AcpiTable t("XSDT", kXsdtRevision);
  for (std::uint64_t gpa : tables) {
    t.u64(gpa);
  }
  return std::move(t).finish();
}

std::vector<std::uint8_t> build_rsdp(std::uint64_t xsdt_gpa) {
  std::vector<std::uint8_t> r(kRsdpSize, 0);
  std::memcpy(r.data(), "RSD PTR ", 8);
  std::memcpy(r.data() + 9, kAcpiOemId, 6);
  r[15] = kRsdpRevision;
  // RSDT address (offset 16) stays 0: revision 2 readers use the XSDT.
  const auto length = static_cast<std::uint32_t>(kRsdpSize);
  std::memcpy(r.data() + 20, &length, sizeof length);
  std::memcpy(r.data() + 24, &xsdt_gpa, sizeof xsdt_gpa);
  r[8] = acpi_checksum(std::span(r).first(kRsdpV1Size));
  r[32] = acpi_checksum(r);
  return r;
}

std::uint64_t align_up(std::uint64_t v) { return (v + kTableAlign - 1) & ~(kTableAlign - 1); }

}  // namespace

Result<std::uint64_t> write_acpi_tables(const memory::GuestMemory& mem, const AcpiConfig& config) {
  if (config.num_cpus == 0 || config.num_cpus > kMaxAcpiCpus) {
    return Error::invalid("ACPI MADT: " + std::to_string(config.num_cpus) +
                          " vCPUs is out of range; give 1 to " + std::to_string(kMaxAcpiCpus));
  }
  if (config.max_cpus > kMaxAcpiCpus) {
    return Error::invalid("ACPI MADT: " + std::to_string(config.max_cpus) +
                          " possible vCPUs is out of range; give at most " +
                          std::to_string(kMaxAcpiCpus));
  }
  const std::uint64_t rsdp_gpa = layout::kAcpiStart;
  std::uint64_t next = align_up(rsdp_gpa + kRsdpSize);
  std::vector<std::pair<std::uint64_t, std::vector<std::uint8_t>>> placed;
  auto place = [&](std::vector<std::uint8_t> table) {
    const std::uint64_t gpa = next;
    next = align_up(gpa + table.size());
    placed.emplace_back(gpa, std::move(table));
    return gpa;
  };

  const std::uint64_t dsdt = place(build_dsdt(config, mem.top()));
  const std::uint64_t fadt = place(build_fadt(config, dsdt));
  const std::uint64_t madt = place(build_madt(config));
  const std::uint64_t mcfg = place(build_mcfg(config.pci_segments));
  std::vector<std::uint64_t> tables{fadt, madt, mcfg};
  if (config.viot) {
    tables.push_back(place(build_viot(*config.viot)));
  }
  const std::uint64_t xsdt = place(build_xsdt(tables));
  placed.emplace_back(rsdp_gpa, build_rsdp(xsdt));

  const std::uint64_t used = next - layout::kAcpiStart;
  if (used > layout::kAcpiMaxSize) {
    return Error::invalid("ACPI tables for " + std::to_string(config.num_cpus) + " vCPUs need " +
                          std::to_string(used) + " bytes, more than the " +
                          std::to_string(layout::kAcpiMaxSize) + " reserved at " +
                          hex(layout::kAcpiStart) + "; use fewer vCPUs or a smaller memory.hotplug_size");
  }
  for (const auto& [gpa, bytes] : placed) {
    KEEL_TRY_STATUS_WRAP(mem.write(gpa, bytes), "write ACPI tables");
  }
  return rsdp_gpa;
}

}  // namespace keel::vmm::boot
