#include "vmm/boot/aml.hpp"

#include <cassert>

namespace keel::vmm::boot::aml {

namespace {

constexpr std::uint8_t kZeroOp = 0x00;
constexpr std::uint8_t kOneOp = 0x01;
constexpr std::uint8_t kNameOp = 0x08;
constexpr std::uint8_t kBytePrefix = 0x0a;
constexpr std::uint8_t kWordPrefix = 0x0b;
constexpr std::uint8_t kDWordPrefix = 0x0c;
constexpr std::uint8_t kStringPrefix = 0x0d;
constexpr std::uint8_t kQWordPrefix = 0x0e;
constexpr std::uint8_t kScopeOp = 0x10;
constexpr std::uint8_t kBufferOp = 0x11;
constexpr std::uint8_t kPackageOp = 0x12;
constexpr std::uint8_t kDualNamePrefix = 0x2e;
constexpr std::uint8_t kMultiNamePrefix = 0x2f;
constexpr std::uint8_t kExtOpPrefix = 0x5b;
constexpr std::uint8_t kDeviceOp = 0x82;
constexpr std::uint8_t kNullName = 0x00;
constexpr std::uint8_t kMethodOp = 0x14;
constexpr std::uint8_t kLocal0Op = 0x60;
constexpr std::uint8_t kStoreOp = 0x70;
constexpr std::uint8_t kAndOp = 0x7b;
constexpr std::uint8_t kNotifyOp = 0x86;
constexpr std::uint8_t kIfOp = 0xa0;
constexpr std::uint8_t kReturnOp = 0xa4;
constexpr std::uint8_t kOpRegionOp = 0x80;  // after kExtOpPrefix
constexpr std::uint8_t kFieldOp = 0x81;     // after kExtOpPrefix
constexpr std::uint8_t kRegionSystemIo = 0x01;
constexpr std::uint8_t kFieldDWordAcc = 0x03;  // AccessType DWordAcc, NoLock, Preserve
constexpr std::uint8_t kMethodSerialized = 1U << 3;

// Resource descriptor tags (ACPI 6, section 6.4).
constexpr std::uint8_t kIrqTag = 0x22;           // small, IRQ with a 2-byte mask
constexpr std::uint8_t kIoTag = 0x47;            // small, I/O port, 7 bytes
constexpr std::uint8_t kEndTag = 0x79;           // small, end, 1 byte (checksum)
constexpr std::uint8_t kDWordAddressTag = 0x87;  // large
constexpr std::uint8_t kWordAddressTag = 0x88;   // large
constexpr std::uint8_t kQWordAddressTag = 0x8a;  // large
constexpr std::uint8_t kSpaceMemory = 0;
constexpr std::uint8_t kSpaceIo = 1;
constexpr std::uint8_t kSpaceBusNumber = 2;
constexpr std::uint8_t kConsumer = 1U << 0;  // general flags; clear = producer
constexpr std::uint8_t kMinFixed = 1U << 2;
constexpr std::uint8_t kMaxFixed = 1U << 3;
constexpr std::uint8_t kIoEntireRange = 0x3;  // type-specific flags for I/O
constexpr std::uint8_t kMemReadWrite = 0x1;   // type-specific flags for memory, NonCacheable
constexpr std::uint8_t kMemCacheable = 0x2;   // with kMemReadWrite: Cacheable RAM
constexpr std::uint8_t kIoDecode16 = 0x1;

void append(Bytes& out, const Bytes& more) { out.insert(out.end(), more.begin(), more.end()); }

template <typename T>
void append_le(Bytes& out, T value) {
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    out.push_back(static_cast<std::uint8_t>(static_cast<std::uint64_t>(value) >> (8 * i)));
  }
}

// op, PkgLength, body: the shape of Scope, Device, Package and Buffer.
Bytes with_pkg_length(std::initializer_list<std::uint8_t> ops, const Bytes& body) {
  Bytes out(ops);
  append(out, pkg_length(body.size()));
  append(out, body);
  return out;
}

void append_name_seg(Bytes& out, std::string_view seg) {
  assert(!seg.empty() && seg.size() <= 4);
  for (std::size_t i = 0; i < 4; ++i) {
    out.push_back(i < seg.size() ? static_cast<std::uint8_t>(seg[i]) : '_');
  }
}

// Address space descriptors share a layout; only the field width differs.
template <typename T>
void address_space(Bytes& out, std::uint8_t tag, std::uint8_t space, std::uint8_t general,
                   std::uint8_t specific, T min, T max) {
  out.push_back(tag);
  append_le<std::uint16_t>(out, static_cast<std::uint16_t>(3 + 5 * sizeof(T)));
  out.push_back(space);
  out.push_back(general);
  out.push_back(specific);
  append_le<T>(out, 0);  // granularity
  append_le<T>(out, min);
  append_le<T>(out, max);
  append_le<T>(out, 0);                              // translation offset
  append_le<T>(out, static_cast<T>(max - min + 1));  // length
}

}  // namespace

