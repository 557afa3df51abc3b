#include "vmm/boot/acpi.hpp"

#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <catch2/catch.hpp>

#include "base/size.hpp"
#include "memory/layout.hpp"
#include "tests/unit/boot/aml_reader.hpp"
#include "tests/unit/boot/test_support.hpp"
#include "vmm/boot/dsdt.hpp"

namespace keel::vmm::boot {
namespace {

namespace layout = memory::layout;
using test::Bytes;
using test::fetch;

std::string signature(std::span<const std::uint8_t> table) {
  return std::string(table.begin(), table.begin() + 4);
}

// Follows RSDP -> XSDT -> tables (and FADT -> DSDT) the way a guest would, checking every
// length and checksum on the way. Returns the tables by signature.
std::map<std::string, Bytes> read_tables(const memory::GuestMemory& mem, std::uint64_t rsdp_gpa) {
  const Bytes rsdp = test::read_guest(mem, rsdp_gpa, 36);
  REQUIRE(std::string(rsdp.begin(), rsdp.begin() + 8) == "RSD PTR ");
  CHECK(test::byte_sum(std::span(rsdp).first(20)) == 0);
  CHECK(test::byte_sum(rsdp) == 0);
  CHECK(rsdp[15] == 2);
  CHECK(fetch<std::uint32_t>(rsdp, 20) == 36);

  auto read_table = [&](std::uint64_t gpa) {
    CHECK(gpa >= layout::kAcpiStart);
    const Bytes header = test::read_guest(mem, gpa, 36);
    const std::uint32_t length = fetch<std::uint32_t>(header, 4);
    REQUIRE(length >= 36);
    CHECK(gpa + length <= layout::kAcpiStart + layout::kAcpiMaxSize);
    Bytes table = test::read_guest(mem, gpa, length);
    CAPTURE(signature(table));
    CHECK(test::byte_sum(table) == 0);
    CHECK(std::string(table.begin() + 10, table.begin() + 16) == "KEEL  ");
    return table;
  };

  std::map<std::string, Bytes> tables;
  const Bytes xsdt = read_table(fetch<std::uint64_t>(rsdp, 24));
  REQUIRE(signature(xsdt) == "XSDT");
  REQUIRE((xsdt.size() - 36) % 8 == 0);
  for (std::size_t at = 36; at < xsdt.size(); at += 8) {
    Bytes t = read_table(fetch<std::uint64_t>(xsdt, at));
    tables[signature(t)] = std::move(t);
  }
  REQUIRE(tables.count("FACP") == 1);
  Bytes dsdt = read_table(fetch<std::uint64_t>(tables["FACP"], 140));
  REQUIRE(signature(dsdt) == "DSDT");
  tables["DSDT"] = std::move(dsdt);
  tables["XSDT"] = xsdt;
  return tables;
}

std::size_t find_bytes(std::span<const std::uint8_t> hay, const Bytes& needle,
                       std::size_t from = 0) {
  auto it = std::search(hay.begin() + static_cast<std::ptrdiff_t>(from), hay.end(), needle.begin(),
                        needle.end());
  return it == hay.end() ? std::string::npos : static_cast<std::size_t>(it - hay.begin());
}

Bytes name_op(const std::string& name) {
  Bytes b{0x08};
  b.insert(b.end(), name.begin(), name.end());
  return b;
}

struct Guest {
  explicit Guest(std::uint64_t ram, std::uint32_t cpus = 2) {
    auto m = memory::GuestMemory::create(ram);
    REQUIRE(m.ok());
    mem = std::make_unique<memory::GuestMemory>(std::move(m).value());
    auto r = write_acpi_tables(*mem, AcpiConfig{cpus});
    REQUIRE(r.ok());
    rsdp = *r;
  }
  std::unique_ptr<memory::GuestMemory> mem;
  std::uint64_t rsdp = 0;
};

TEST_CASE("ACPI: RSDP where the BIOS-area scan finds it, every table checksummed") {
  Guest g(64 * kMiB);
  CHECK(g.rsdp == layout::kAcpiStart);
  CHECK(g.rsdp % 16 == 0);
  CHECK(g.rsdp >= 0xe0000);
  CHECK(g.rsdp + 36 <= 0x100000);
  const auto tables = read_tables(*g.mem, g.rsdp);
  for (const char* sig : {"FACP", "APIC", "MCFG", "DSDT", "XSDT"}) {
    CHECK(tables.count(sig) == 1);
  }
}

TEST_CASE("ACPI: FADT is hardware-reduced with the PM device's registers") {
  Guest g(64 * kMiB);
  const Bytes fadt = read_tables(*g.mem, g.rsdp).at("FACP");
  REQUIRE(fadt.size() == 276);
  CHECK(fadt[8] == 6);  // revision
  const std::uint32_t flags = fetch<std::uint32_t>(fadt, 112);
  CHECK((flags & (1U << 20)) != 0);  // HW_REDUCED_ACPI
  CHECK((flags & (1U << 10)) != 0);  // RESET_REG_SUP
  const std::uint16_t boot_arch = fetch<std::uint16_t>(fadt, 109);
  CHECK((boot_arch & (1U << 1)) != 0);  // 8042 present (default config)
  CHECK((boot_arch & (1U << 5)) != 0);  // no CMOS RTC (default config)

  // Generic addresses: System I/O, 8 bits, at the offsets the AcpiPm device decodes.
  auto check_gas = [&](std::size_t at, std::uint64_t port) {
    CAPTURE(at);
    CHECK(fadt[at] == 1);
    CHECK(fadt[at + 1] == 8);
    CHECK(fetch<std::uint64_t>(fadt, at + 4) == port);
  };
  check_gas(116, layout::kAcpiPmPort + layout::kAcpiResetOffset);
  CHECK(fadt[128] == layout::kAcpiResetValue);
  check_gas(244, layout::kAcpiPmPort + layout::kAcpiSleepControlOffset);
  check_gas(256, layout::kAcpiPmPort + layout::kAcpiSleepStatusOffset);
  CHECK(layout::kAcpiResetOffset < layout::kAcpiPmSize);
  CHECK(std::string(fadt.begin() + 268, fadt.begin() + 272) == "KEEL");
  CHECK(fetch<std::uint32_t>(fadt, 40) == 0);  // only X_DSDT
}

TEST_CASE("ACPI: FADT boot flags follow the config") {
  auto mem = memory::GuestMemory::create(64 * kMiB);
  REQUIRE(mem.ok());
  AcpiConfig config;
  config.i8042 = false;
  config.cmos_rtc = true;
  auto rsdp = write_acpi_tables(*mem, config);
  REQUIRE(rsdp.ok());
  const std::uint16_t boot_arch = fetch<std::uint16_t>(read_tables(*mem, *rsdp).at("FACP"), 109);
  CHECK((boot_arch & (1U << 1)) == 0);
  CHECK((boot_arch & (1U << 5)) == 0);
}

TEST_CASE("ACPI: MADT has one enabled local APIC per vCPU, the IOAPIC and no IRQ override") {
  for (std::uint32_t cpus : {1U, 4U, 254U}) {
    CAPTURE(cpus);
    Guest g(64 * kMiB, cpus);
    const Bytes madt = read_tables(*g.mem, g.rsdp).at("APIC");
    CHECK(fetch<std::uint32_t>(madt, 36) == layout::kLapicStart);
    CHECK((fetch<std::uint32_t>(madt, 40) & 1) == 1);  // PCAT_COMPAT
    std::vector<std::uint8_t> apic_ids;
    int ioapics = 0;
    int overrides = 0;
    for (std::size_t at = 44; at < madt.size();) {
      const std::uint8_t type = madt[at];
      const std::uint8_t len = madt[at + 1];
      REQUIRE(len >= 2);
      REQUIRE(at + len <= madt.size());
      if (type == 0) {
        REQUIRE(len == 8);
        CHECK((fetch<std::uint32_t>(madt, at + 4) & 1) == 1);
        CHECK(madt[at + 2] == madt[at + 3]);  // UID = APIC id
        apic_ids.push_back(madt[at + 3]);
      } else if (type == 1) {
        REQUIRE(len == 12);
        ++ioapics;
        CHECK(fetch<std::uint32_t>(madt, at + 4) == layout::kIoapicStart);
        CHECK(fetch<std::uint32_t>(madt, at + 8) == 0);
      } else if (type == 2) {
        ++overrides;  // KVM routes ISA IRQ n to IOAPIC pin n; an override would contradict it
      }
      at += len;
    }
    REQUIRE(apic_ids.size() == cpus);
    for (std::uint32_t i = 0; i < cpus; ++i) {
      CHECK(apic_ids[i] == i);
    }
    CHECK(ioapics == 1);
    CHECK(overrides == 0);
  }
}

TEST_CASE("ACPI: vCPU counts the MADT cannot describe are refused") {
  auto mem = memory::GuestMemory::create(64 * kMiB);
  REQUIRE(mem.ok());
  for (std::uint32_t cpus : {0U, kMaxAcpiCpus + 1}) {
    auto r = write_acpi_tables(*mem, AcpiConfig{cpus});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().context().find(std::to_string(cpus)) != std::string::npos);
    CHECK(r.error().context().find("254") != std::string::npos);
  }
}

TEST_CASE("ACPI: MCFG points at the ECAM for bus 0") {
  Guest g(64 * kMiB);
  const Bytes mcfg = read_tables(*g.mem, g.rsdp).at("MCFG");
  REQUIRE(mcfg.size() == 44 + 16);
  CHECK(fetch<std::uint64_t>(mcfg, 44) == layout::kEcamStart);
  CHECK(fetch<std::uint16_t>(mcfg, 52) == 0);
  CHECK(mcfg[54] == 0);
  CHECK(mcfg[55] == (layout::kEcamSize >> 20) - 1);
}

TEST_CASE("ACPI: DSDT has \\_S5_, PCI0 with its windows, _PRT, MRES and COM1") {
  for (std::uint64_t ram : {512 * kMiB, 6 * kGiB}) {
    CAPTURE(ram);
    Guest g(ram);
    const Bytes dsdt = read_tables(*g.mem, g.rsdp).at("DSDT");
    CHECK(dsdt[8] >= 2);  // 64-bit integers

    for (const char* name :
         {"PCI0", "_HID", "_CID", "_SEG", "_BBN", "_UID", "_CRS", "_PRT", "MRES", "COM1"}) {
      CAPTURE(name);
      CHECK(find_bytes(dsdt, Bytes(name, name + 4)) != std::string::npos);
    }
    CHECK(find_bytes(dsdt, Bytes{0x0c, 0x41, 0xd0, 0x0a, 0x08}) != std::string::npos);  // PNP0A08
    CHECK(find_bytes(dsdt, Bytes{0x0c, 0x41, 0xd0, 0x0a, 0x03}) != std::string::npos);  // PNP0A03

    // The top level is Name(\_S5_, Package) then Scope(\_SB_) running to the table's end.
    std::size_t at = 36;
    REQUIRE(dsdt[at] == 0x08);
    REQUIRE(Bytes(dsdt.begin() + 37, dsdt.begin() + 42) == Bytes{'\\', '_', 'S', '5', '_'});
    at = 42;
    REQUIRE(dsdt[at] == 0x12);
    const auto s5_len = test::decode_pkg_length(dsdt, at + 1);
    std::size_t el = at + 1 + s5_len.bytes + 1;  // past the element count
    CHECK(test::decode_integer(dsdt, el) == layout::kAcpiS5SleepType);
    at += 1 + s5_len.value;
    REQUIRE(dsdt[at] == 0x10);
    CHECK(test::decode_pkg_length(dsdt, at + 1).value == dsdt.size() - at - 1);

    // PCI0's _CRS: bus 0, the two I/O ranges around 0xcf8, the 32- and 64-bit windows.
    const std::size_t pci0 = find_bytes(dsdt, Bytes{'P', 'C', 'I', '0'});
    std::size_t crs = find_bytes(dsdt, name_op("_CRS"), pci0);
    REQUIRE(crs != std::string::npos);
    crs += 5;
    REQUIRE(dsdt[crs] == 0x11);
    const auto buf_len = test::decode_pkg_length(dsdt, crs + 1);
    std::size_t size_at = crs + 1 + buf_len.bytes;
    const std::uint64_t size = test::decode_integer(dsdt, size_at);
    CHECK(size_at + size == crs + 1 + buf_len.value);
    const auto descs = test::parse_resources(std::span(dsdt).subspan(size_at, size));
    CHECK(test::byte_sum(std::span(dsdt).subspan(size_at, size)) == 0);
    bool bus = false, io_low = false, io_high = false, mem32 = false, mem64 = false;
    for (const auto& d : descs) {
      bus |= d.tag == 0x88 && d.space == 2 && d.min == 0 && d.max == 0;
      io_low |= d.tag == 0x87 && d.space == 1 && d.min == 0 && d.max == 0xcf7;
      io_high |= d.tag == 0x87 && d.space == 1 && d.min == 0xd00 && d.max == 0xffff;
      mem32 |= d.tag == 0x87 && d.space == 0 && d.min == layout::kMmio32Start &&
               d.length == layout::kMmio32Size;
      if (d.tag == 0x8a && d.space == 0) {
        mem64 = true;
        CHECK(d.min == layout::mmio64_start(g.mem->end()));
        CHECK(d.min >= g.mem->end());
        CHECK(d.min >= layout::kRam64Start);
        CHECK(d.min % layout::kMmio64Align == 0);
        CHECK(d.length == layout::kMmio64Size);
      }
    }
    CHECK(bus);
    CHECK(io_low);
    CHECK(io_high);
    CHECK(mem32);
    CHECK(mem64);

    // _PRT: slots 1..31, INTA..INTD, each to the shared GSI mapping.
    std::size_t prt = find_bytes(dsdt, name_op("_PRT"));
    REQUIRE(prt != std::string::npos);
    prt += 5;
    REQUIRE(dsdt[prt] == 0x12);
    const auto prt_len = test::decode_pkg_length(dsdt, prt + 1);
    std::size_t p = prt + 1 + prt_len.bytes;
    REQUIRE(dsdt[p] == 31 * 4);
    ++p;
    std::map<std::pair<std::uint64_t, std::uint64_t>, std::uint64_t> routes;
    for (int i = 0; i < 31 * 4; ++i) {
      REQUIRE(dsdt[p] == 0x12);
      const auto e_len = test::decode_pkg_length(dsdt, p + 1);
      const std::size_t end = p + 1 + e_len.value;
      std::size_t q = p + 1 + e_len.bytes;
      REQUIRE(dsdt[q++] == 4);
      const std::uint64_t addr = test::decode_integer(dsdt, q);
      const std::uint64_t pin = test::decode_integer(dsdt, q);
      const std::uint64_t source = test::decode_integer(dsdt, q);
      const std::uint64_t gsi = test::decode_integer(dsdt, q);
      CHECK(q == end);
      CHECK((addr & 0xffff) == 0xffff);
      CHECK(source == 0);
      CHECK(gsi >= 16);
      CHECK(gsi <= 23);
      CHECK(gsi == layout::pci_intx_gsi(static_cast<std::uint32_t>(addr >> 16),
                                        static_cast<std::uint32_t>(pin)));
      routes[{addr >> 16, pin}] = gsi;
      p = end;
    }
    CHECK(routes.size() == 31 * 4);
    CHECK(routes.begin()->first.first == 1);
    CHECK(routes.rbegin()->first.first == 31);
  }
}

TEST_CASE("layout helpers the DSDT shares with the PCI code") {
  // The 64-bit window never starts below 4 GiB or inside RAM, and is kMmio64Align-aligned.
  for (std::uint64_t end :
       {512 * kMiB, 3 * kGiB, 4 * kGiB, 4 * kGiB + 1, 7 * kGiB, 7 * kGiB + 4096}) {
    CAPTURE(end);
    const std::uint64_t start = layout::mmio64_start(end);
    CHECK(start >= layout::kRam64Start);
    CHECK(start >= end);
    CHECK(start % layout::kMmio64Align == 0);
    CHECK(start - std::max(end, layout::kRam64Start) < layout::kMmio64Align);
  }
  // INTx lines stay in 16..23 and the four pins of a slot use four different lines.
  for (std::uint32_t slot = 0; slot < 32; ++slot) {
    std::set<std::uint32_t> lines;
    for (std::uint32_t pin = 0; pin < 4; ++pin) {
      const std::uint32_t gsi = layout::pci_intx_gsi(slot, pin);
      CHECK(gsi >= layout::kPciIntxGsiBase);
      CHECK(gsi < layout::kPciIntxGsiBase + layout::kPciIntxGsiCount);
      lines.insert(gsi);
    }
    CHECK(lines.size() == 4);
  }
  CHECK(layout::kAcpiS5SleepControlValue ==
        ((layout::kAcpiS5SleepType << 2) | 0x20));  // SLP_TYPx in 4:2, SLP_EN bit 5
}

TEST_CASE("ACPI: DSDT leaves COM1 out when asked") {
  AcpiConfig config;
  config.com1 = false;
  const Bytes dsdt = build_dsdt(config, 512 * kMiB);
  CHECK(find_bytes(dsdt, Bytes{'C', 'O', 'M', '1'}) == std::string::npos);
  CHECK(find_bytes(dsdt, Bytes{'P', 'C', 'I', '0'}) != std::string::npos);
  CHECK(test::byte_sum(dsdt) == 0);
}

TEST_CASE("ACPI: no VIOT without a virtual IOMMU") {
  Guest g(64 * kMiB);
  CHECK(read_tables(*g.mem, g.rsdp).count("VIOT") == 0);
}

// Read as Linux's drivers/acpi/viot.c does: nodes from node_offset, each within the table, PCI
// range nodes whose output node is a virtio-pci IOMMU node.
TEST_CASE("ACPI: VIOT names the virtio-iommu function and one PCI range per endpoint") {
  auto mem = memory::GuestMemory::create(64 * kMiB);
  REQUIRE(mem.ok());
  AcpiConfig config;
  config.viot = ViotConfig{.iommu_bdf = 3 << 3, .endpoint_bdfs = {1 << 3, 4 << 3}};
  auto rsdp = write_acpi_tables(*mem, config);
  REQUIRE(rsdp.ok());
  const auto tables = read_tables(*mem, *rsdp);
  REQUIRE(tables.count("VIOT") == 1);
  const Bytes& viot = tables.at("VIOT");
  CHECK(viot[8] == 0);  // revision
  CHECK(test::byte_sum(viot) == 0);
  const std::uint16_t count = fetch<std::uint16_t>(viot, 36);
  const std::uint16_t offset = fetch<std::uint16_t>(viot, 38);
  CHECK(count == 3);
  CHECK(offset == 48);
  std::size_t at = offset;
  std::vector<std::pair<std::uint16_t, std::uint16_t>> ranges;  // bdf, endpoint id
  std::size_t iommu_node = 0;
  for (int i = 0; i < count; ++i) {
    REQUIRE(at + 4 <= viot.size());
    const std::uint8_t type = viot[at];
    const std::uint16_t length = fetch<std::uint16_t>(viot, at + 2);
    REQUIRE(at + length <= viot.size());
    if (type == 3) {
      REQUIRE(length == 16);
      CHECK(fetch<std::uint16_t>(viot, at + 4) == 0);  // segment
      CHECK(fetch<std::uint16_t>(viot, at + 6) == (3 << 3));
      iommu_node = at;
    } else {
      REQUIRE(type == 1);
      REQUIRE(length == 24);
      const std::uint16_t bdf_start = fetch<std::uint16_t>(viot, at + 12);
      CHECK(fetch<std::uint16_t>(viot, at + 14) == bdf_start);  // bdf_end: one function
      CHECK(fetch<std::uint16_t>(viot, at + 8) == 0);           // segments 0..0
      CHECK(fetch<std::uint16_t>(viot, at + 10) == 0);
      CHECK(fetch<std::uint16_t>(viot, at + 16) == offset);  // output node: the IOMMU
      ranges.emplace_back(bdf_start, fetch<std::uint32_t>(viot, at + 4));
    }
    at += length;
  }
  CHECK(at == viot.size());
  CHECK(iommu_node == offset);
  CHECK(ranges == std::vector<std::pair<std::uint16_t, std::uint16_t>>{{8, 8}, {32, 32}});
}

// iasl (acpica-tools, installed by scripts/setup.sh) must disassemble every table without complaint.
// iasl's disassembly of one table (its ASL text); fails the test if iasl does.
std::string disassemble(const std::string& sig, const Bytes& bytes) {
  if (std::system("command -v iasl >/dev/null 2>&1") != 0) {
    FAIL("iasl is not installed: scripts/setup.sh installs it (acpica-tools)");
  }
  test::TempDir dir;
  const std::string dat = dir.file(sig + ".dat", bytes);
  const std::string log = dir.path(sig + ".log");
  const std::string cmd = "cd '" + dir.path("") + "' && iasl -d '" + dat + "' >'" + log + "' 2>&1";
  const int status = std::system(cmd.c_str());
  std::ifstream in(log);
  std::stringstream out;
  out << in.rdbuf();
  INFO(out.str());
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  std::ifstream dsl(dir.path(sig + ".dsl"));
  REQUIRE(dsl.good());
  std::stringstream text;
  text << dsl.rdbuf();
  return text.str();
}

TEST_CASE("ACPI: iasl disassembles the tables cleanly") {
  Guest g(6 * kGiB, 4);
  for (const auto& [sig, bytes] : read_tables(*g.mem, g.rsdp)) {
    CAPTURE(sig);
    const std::string text = disassemble(sig, bytes);
    CHECK(text.find("Error") == std::string::npos);
    CHECK(text.find("Invalid") == std::string::npos);
  }
}

TEST_CASE("ACPI: vCPUs beyond the boot ones are possible: disabled in the MADT, processor devices in the DSDT") {
  auto mem = memory::GuestMemory::create(64 * kMiB);
  REQUIRE(mem.ok());
  AcpiConfig config;
  config.num_cpus = 2;
  config.max_cpus = 4;
  config.cpu_hotplug = true;
  auto rsdp = write_acpi_tables(*mem, config);
  REQUIRE(rsdp.ok());
  const auto tables = read_tables(*mem, *rsdp);
  const Bytes madt = tables.at("APIC");
  std::vector<std::uint32_t> flags;
  for (std::size_t at = 44; at < madt.size(); at += madt[at + 1]) {
    if (madt[at] == 0) {
      CHECK(madt[at + 3] == flags.size());  // APIC ids 0..3 in order
      flags.push_back(fetch<std::uint32_t>(madt, at + 4));
    }
  }
  CHECK(flags == std::vector<std::uint32_t>{1, 1, 0, 0});

  const std::string text = disassemble("DSDT", tables.at("DSDT"));
  INFO(text);
  CHECK(text.find("Error") == std::string::npos);
  CHECK(text.find("OperationRegion (CPHR, SystemIO, 0x1000, 0x10)") != std::string::npos);
  CHECK(text.find("Device (CP03)") != std::string::npos);
  CHECK(text.find("Device (CP04)") == std::string::npos);
  CHECK(text.find("Name (_HID, \"ACPI0007\" /* Processor Device */)") != std::string::npos);
  // _STA and _MAT follow the register; _EJ0 writes the eject bit; _EVT acknowledges, then
  // notifies: Device Check to add, Eject Request to remove; the boot CPU is never notified.
  CHECK(text.find("If ((\\_SB.CS03 & One))") != std::string::npos);
  CHECK(text.find("Return (0x0F)") != std::string::npos);
  CHECK(text.find("\\_SB.CS03 = 0x08") != std::string::npos);
  CHECK(text.find("Notify (\\_SB.CP03, One)") != std::string::npos);
  CHECK(text.find("Notify (\\_SB.CP03, 0x03)") != std::string::npos);
  CHECK(text.find("Notify (\\_SB.CP00") == std::string::npos);
  // _MAT: an enabled local APIC entry with UID and APIC id 3, and the disabled one.
  CHECK(text.find("0x00, 0x08, 0x03, 0x03, 0x01, 0x00, 0x00, 0x00") != std::string::npos);
  CHECK(text.find("0x00, 0x08, 0x03, 0x03, 0x00, 0x00, 0x00, 0x00") != std::string::npos);

  // 254 possible vCPUs (the most): the tables, a processor device each, still fit.
  AcpiConfig most = config;
  most.num_cpus = 1;
  most.max_cpus = kMaxAcpiCpus;
  auto written = write_acpi_tables(*mem, most);
  INFO((written.ok() ? "" : written.error().message()));
  CHECK(written.ok());
  CHECK(disassemble("DSDT", read_tables(*mem, *written).at("DSDT")).find("Device (CPFD)") !=
        std::string::npos);

  // Without hot-plug (not asked for, or no GED): no processor devices.
  AcpiConfig fixed = config;
  fixed.cpu_hotplug = false;
  CHECK(disassemble("DSDT", build_dsdt(fixed, 512 * kMiB)).find("ACPI0007") == std::string::npos);
  AcpiConfig no_events = config;
  no_events.acpi_events = false;
  CHECK(disassemble("DSDT", build_dsdt(no_events, 512 * kMiB)).find("ACPI0007") == std::string::npos);
}

TEST_CASE("ACPI: a second PCI segment has its MCFG entry and its host bridge") {
  auto mem = memory::GuestMemory::create(64 * kMiB);
  REQUIRE(mem.ok());
  AcpiConfig config;
  config.pci_segments = 2;
  auto rsdp = write_acpi_tables(*mem, config);
  REQUIRE(rsdp.ok());
  const auto tables = read_tables(*mem, *rsdp);
  const Bytes mcfg = tables.at("MCFG");
  REQUIRE(mcfg.size() == 44 + 2 * 16);
  CHECK(fetch<std::uint64_t>(mcfg, 60) == layout::kEcamStart + layout::kEcamSize);
  CHECK(fetch<std::uint16_t>(mcfg, 68) == 1);  // its segment
  const std::string text = disassemble("DSDT", tables.at("DSDT"));
  INFO(text);
  CHECK(text.find("Error") == std::string::npos);
  CHECK(text.find("Device (PC01)") != std::string::npos);
  CHECK(text.find("Name (_SEG, One)") != std::string::npos);
  // The 64-bit window is shared: segment 1 has its top 1 GiB, segment 0 the rest.
  const auto [start0, end0] = layout::mmio64_window(mem->top(), 0, 2);
  const auto [start1, end1] = layout::mmio64_window(mem->top(), 1, 2);
  CHECK(end0 == start1);
  CHECK(end1 - start1 == layout::kSegmentMmio64Size);
  CHECK(start0 == layout::mmio64_start(mem->top()));
  CHECK(end1 == start0 + layout::kMmio64Size);
}

TEST_CASE("ACPI: hot-pluggable DIMMs are memory devices whose presence follows a register") {
  auto mem = memory::GuestMemory::create(64 * kMiB);
  REQUIRE(mem.ok());
  AcpiConfig config;
  config.memory_slots = MemorySlots{0x1'0000'0000, 256 * kMiB, 3};
  auto rsdp = write_acpi_tables(*mem, config);
  REQUIRE(rsdp.ok());
  const std::string text = disassemble("DSDT", read_tables(*mem, *rsdp).at("DSDT"));
  INFO(text);
  CHECK(text.find("Error") == std::string::npos);
  CHECK(text.find("OperationRegion (MHPR, SystemIO, 0x1400, 0x0C)") != std::string::npos);
  CHECK(text.find("Device (MB02)") != std::string::npos);
  CHECK(text.find("Device (MB03)") == std::string::npos);
  CHECK(text.find("Name (_HID, EisaId (\"PNP0C80\") /* Memory Device */)") != std::string::npos);
  // DIMM 2's fixed range: 0x1_2000_0000 .. +256 MiB - 1.
  CHECK(text.find("0x0000000120000000, // Range Minimum") != std::string::npos);
  CHECK(text.find("0x000000012FFFFFFF, // Range Maximum") != std::string::npos);
  CHECK(text.find("If ((\\_SB.MS02 & One))") != std::string::npos);
  CHECK(text.find("Cacheable, ReadWrite") != std::string::npos);  // RAM, not a device window
  // _EVT acknowledges an announced DIMM, then asks the guest to check it.
  CHECK(text.find("\\_SB.MS02 = 0x02") != std::string::npos);
  CHECK(text.find("Notify (\\_SB.MB02, One)") != std::string::npos);

  // The most DIMMs there can be, beside the most vCPUs: the DSDT still fits.
  AcpiConfig most = config;
  most.max_cpus = kMaxAcpiCpus;
  most.cpu_hotplug = true;
  most.memory_slots->count = memory::layout::kMaxMemorySlots;
  auto written = write_acpi_tables(*mem, most);
  INFO((written.ok() ? "" : written.error().message()));
  CHECK(written.ok());

  // Without the GED (no API), no memory devices.
  AcpiConfig quiet = config;
  quiet.acpi_events = false;
  auto plain = write_acpi_tables(*mem, quiet);
  REQUIRE(plain.ok());
  CHECK(disassemble("DSDT", read_tables(*mem, *plain).at("DSDT")).find("PNP0C80") ==
        std::string::npos);
}

TEST_CASE("ACPI: DSDT has 31 ejectable slots and the Generic Event Device that notifies them") {
  const std::string text = disassemble("DSDT", build_dsdt(AcpiConfig{}, 512 * kMiB));
  INFO(text);
  // Each slot: its address, slot number, and an _EJ0 that writes its bit to B0EJ.
  CHECK(text.find("Device (S01)") != std::string::npos);
  CHECK(text.find("Device (S1F)") != std::string::npos);
  CHECK(text.find("Device (S20)") == std::string::npos);
  CHECK(text.find("Name (_ADR, 0x001F0000)") != std::string::npos);
  CHECK(text.find("Name (_SUN, 0x1F)") != std::string::npos);
  CHECK(text.find("\\_SB.GED.B0EJ = 0x80000000") != std::string::npos);
  // The GED: its _HID, the ISA line, the registers at the hot-plug port, and _EVT's notices.
  CHECK(text.find("\"ACPI0013\"") != std::string::npos);
  CHECK(text.find("IRQNoFlags ()\n                    {5}") != std::string::npos);
  CHECK(text.find("OperationRegion (PHPR, SystemIO, 0x0610, 0x0C)") != std::string::npos);
  CHECK(text.find("PCIU,   32") != std::string::npos);
  CHECK(text.find("Method (_EVT, 1, Serialized)") != std::string::npos);
  CHECK(text.find("Notify (\\_SB.PCI0.S1F, One)") != std::string::npos);
  CHECK(text.find("Notify (\\_SB.PCI0.S1F, 0x03)") != std::string::npos);
  // The power button: a PNP0C0C device the GED notifies (0x80) when PBST says it was pressed.
  CHECK(text.find("Device (PWRB)") != std::string::npos);
  CHECK(text.find("EisaId (\"PNP0C0C\")") != std::string::npos);
  CHECK(text.find("OperationRegion (PBTR, SystemIO, 0x061C, 0x04)") != std::string::npos);
  CHECK(text.find("Notify (\\_SB.PWRB, 0x80)") != std::string::npos);
  CHECK(text.find("Error") == std::string::npos);

  AcpiConfig without;
  without.acpi_events = false;
  const Bytes plain = build_dsdt(without, 512 * kMiB);
  CHECK(find_bytes(plain, Bytes{'G', 'E', 'D', '_'}) == std::string::npos);
  CHECK(find_bytes(plain, Bytes{'_', 'E', 'J', '0'}) == std::string::npos);
  CHECK(find_bytes(plain, Bytes{'P', 'W', 'R', 'B'}) == std::string::npos);
}

}  // namespace
}  // namespace keel::vmm::boot
