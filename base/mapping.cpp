#include "base/mapping.hpp"

#include <string>

namespace keel {

Result<Mapping> Mapping::create(std::size_t size, int prot, int flags, int fd, off_t offset,
                                const char* what) {
  if (size == 0) {
    return Error::invalid(std::string("map ") + what + ": size is 0");
  }
  void* addr = ::mmap(nullptr, size, prot, flags, fd, offset);
  if (addr == MAP_FAILED) {
    return Error::from_errno(std::string("map ") + what + " (" + std::to_string(size) + " bytes)");
  }
  return Mapping(addr, size);
}

Result<Mapping> Mapping::anonymous_aligned(std::size_t size, std::size_t alignment, int extra_flags,
                                           const char* what) {
  if (size == 0 || alignment == 0 || (alignment & (alignment - 1)) != 0) {
    return Error::invalid(std::string("map ") + what + ": size " + std::to_string(size) +
                          " / alignment " + std::to_string(alignment) + " not usable");
  }
  // Reserve size + alignment, then give back the unaligned head and the tail.
  KEEL_TRY(auto reserved, create(size + alignment, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1, 0, what));
  auto* base = reserved.data();
  const auto start = (reinterpret_cast<std::uintptr_t>(base) + alignment - 1) & ~(alignment - 1);
  auto* aligned = reinterpret_cast<std::uint8_t*>(start);
  const std::size_t head = static_cast<std::size_t>(aligned - base);
  const std::size_t tail = alignment - head;
  reserved.addr_ = nullptr;  // ownership moves to the trimmed mapping below
  reserved.size_ = 0;
  if (head != 0) {
    ::munmap(base, head);
  }
  if (tail != 0) {
    ::munmap(aligned + size, tail);
  }
  return Mapping(aligned, size);
}

void Mapping::reset() {
  if (addr_ != nullptr) {
    ::munmap(addr_, size_);
    addr_ = nullptr;
    size_ = 0;
  }
}

}  // namespace keel
