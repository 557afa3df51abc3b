#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "base/result.hpp"

namespace keel {

// Owns one mmap()ed range and unmaps it on destruction. Move-only.
class Mapping {
 public:
  Mapping() = default;
  ~Mapping() { reset(); }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  Mapping(Mapping&& other) noexcept
      : addr_(std::exchange(other.addr_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  Mapping& operator=(Mapping&& other) noexcept {
    if (this != &other) {
      reset();
      addr_ = std::exchange(other.addr_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }

  // mmap(nullptr, size, prot, flags, fd, offset). `what` names the mapping in errors.
  static Result<Mapping> create(std::size_t size, int prot, int flags, int fd, off_t offset,
                                const char* what);
  // Anonymous private read/write memory, zero-filled.
  static Result<Mapping> anonymous(std::size_t size, const char* what) {
    return create(size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, what);
  }

  // Anonymous private memory whose start is a multiple of `alignment` (a power of two), so the
  // kernel can back it with transparent huge pages (and KVM map it with large pages).
  static Result<Mapping> anonymous_aligned(std::size_t size, std::size_t alignment, int extra_flags,
                                           const char* what);

  std::uint8_t* data() const { return static_cast<std::uint8_t*>(addr_); }
  std::size_t size() const { return size_; }
  bool valid() const { return addr_ != nullptr; }

  void reset();

 private:
  Mapping(void* addr, std::size_t size) : addr_(addr), size_(size) {}

  void* addr_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace keel
