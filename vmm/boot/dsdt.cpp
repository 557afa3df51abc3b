#include "vmm/boot/dsdt.hpp"

#include <string>
#include <string_view>
#include <vector>

#include "memory/layout.hpp"
#include "vmm/boot/acpi_table.hpp"
#include "vmm/boot/aml.hpp"

namespace keel::vmm::boot {

namespace layout = memory::layout;

namespace {

constexpr std::uint8_t kDsdtRevision = 2;  // 2 and up: AML integers are 64-bit
constexpr std::uint32_t kFirstSlot = 1;    // slot 0 is the host bridge, which raises nothing
constexpr std::uint32_t kLastSlot = 31;
constexpr std::uint32_t kPinsPerSlot = 4;

// _PRT: every slot's INTA..INTD to the IOAPIC GSI that layout::pci_intx_gsi names. The source is
// Zero, so the last field is a GSI and the line is level-triggered, active-low.
aml::Bytes pci_routing_table() {
  std::vector<aml::Bytes> entries;
  for (std::uint32_t slot = kFirstSlot; slot <= kLastSlot; ++slot) {
    for (std::uint32_t pin = 0; pin < kPinsPerSlot; ++pin) {
      entries.push_back(aml::package(
          {aml::integer((static_cast<std::uint64_t>(slot) << 16) | 0xffff), aml::integer(pin),
           aml::integer(0), aml::integer(layout::pci_intx_gsi(slot, pin))}));
    }
  }
  return aml::name("_PRT", aml::package(entries));
}

// `prefix` and the low byte of `n` in two hex digits: "S1F", "CP03".
std::string hex_name(std::string_view prefix, std::uint32_t n) {
  static const char kHex[] = "0123456789ABCDEF";
  return std::string(prefix) + kHex[(n >> 4) & 0xf] + kHex[n & 0xf];
}

// The name of slot `slot`'s device under PCI0: S01_ .. S1F_.
std::string slot_name(std::uint32_t slot) { return hex_name("S", slot); }

// ACPI PCI hot-plug as Linux's acpiphp drives it: every slot is a device with _ADR, _SUN and
// _EJ0, so acpiphp registers it; _EJ0 tells the VMM (B0EJ) that the guest let the function go.
aml::Bytes hotplug_slot(std::uint32_t slot) {
  return aml::device(slot_name(slot),
                     {
                         aml::name("_ADR", aml::integer(static_cast<std::uint64_t>(slot) << 16)),
                         aml::name("_SUN", aml::integer(slot)),
                         aml::method("_EJ0", 1, false,
                                     {aml::store(aml::integer(1ULL << slot),
                                                 aml::ref("\\_SB_.GED_.B0EJ"))}),
                     });
}

// The Generic Event Device (hardware-reduced ACPI's event source): its interrupt runs _EVT, which
// reads which slots gained a function (PCIU) and which the VMM wants ejected (PCID) and notifies
// each slot: Device Check (1) makes acpiphp scan it, Eject Request (3) makes it remove the
// driver and call the slot's _EJ0; and whether the power button was pressed.
// The vCPU hot-plug names: processor device CPxx, its register field CSxx (xx: the id in hex).
std::string cpu_name(std::string_view prefix, std::uint32_t id) { return hex_name(prefix, id); }

// Whether vCPUs can come and go (all but the boot CPU).
bool cpu_hotplug(const AcpiConfig& config) {
  return config.acpi_events && config.cpu_hotplug && config.max_cpus > 1;
}

// An ACPI slot register block (devices/acpi_slots.hpp) at `port`: the region and a DWordAcc
// field per slot, named `prefix` and the slot's number in hex.
std::vector<aml::Bytes> slot_registers(std::string_view region, std::uint16_t port,
                                       std::string_view prefix, std::uint32_t count) {
  std::vector<std::string> names;
  for (std::uint32_t n = 0; n < count; ++n) {
    names.push_back(hex_name(prefix, n));
  }
  const std::vector<std::string_view> views(names.begin(), names.end());
  return {aml::io_region(region, port, static_cast<std::uint16_t>(4 * count)),
          aml::dword_fields(region, views)};
}

// _STA of a slot's device: present (0xF) while its register `status` says enabled.
aml::Bytes present_while_enabled(const std::string& status) {
  return aml::method(
      "_STA", 0, false,
      {aml::if_then(aml::and_of(aml::ref(status), aml::integer(layout::kSlotEnabled)),
                    {aml::ret(aml::integer(0xf))}),
       aml::ret(aml::integer(0))});
}

// In the GED's _EVT: when slot register `status` has `bit` (kSlotInserting, kSlotRemoving), the
// guest acknowledges it, then notifies `device` with `code` (so it is notified once).
void acknowledge_and_notify(std::vector<aml::Bytes>& evt, const std::string& status,
                            const std::string& device, std::uint32_t bit, std::uint8_t code) {
  evt.push_back(aml::if_then(aml::and_of(aml::local(3), aml::integer(bit)),
                             {aml::store(aml::integer(bit), aml::ref(status)),
                              aml::notify(device, code)}));
}

// vCPU hot-plug as Linux's ACPI processor driver drives it: a processor device per possible
// vCPU, present (_STA) while its register says enabled, with the MADT entry (_MAT) Linux reads
// to find a hot-added CPU's APIC id, and _EJ0 to tell the VMM the guest let it go.
aml::Bytes processor_device(std::uint32_t id) {
  const std::string status = "\\_SB_." + cpu_name("CS", id);
  auto madt_entry = [id](bool enabled) {
    const std::uint8_t uid = static_cast<std::uint8_t>(id);
    const std::vector<std::uint8_t> entry{0, 8, uid, uid, enabled ? std::uint8_t{1} : std::uint8_t{0}, 0, 0, 0};
    return aml::buffer(entry);
  };
  const aml::Bytes enabled =
      aml::and_of(aml::ref(status), aml::integer(layout::kSlotEnabled));
  return aml::device(
      cpu_name("CP", id),
      {
          aml::name("_HID", aml::string("ACPI0007")),
          aml::name("_UID", aml::integer(id)),
          present_while_enabled(status),
          aml::method("_MAT", 0, false,
                      {aml::if_then(enabled, {aml::ret(madt_entry(true))}),
                       aml::ret(madt_entry(false))}),
          aml::method("_EJ0", 1, false,
                      {aml::store(aml::integer(layout::kSlotEject), aml::ref(status))}),
      });
}

// The vCPU registers and the processor devices.
std::vector<aml::Bytes> processor_devices(const AcpiConfig& config) {
  std::vector<aml::Bytes> terms =
      slot_registers("CPHR", layout::kCpuHotplugPort, "CS", config.max_cpus);
  for (std::uint32_t id = 0; id < config.max_cpus; ++id) {
    terms.push_back(processor_device(id));
  }
  return terms;
}

// ACPI memory hot-plug as Linux's acpi_memhotplug drives it: a memory device (PNP0C80) per DIMM,
// present (_STA) while its register says enabled, its range fixed (_CRS). The guest adds the
// memory when the GED notifies the device; onlining it is the guest's (udev, Kata's agent).
bool memory_hotplug(const AcpiConfig& config) {
  return config.acpi_events && config.memory_slots && config.memory_slots->count > 0;
}

std::vector<aml::Bytes> memory_devices(const MemorySlots& slots) {
  std::vector<aml::Bytes> terms =
      slot_registers("MHPR", layout::kMemoryHotplugPort, "MS", slots.count);
  for (std::uint32_t n = 0; n < slots.count; ++n) {
    const std::uint64_t base = slots.base + n * slots.size;
    const std::uint64_t end =
        std::min(base + slots.size, slots.base + (slots.total != 0 ? slots.total
                                                                   : slots.count * slots.size));
    aml::ResourceTemplate crs;
    crs.qword_memory(base, end - 1, /*ram=*/true);
    terms.push_back(aml::device(hex_name("MB", n),
                                {
                                    aml::name("_HID", aml::eisa_id("PNP0C80")),
                                    aml::name("_UID", aml::integer(n)),
                                    aml::name("_CRS", crs.to_buffer()),
                                    present_while_enabled("\\_SB_." + hex_name("MS", n)),
                                }));
  }
  return terms;
}

aml::Bytes generic_event_device(const AcpiConfig& config) {
  aml::ResourceTemplate crs;
  crs.irq_no_flags(static_cast<std::uint8_t>(layout::kGedIrq));
  std::vector<aml::Bytes> evt{aml::store(aml::ref("PCIU"), aml::local(0)),
                              aml::store(aml::ref("PCID"), aml::local(1))};
  for (std::uint32_t slot = kFirstSlot; slot <= kLastSlot; ++slot) {
    const std::string path = "\\_SB_.PCI0." + slot_name(slot);
    evt.push_back(aml::if_then(aml::and_of(aml::local(0), aml::integer(1ULL << slot)),
                               {aml::notify(path, 1)}));
    evt.push_back(aml::if_then(aml::and_of(aml::local(1), aml::integer(1ULL << slot)),
                               {aml::notify(path, 3)}));
  }
  // vCPUs: Device Check (1) for one announced, Eject Request (3) for one the VMM wants back;
  // each acknowledged first, so it is notified once. The boot CPU never comes or goes.
  for (std::uint32_t id = 1; cpu_hotplug(config) && id < config.max_cpus; ++id) {
    const std::string status = "\\_SB_." + cpu_name("CS", id);
    const std::string device = "\\_SB_." + cpu_name("CP", id);
    evt.push_back(aml::store(aml::ref(status), aml::local(3)));
    acknowledge_and_notify(evt, status, device, layout::kSlotInserting, 1);
    acknowledge_and_notify(evt, status, device, layout::kSlotRemoving, 3);
  }
  // DIMMs: Device Check (1) for one announced, acknowledged first.
  for (std::uint32_t n = 0; memory_hotplug(config) && n < config.memory_slots->count; ++n) {
    const std::string status = "\\_SB_." + hex_name("MS", n);
    evt.push_back(aml::store(aml::ref(status), aml::local(3)));
    acknowledge_and_notify(evt, status, "\\_SB_." + hex_name("MB", n), layout::kSlotInserting, 1);
  }
  // The power button: PBST bit 0 says it was pressed (reading clears it); Notify 0x80 is a
  // button's "pressed" (the ACPI spec's Device Object Notification for buttons).
  evt.push_back(aml::store(aml::ref("PBST"), aml::local(2)));
  evt.push_back(aml::if_then(aml::and_of(aml::local(2), aml::integer(1)),
                             {aml::notify("\\_SB_.PWRB", 0x80)}));
  std::vector<aml::Bytes> terms{
      aml::name("_HID", aml::string("ACPI0013")),
      aml::name("_UID", aml::integer(0)),
      aml::name("_CRS", crs.to_buffer()),
      aml::io_region("PHPR", layout::kPciHotplugPort, layout::kPciHotplugSize),
      aml::dword_fields("PHPR", {"PCIU", "PCID", "B0EJ"}),
      aml::io_region("PBTR", layout::kPowerButtonPort, layout::kPowerButtonSize),
      aml::dword_fields("PBTR", {"PBST"}),
      aml::method("_EVT", 1, true, evt),
  };
  return aml::device("GED_", terms);
}

aml::Bytes pci_host_bridge(std::uint64_t ram_end, bool hotplug, std::uint16_t segments) {
  const auto [mmio64, mmio64_end] = layout::mmio64_window(ram_end, 0, segments);
  aml::ResourceTemplate crs;
  crs.word_bus_number(0, static_cast<std::uint16_t>((layout::kEcamSize >> 20) - 1))
      .io(static_cast<std::uint16_t>(layout::kPciConfigAddressPort),
          static_cast<std::uint16_t>(layout::kPciConfigAddressPort), 1, 8)
      .dword_io(0x0000, 0x0cf7)
      .dword_io(0x0d00, 0xffff)
      .dword_memory(static_cast<std::uint32_t>(layout::kMmio32Start),
                    static_cast<std::uint32_t>(layout::kMmio32Start + layout::kMmio32Size - 1))
      .qword_memory(mmio64, mmio64_end - 1);
  std::vector<aml::Bytes> terms{
      aml::name("_HID", aml::eisa_id("PNP0A08")),  // PCI Express
      aml::name("_CID", aml::eisa_id("PNP0A03")),  // PCI
      aml::name("_SEG", aml::integer(0)),
      aml::name("_BBN", aml::integer(0)),
      aml::name("_UID", aml::integer(0)),
      aml::name("_CRS", crs.to_buffer()),
      pci_routing_table(),
  };
  for (std::uint32_t slot = kFirstSlot; hotplug && slot <= kLastSlot; ++slot) {
    terms.push_back(hotplug_slot(slot));
  }
  return aml::device("PCI0", terms);
}

// Another PCI segment's host bridge: bus 0 of segment `segment`, its share of the 64-bit window
// (its devices are virtio functions with 64-bit BARs and MSI-X: no ports, no INTx, no hot-plug).
aml::Bytes pci_segment_bridge(std::uint64_t ram_end, std::uint16_t segment, std::uint16_t segments) {
  const auto [start, end] = layout::mmio64_window(ram_end, segment, segments);
  aml::ResourceTemplate crs;
  crs.word_bus_number(0, 0).qword_memory(start, end - 1);
  return aml::device(hex_name("PC", segment),
                     {
                         aml::name("_HID", aml::eisa_id("PNP0A08")),
                         aml::name("_CID", aml::eisa_id("PNP0A03")),
                         aml::name("_SEG", aml::integer(segment)),
                         aml::name("_BBN", aml::integer(0)),
                         aml::name("_UID", aml::integer(segment)),
                         aml::name("_CRS", crs.to_buffer()),
                     });
}

// Linux accepts MMCONFIG once e820 or a PNP0C02 resource reserves it; say it in both places.
aml::Bytes ecam_reservation() {
  aml::ResourceTemplate crs;
  crs.dword_memory(static_cast<std::uint32_t>(layout::kEcamStart),
                   static_cast<std::uint32_t>(layout::kEcamStart + layout::kEcamAreaSize - 1),
                   /*consumer=*/true);
  return aml::device("MRES", {
                                 aml::name("_HID", aml::eisa_id("PNP0C02")),
                                 aml::name("_UID", aml::integer(0)),
                                 aml::name("_CRS", crs.to_buffer()),
                             });
}

aml::Bytes com1() {
  aml::ResourceTemplate crs;
  crs.io(layout::kCom1Port, layout::kCom1Port, 1, 8)
      .irq_no_flags(static_cast<std::uint8_t>(layout::kCom1Irq));
  return aml::device("COM1", {
                                 aml::name("_HID", aml::eisa_id("PNP0501")),  // 16550A
                                 aml::name("_UID", aml::integer(0)),
                                 aml::name("_CRS", crs.to_buffer()),
                             });
}

// The power button as hardware-reduced ACPI has it: a control-method button the GED notifies.
aml::Bytes power_button() {
  return aml::device("PWRB", {
                                 aml::name("_HID", aml::eisa_id("PNP0C0C")),
                                 aml::name("_UID", aml::integer(0)),
                             });
}

}  // namespace

std::vector<std::uint8_t> build_dsdt(const AcpiConfig& config, std::uint64_t ram_end) {
  AcpiTable table("DSDT", kDsdtRevision);
  // SLP_TYPa is what the guest writes to the sleep control register (see AcpiPm).
  table.append(
      aml::name("\\_S5_", aml::package({aml::integer(layout::kAcpiS5SleepType), aml::integer(0),
                                        aml::integer(0), aml::integer(0)})));
  std::vector<aml::Bytes> sb{
      pci_host_bridge(ram_end, config.acpi_events, config.pci_segments)};
  for (std::uint16_t segment = 1; segment < config.pci_segments; ++segment) {
    sb.push_back(pci_segment_bridge(ram_end, segment, config.pci_segments));
  }
  sb.push_back(ecam_reservation());
  if (config.com1) {
    sb.push_back(com1());
  }
  if (config.acpi_events) {
    sb.push_back(generic_event_device(config));
    sb.push_back(power_button());
  }
  if (cpu_hotplug(config)) {
    for (aml::Bytes& term : processor_devices(config)) {
      sb.push_back(std::move(term));
    }
  }
  if (memory_hotplug(config)) {
    for (aml::Bytes& term : memory_devices(*config.memory_slots)) {
      sb.push_back(std::move(term));
    }
  }
  table.append(aml::scope("\\_SB_", sb));
  return std::move(table).finish();
}

}  // namespace keel::vmm::boot
