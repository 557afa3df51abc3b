#include "base/unique_fd.hpp"

#include <unistd.h>

namespace keel {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0 && fd_ != fd) {
    // close() errors are not actionable here: the descriptor is released either way on Linux.
    ::close(fd_);
  }
  fd_ = fd;
}

}  // namespace keel
