#pragma once

#include <cstdint>
#include <memory>

namespace keel::vmm {

// The one door Keel's KVM ioctls go through: the kernel's ioctl(2) in production. Unit tests
// put a wrapper in front of it that fails chosen calls (fault injection), as VfioSys lets them
// do for VFIO.
class KvmSys {
 public:
  virtual ~KvmSys() = default;
  // ioctl(fd, request, arg): its result, or -1 with errno set.
  virtual int ioctl(int fd, unsigned long request, std::uintptr_t arg) = 0;
};

// The kernel's ioctl(2).
std::shared_ptr<KvmSys> kernel_kvm_sys();

}  // namespace keel::vmm
