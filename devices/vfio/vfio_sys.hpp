#pragma once

#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <string>

#include "base/mapping.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace keel::vfio {

// The one seam between Keel and the VFIO kernel interface. Every VFIO syscall (open of
// /dev/vfio/*, the VFIO ioctls, pread/pwrite of device regions, mmap of BARs) goes through it,
// so unit tests can stand in a fake kernel that returns crafted capability chains and errors.
// Integration tests always use the real one.
class VfioSys {
 public:
  virtual ~VfioSys() = default;

  // open(path, O_RDWR | O_CLOEXEC).
  virtual Result<UniqueFd> open(const std::string& path) = 0;
  // ioctl(fd, request, arg); returns the ioctl's non-negative result, or the errno as an Error
  // whose context names `what` (e.g. "VFIO_IOMMU_MAP_DMA iova 0x100000 size 0x40000000").
  virtual Result<int> ioctl(int fd, unsigned long request, void* arg, const std::string& what) = 0;
  // pread/pwrite of exactly `size` bytes at `offset` (a short transfer is an EIO error).
  virtual Status pread(int fd, void* buf, std::size_t size, off_t offset, const std::string& what) = 0;
  virtual Status pwrite(int fd, const void* buf, std::size_t size, off_t offset,
                        const std::string& what) = 0;
  // mmap(nullptr, size, prot, MAP_SHARED, fd, offset).
  virtual Result<Mapping> mmap(int fd, std::size_t size, int prot, off_t offset,
                               const std::string& what) = 0;
};

// The real kernel.
std::unique_ptr<VfioSys> make_kernel_vfio_sys();

}  // namespace keel::vfio