Bytes pkg_length(std::size_t body_size) {
  if (body_size + 1 <= 0x3f) {
    return {static_cast<std::uint8_t>(body_size + 1)};
  }
  for (std::size_t extra = 1; extra <= 3; ++extra) {
    const std::uint64_t total = body_size + 1 + extra;
    if (total < (1ULL << (4 + 8 * extra))) {
      Bytes out{static_cast<std::uint8_t>((extra << 6) | (total & 0xf))};
      for (std::size_t i = 0; i < extra; ++i) {
        out.push_back(static_cast<std::uint8_t>(total >> (4 + 8 * i)));
      }
      return out;
    }
  }
  assert(false && "AML package longer than 2^28 bytes");
  return {};
}

Bytes name_string(std::string_view path) {
  Bytes out;
  while (!path.empty() && (path.front() == '\\' || path.front() == '^')) {
    out.push_back(static_cast<std::uint8_t>(path.front()));
    path.remove_prefix(1);
  }
  std::vector<std::string_view> segs;
  while (!path.empty()) {
    const std::size_t dot = path.find('.');
    segs.push_back(path.substr(0, dot));
    path = dot == std::string_view::npos ? std::string_view() : path.substr(dot + 1);
  }
  if (segs.empty()) {
    out.push_back(kNullName);
  } else if (segs.size() == 2) {
    out.push_back(kDualNamePrefix);
  } else if (segs.size() > 2) {
    out.push_back(kMultiNamePrefix);
    out.push_back(static_cast<std::uint8_t>(segs.size()));
  }
  for (std::string_view seg : segs) {
    append_name_seg(out, seg);
  }
  return out;
}

Bytes integer(std::uint64_t value) {
  Bytes out;
  if (value == 0) {
    out.push_back(kZeroOp);
  } else if (value == 1) {
    out.push_back(kOneOp);
  } else if (value <= 0xff) {
    out.push_back(kBytePrefix);
    append_le<std::uint8_t>(out, static_cast<std::uint8_t>(value));
  } else if (value <= 0xffff) {
    out.push_back(kWordPrefix);
    append_le<std::uint16_t>(out, static_cast<std::uint16_t>(value));
  } else if (value <= 0xffff'ffff) {
    out.push_back(kDWordPrefix);
    append_le<std::uint32_t>(out, static_cast<std::uint32_t>(value));
  } else {
    out.push_back(kQWordPrefix);
    append_le<std::uint64_t>(out, value);
  }
  return out;
}

Bytes string(std::string_view text) {
  Bytes out{kStringPrefix};
  out.insert(out.end(), text.begin(), text.end());
  out.push_back(0);
  return out;
}

Bytes eisa_id(std::string_view id) {
  assert(id.size() == 7);
  auto hex_digit = [](char c) -> std::uint32_t {
    return c <= '9' ? static_cast<std::uint32_t>(c - '0')
                    : static_cast<std::uint32_t>(c - 'A' + 10);
  };
  const std::uint32_t vendor = (static_cast<std::uint32_t>(id[0] - 0x40) << 10) |
                               (static_cast<std::uint32_t>(id[1] - 0x40) << 5) |
                               static_cast<std::uint32_t>(id[2] - 0x40);
  const std::uint32_t product = (hex_digit(id[3]) << 12) | (hex_digit(id[4]) << 8) |
                                (hex_digit(id[5]) << 4) | hex_digit(id[6]);
  // Stored big-endian: vendor bytes first, then the product number.
  const std::uint32_t value =
      (vendor >> 8) | ((vendor & 0xff) << 8) | ((product >> 8) << 16) | ((product & 0xff) << 24);
  Bytes out{kDWordPrefix};
  append_le<std::uint32_t>(out, value);
  return out;
}

Bytes name(std::string_view path, const Bytes& object) {
  Bytes out{kNameOp};
  append(out, name_string(path));
  append(out, object);
  return out;
}

Bytes package(std::initializer_list<Bytes> elements) {
  return package(std::span<const Bytes>(elements.begin(), elements.size()));
}

Bytes package(std::span<const Bytes> elements) {
  assert(elements.size() <= 0xff);
  Bytes body{static_cast<std::uint8_t>(elements.size())};
  for (const Bytes& e : elements) {
    append(body, e);
  }
  return with_pkg_length({kPackageOp}, body);
}

Bytes buffer(std::span<const std::uint8_t> data) {
  Bytes body = integer(data.size());
  body.insert(body.end(), data.begin(), data.end());
  return with_pkg_length({kBufferOp}, body);
}

Bytes scope(std::string_view path, std::initializer_list<Bytes> terms) {
  return scope(path, std::span<const Bytes>(terms.begin(), terms.size()));
}

Bytes scope(std::string_view path, std::span<const Bytes> terms) {
  Bytes body = name_string(path);
  for (const Bytes& t : terms) {
    append(body, t);
  }
  return with_pkg_length({kScopeOp}, body);
}

Bytes device(std::string_view path, std::initializer_list<Bytes> terms) {
  return device(path, std::span<const Bytes>(terms.begin(), terms.size()));
}

Bytes device(std::string_view path, std::span<const Bytes> terms) {
  Bytes body = name_string(path);
  for (const Bytes& t : terms) {
    append(body, t);
  }
  return with_pkg_length({kExtOpPrefix, kDeviceOp}, body);
}

