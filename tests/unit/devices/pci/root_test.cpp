#include <catch2/catch.hpp>

#include "devices/pci/config_space.hpp"
#include "devices/pci/host_bridge.hpp"
#include "devices/pci/root.hpp"

namespace keel::pci {
namespace {

std::uint32_t io_read32(PciConfigIo& io, std::uint32_t address, std::uint8_t port_off = 4,
                        std::size_t size = 4) {
  io.write(0, std::span(reinterpret_cast<const std::uint8_t*>(&address), 4));
  std::uint32_t v = 0;
  io.read(port_off, std::span(reinterpret_cast<std::uint8_t*>(&v), size));
  return v;
}

std::uint32_t cf8(std::uint8_t slot, std::uint8_t reg) {
  return 0x8000'0000U | (static_cast<std::uint32_t>(slot) << 11) | reg;
}

TEST_CASE("mechanism #1 reads the host bridge identity; empty slots read all-ones") {
  auto root = std::make_shared<PciRoot>();
  PciConfigIo io(root);
  CHECK(io_read32(io, cf8(0, 0)) == (std::uint32_t{PciHostBridge::kDevice} << 16 | PciHostBridge::kVendor));
  CHECK(io_read32(io, cf8(0, 8)) >> 8 == PciHostBridge::kClass);
  CHECK(io_read32(io, cf8(1, 0)) == 0xffffffff);
  CHECK(io_read32(io, cf8(0, 0) & 0x7fffffff) == 0xffffffff);  // enable bit clear
  // Byte read of the device id's high byte through port 0xCFF.
  CHECK(io_read32(io, cf8(0, 0), 7, 1) == (PciHostBridge::kDevice >> 8));
  // The address register reads back.
  std::uint32_t addr = 0;
  io.read(0, std::span(reinterpret_cast<std::uint8_t*>(&addr), 4));
  CHECK(addr == cf8(0, 0));
}

TEST_CASE("ECAM reaches the same configuration space") {
  auto root = std::make_shared<PciRoot>();
  PciEcam ecam(root);
  std::uint32_t v = 0;
  ecam.read(0, std::span(reinterpret_cast<std::uint8_t*>(&v), 4));
  CHECK((v & 0xffff) == PciHostBridge::kVendor);
  ecam.read((3U << 15) | 0, std::span(reinterpret_cast<std::uint8_t*>(&v), 4));
  CHECK(v == 0xffffffff);
  // A read crossing a dword boundary is refused.
  ecam.read(2, std::span(reinterpret_cast<std::uint8_t*>(&v), 4));
  CHECK(v == 0xffffffff);
  // Function 1 of slot 0 does not exist.
  ecam.read(1U << 12, std::span(reinterpret_cast<std::uint8_t*>(&v), 4));
  CHECK(v == 0xffffffff);
}

TEST_CASE("host bridge identity is read-only") {
  auto root = std::make_shared<PciRoot>();
  PciEcam ecam(root);
  const std::uint32_t junk = 0x12345678;
  ecam.write(0, std::span(reinterpret_cast<const std::uint8_t*>(&junk), 4));
  std::uint32_t v = 0;
  ecam.read(0, std::span(reinterpret_cast<std::uint8_t*>(&v), 4));
  CHECK((v & 0xffff) == PciHostBridge::kVendor);
}

TEST_CASE("PciConfigSpace write masks implement BAR sizing") {
  PciConfigSpace cs;
  cs.set32(pci::kBar0, 0x8);                     // 32-bit prefetchable memory BAR
  cs.set_writable32(pci::kBar0, ~(0x10000U - 1));  // 64 KiB
  const std::uint32_t ones = 0xffffffff;
  cs.write(pci::kBar0, std::span(reinterpret_cast<const std::uint8_t*>(&ones), 4));
  CHECK(cs.get32(pci::kBar0) == 0xffff0008);
  const std::uint32_t addr = 0xc0012345;
  cs.write(pci::kBar0, std::span(reinterpret_cast<const std::uint8_t*>(&addr), 4));
  CHECK(cs.get32(pci::kBar0) == 0xc0010008);
}

TEST_CASE("PciRoot fills slots in order and reports a full bus") {
  PciRoot root;
  for (int i = 1; i < PciRoot::kSlots; ++i) {
    auto slot = root.add(std::make_shared<PciHostBridge>());
    REQUIRE(slot.ok());
    CHECK(*slot == i);
  }
  auto full = root.add(std::make_shared<PciHostBridge>());
  REQUIRE_FALSE(full.ok());
  CHECK(full.error().kind() == ErrorKind::kInvalid);  // too many devices: the request's to fix
  CHECK(root.remove(5).ok());
  CHECK(*root.add(std::make_shared<PciHostBridge>()) == 5);
  CHECK_FALSE(root.remove(0).ok());
}

}  // namespace
}  // namespace keel::pci
