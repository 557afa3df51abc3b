#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string_view>
#include <vector>

// A small AML encoder (ACPI 6, section 20) for exactly what the DSDT needs: names, scopes,
// devices, packages, integers, strings, EISA ids, buffers, resource templates, and the few
// statements of the hot-plug methods (port I/O fields, If, And, Store, Notify, Return). Inputs are
// compile-time names and numbers from the VMM, not guest or user data.
namespace keel::vmm::boot::aml {

using Bytes = std::vector<std::uint8_t>;

// PkgLength for a body of `body_size` bytes: 1 to 4 bytes, counting itself.
Bytes pkg_length(std::size_t body_size);

// "\\_SB_.PCI0", "_HID", "^PCI0": root/parent prefixes, then 4-character segments (shorter ones
// are padded with '_') joined by '.'.
Bytes name_string(std::string_view path);

// The shortest encoding: ZeroOp, OneOp, or Byte/Word/DWord/QWord prefix.
Bytes integer(std::uint64_t value);
Bytes string(std::string_view text);
// EISAID("PNP0A08"): three letters and four hex digits compressed into a DWord.
Bytes eisa_id(std::string_view id);

Bytes name(std::string_view path, const Bytes& object);
Bytes package(std::initializer_list<Bytes> elements);
Bytes package(std::span<const Bytes> elements);
Bytes buffer(std::span<const std::uint8_t> data);
Bytes scope(std::string_view path, std::initializer_list<Bytes> terms);
Bytes scope(std::string_view path, std::span<const Bytes> terms);
Bytes device(std::string_view path, std::initializer_list<Bytes> terms);
Bytes device(std::string_view path, std::span<const Bytes> terms);

// Method(path, args, NotSerialized|Serialized) { terms }
Bytes method(std::string_view path, std::uint8_t args, bool serialized, std::span<const Bytes> terms);
Bytes method(std::string_view path, std::uint8_t args, bool serialized,
             std::initializer_list<Bytes> terms);
// OperationRegion(path, SystemIO, port, length)
Bytes io_region(std::string_view path, std::uint16_t port, std::uint16_t length);
// Field(region, DWordAcc, NoLock, Preserve) { names[0], 32, names[1], 32, ... }
Bytes dword_fields(std::string_view region, std::initializer_list<std::string_view> names);
Bytes dword_fields(std::string_view region, std::span<const std::string_view> names);
// Return (value)
Bytes ret(const Bytes& value);
// If (predicate) { terms }
Bytes if_then(const Bytes& predicate, std::initializer_list<Bytes> terms);
// And(a, b) with no target: a value, for a predicate.
Bytes and_of(const Bytes& a, const Bytes& b);
// Store(value, target)
Bytes store(const Bytes& value, const Bytes& target);
// Notify(path, value)
Bytes notify(std::string_view path, std::uint64_t value);
// Local0..Local7 as operands and targets.
Bytes local(std::uint8_t n);
// A named object as an operand or target (a field, a device).
inline Bytes ref(std::string_view path) { return name_string(path); }

// A ResourceTemplate(): descriptors appended in order; to_buffer() adds the EndTag with a
// checksum that makes the descriptor bytes sum to zero and wraps them in a Buffer.
class ResourceTemplate {
 public:
  // WordBusNumber(ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, min, max, 0, count)
  ResourceTemplate& word_bus_number(std::uint16_t min, std::uint16_t max);
  // IO(Decode16, min, max, align, length)
  ResourceTemplate& io(std::uint16_t min, std::uint16_t max, std::uint8_t align,
                       std::uint8_t length);
  // DWordIO(ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0, min, max, 0, len)
  ResourceTemplate& dword_io(std::uint32_t min, std::uint32_t max);
  // DWordMemory(producer/consumer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite, ...)
  ResourceTemplate& dword_memory(std::uint32_t min, std::uint32_t max, bool consumer = false);
  // QWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite, ...)
  // `ram`: the range is RAM (Cacheable), not a device window (NonCacheable).
  ResourceTemplate& qword_memory(std::uint64_t min, std::uint64_t max, bool ram = false);
  // IRQNoFlags() {irq}: edge-triggered, active-high, ISA IRQ 0..15
  ResourceTemplate& irq_no_flags(std::uint8_t irq);

  // The descriptors with the EndTag, as a ResourceTemplate's buffer contents.
  Bytes descriptors() const;
  Bytes to_buffer() const { return buffer(descriptors()); }

 private:
  Bytes data_;
};

}  // namespace keel::vmm::boot::aml