Bytes method(std::string_view path, std::uint8_t args, bool serialized,
             std::span<const Bytes> terms) {
  assert(args <= 7);
  Bytes body = name_string(path);
  body.push_back(static_cast<std::uint8_t>(args | (serialized ? kMethodSerialized : 0)));
  for (const Bytes& t : terms) {
    append(body, t);
  }
  return with_pkg_length({kMethodOp}, body);
}

Bytes method(std::string_view path, std::uint8_t args, bool serialized,
             std::initializer_list<Bytes> terms) {
  return method(path, args, serialized, std::span<const Bytes>(terms.begin(), terms.size()));
}

Bytes io_region(std::string_view path, std::uint16_t port, std::uint16_t length) {
  Bytes out{kExtOpPrefix, kOpRegionOp};
  append(out, name_string(path));
  out.push_back(kRegionSystemIo);
  append(out, integer(port));
  append(out, integer(length));
  return out;
}

Bytes dword_fields(std::string_view region, std::span<const std::string_view> names) {
  Bytes body = name_string(region);
  body.push_back(kFieldDWordAcc);
  for (std::string_view field : names) {
    append_name_seg(body, field);
    body.push_back(32);  // the width in bits, as a one-byte PkgLength-style value
  }
  return with_pkg_length({kExtOpPrefix, kFieldOp}, body);
}

Bytes dword_fields(std::string_view region, std::initializer_list<std::string_view> names) {
  return dword_fields(region, std::span<const std::string_view>(names.begin(), names.size()));
}

Bytes ret(const Bytes& value) {
  Bytes out{kReturnOp};
  append(out, value);
  return out;
}

Bytes if_then(const Bytes& predicate, std::initializer_list<Bytes> terms) {
  Bytes body = predicate;
  for (const Bytes& t : terms) {
    append(body, t);
  }
  return with_pkg_length({kIfOp}, body);
}

Bytes and_of(const Bytes& a, const Bytes& b) {
  Bytes out{kAndOp};
  append(out, a);
  append(out, b);
  out.push_back(kNullName);  // no target
  return out;
}

Bytes store(const Bytes& value, const Bytes& target) {
  Bytes out{kStoreOp};
  append(out, value);
  append(out, target);
  return out;
}

Bytes notify(std::string_view path, std::uint64_t value) {
  Bytes out{kNotifyOp};
  append(out, name_string(path));
  append(out, integer(value));
  return out;
}

Bytes local(std::uint8_t n) {
  assert(n <= 7);
  return {static_cast<std::uint8_t>(kLocal0Op + n)};
}

ResourceTemplate& ResourceTemplate::word_bus_number(std::uint16_t min, std::uint16_t max) {
  address_space<std::uint16_t>(data_, kWordAddressTag, kSpaceBusNumber, kMinFixed | kMaxFixed, 0,
                               min, max);
  return *this;
}

ResourceTemplate& ResourceTemplate::io(std::uint16_t min, std::uint16_t max, std::uint8_t align,
                                       std::uint8_t length) {
  data_.push_back(kIoTag);
  data_.push_back(kIoDecode16);
  append_le<std::uint16_t>(data_, min);
  append_le<std::uint16_t>(data_, max);
  data_.push_back(align);
  data_.push_back(length);
  return *this;
}

ResourceTemplate& ResourceTemplate::dword_io(std::uint32_t min, std::uint32_t max) {
  address_space<std::uint32_t>(data_, kDWordAddressTag, kSpaceIo, kMinFixed | kMaxFixed,
                               kIoEntireRange, min, max);
  return *this;
}

ResourceTemplate& ResourceTemplate::dword_memory(std::uint32_t min, std::uint32_t max,
                                                 bool consumer) {
  address_space<std::uint32_t>(
      data_, kDWordAddressTag, kSpaceMemory,
      static_cast<std::uint8_t>(kMinFixed | kMaxFixed | (consumer ? kConsumer : 0)), kMemReadWrite,
      min, max);
  return *this;
}

ResourceTemplate& ResourceTemplate::qword_memory(std::uint64_t min, std::uint64_t max, bool ram) {
  address_space<std::uint64_t>(data_, kQWordAddressTag, kSpaceMemory, kMinFixed | kMaxFixed,
                               static_cast<std::uint8_t>(kMemReadWrite | (ram ? kMemCacheable : 0)),
                               min, max);
  return *this;
}

ResourceTemplate& ResourceTemplate::irq_no_flags(std::uint8_t irq) {
  data_.push_back(kIrqTag);
  append_le<std::uint16_t>(data_, static_cast<std::uint16_t>(1U << irq));
  return *this;
}

Bytes ResourceTemplate::descriptors() const {
  Bytes out = data_;
  out.push_back(kEndTag);
  std::uint8_t sum = 0;
  for (std::uint8_t b : out) {
    sum = static_cast<std::uint8_t>(sum + b);
  }
  out.push_back(static_cast<std::uint8_t>(-sum));
  return out;
}

}  // namespace keel::vmm::boot::aml
