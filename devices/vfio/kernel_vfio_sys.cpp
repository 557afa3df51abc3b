#include "devices/vfio/vfio_sys.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

namespace keel::vfio {
namespace {

// The real kernel: each method is the bare syscall, with errno kept in the returned Error.
class KernelVfioSys final : public VfioSys {
 public:
  Result<UniqueFd> open(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      return Error::from_errno("open " + path);
    }
    return UniqueFd(fd);
  }

  Result<int> ioctl(int fd, unsigned long request, void* arg, const std::string& what) override {
    const int ret = ::ioctl(fd, request, arg);
    if (ret < 0) {
      return Error::from_errno(what);
    }
    return ret;
  }

  Status pread(int fd, void* buf, std::size_t size, off_t offset,
               const std::string& what) override {
    const ssize_t n = ::pread(fd, buf, size, offset);
    if (n < 0) {
      return Error::from_errno(what);
    }
    if (static_cast<std::size_t>(n) != size) {
      return Error::from_errno(EIO, what + ": short read of " + std::to_string(n) + " of " +
                                        std::to_string(size) + " bytes");
    }
    return ok_status();
  }

  Status pwrite(int fd, const void* buf, std::size_t size, off_t offset,
                const std::string& what) override {
    const ssize_t n = ::pwrite(fd, buf, size, offset);
    if (n < 0) {
      return Error::from_errno(what);
    }
    if (static_cast<std::size_t>(n) != size) {
      return Error::from_errno(EIO, what + ": short write of " + std::to_string(n) + " of " +
                                        std::to_string(size) + " bytes");
    }
    return ok_status();
  }

  Result<Mapping> mmap(int fd, std::size_t size, int prot, off_t offset,
                       const std::string& what) override {
    return Mapping::create(size, prot, MAP_SHARED, fd, offset, what.c_str());
  }
};

}  // namespace

std::unique_ptr<VfioSys> make_kernel_vfio_sys() { return std::make_unique<KernelVfioSys>(); }

}  // namespace keel::vfio
