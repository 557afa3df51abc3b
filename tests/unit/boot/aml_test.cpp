#include "vmm/boot/aml.hpp"

#include <catch2/catch.hpp>

#include "tests/unit/boot/aml_reader.hpp"
#include "tests/unit/boot/test_support.hpp"

namespace keel::vmm::boot::aml {
namespace {

TEST_CASE("PkgLength uses the fewest bytes and counts itself") {
  for (std::size_t body : {0UL, 1UL, 61UL, 62UL, 63UL, 64UL, 4093UL, 4094UL, 4095UL, 100000UL,
                           (1UL << 20) - 3, (1UL << 20) - 2, (1UL << 24)}) {
    CAPTURE(body);
    const Bytes enc = pkg_length(body);
    const std::size_t expected_bytes = body + 1 <= 63           ? 1
                                       : body + 2 < (1UL << 12) ? 2
                                       : body + 3 < (1UL << 20) ? 3
                                                                : 4;
    CHECK(enc.size() == expected_bytes);
    const auto decoded = test::decode_pkg_length(enc, 0);
    CHECK(decoded.bytes == enc.size());
    CHECK(decoded.value == body + enc.size());
  }
}

TEST_CASE("integers take the shortest prefix") {
  CHECK(integer(0) == Bytes{0x00});
  CHECK(integer(1) == Bytes{0x01});
  CHECK(integer(2) == Bytes{0x0a, 0x02});
  CHECK(integer(0xff) == Bytes{0x0a, 0xff});
  CHECK(integer(0x100) == Bytes{0x0b, 0x00, 0x01});
  CHECK(integer(0x1ffff) == Bytes{0x0c, 0xff, 0xff, 0x01, 0x00});
  CHECK(integer(0x1'0000'0000) == Bytes{0x0e, 0, 0, 0, 0, 1, 0, 0, 0});
  for (std::uint64_t v : {0ULL, 1ULL, 200ULL, 40000ULL, 0xdeadbeefULL, 0x40'0000'0000ULL}) {
    const Bytes enc = integer(v);
    std::size_t at = 0;
    CHECK(test::decode_integer(enc, at) == v);
    CHECK(at == enc.size());
  }
}

TEST_CASE("names: root, single, dual and multi segments, padded") {
  CHECK(name_string("_HID") == Bytes{'_', 'H', 'I', 'D'});
  CHECK(name_string("\\_S5") == Bytes{'\\', '_', 'S', '5', '_'});
  CHECK(name_string("\\_SB_.PCI0") == Bytes{'\\', 0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I', '0'});
  CHECK(name_string("\\_SB.PCI0.COM1") ==
        Bytes{'\\', 0x2f, 3, '_', 'S', 'B', '_', 'P', 'C', 'I', '0', 'C', 'O', 'M', '1'});
  CHECK(name_string("^FOO") == Bytes{'^', 'F', 'O', 'O', '_'});
}

TEST_CASE("EISAID compresses the vendor letters and product digits") {
  // The ACPI spec's examples: PNP0A03 and PNP0A08 as iasl emits them.
  CHECK(eisa_id("PNP0A03") == Bytes{0x0c, 0x41, 0xd0, 0x0a, 0x03});
  CHECK(eisa_id("PNP0A08") == Bytes{0x0c, 0x41, 0xd0, 0x0a, 0x08});
  CHECK(eisa_id("PNP0501") == Bytes{0x0c, 0x41, 0xd0, 0x05, 0x01});
}

TEST_CASE("strings, packages and buffers carry their counts") {
  CHECK(string("ab") == Bytes{0x0d, 'a', 'b', 0});
  const Bytes pkg = package({integer(5), integer(0)});
  CHECK(pkg == Bytes{0x12, 0x05, 0x02, 0x0a, 0x05, 0x00});
  const Bytes buf = buffer(Bytes{1, 2, 3});
  CHECK(buf == Bytes{0x11, 0x06, 0x0a, 0x03, 1, 2, 3});
  const Bytes dev = device("PCI0", {name("_UID", integer(0))});
  CHECK(dev[0] == 0x5b);
  CHECK(dev[1] == 0x82);
  const auto len = test::decode_pkg_length(dev, 2);
  CHECK(len.value == dev.size() - 2);
}

TEST_CASE("resource templates: descriptor sizes, fields and end-tag checksum") {
  ResourceTemplate rt;
  rt.word_bus_number(0, 0)
      .io(0xcf8, 0xcf8, 1, 8)
      .dword_io(0xd00, 0xffff)
      .dword_memory(0xc0000000, 0xdfffffff)
      .qword_memory(0x1'0000'0000, 0x40'ffff'ffff)
      .irq_no_flags(4);
  const Bytes d = rt.descriptors();
  CHECK(test::byte_sum(d) == 0);
  const auto descs = test::parse_resources(d);
  REQUIRE(descs.size() == 6);
  CHECK(descs[0].tag == 0x88);
  CHECK(descs[0].space == 2);
  CHECK(descs[0].min == 0);
  CHECK(descs[0].max == 0);
  CHECK(descs[0].length == 1);
  CHECK(descs[1].tag == 0x47);
  CHECK(descs[1].min == 0xcf8);
  CHECK(descs[1].length == 8);
  CHECK(descs[2].tag == 0x87);
  CHECK(descs[2].space == 1);
  CHECK(descs[2].length == 0xffff - 0xd00 + 1);
  CHECK(descs[3].space == 0);
  CHECK(descs[3].min == 0xc0000000);
  CHECK(descs[3].length == 0x20000000);
  CHECK(descs[4].tag == 0x8a);
  CHECK(descs[4].min == 0x1'0000'0000);
  CHECK(descs[4].max == 0x40'ffff'ffff);
  CHECK(descs[4].length == 0x40'0000'0000);
  CHECK(descs[5].tag == 0x22);
  CHECK(descs[5].min == 1U << 4);

  const Bytes buf = rt.to_buffer();
  CHECK(buf[0] == 0x11);
  const auto len = test::decode_pkg_length(buf, 1);
  std::size_t at = 1 + len.bytes;
  CHECK(test::decode_integer(buf, at) == d.size());
  CHECK(Bytes(buf.begin() + static_cast<std::ptrdiff_t>(at), buf.end()) == d);
}

}  // namespace
}  // namespace keel::vmm::boot::aml
