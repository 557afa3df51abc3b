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

void Mapping::reset() {
  if (addr_ != nullptr) {
    ::munmap(addr_, size_);
    addr_ = nullptr;
    size_ = 0;
  }
}

}  // namespace keel
