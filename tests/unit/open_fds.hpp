#pragma once

#include <dirent.h>

namespace keel::test {

// How many file descriptors this process has open (entries of /proc/self/fd, its own
// directory fd included): compare before and after to find a leak. -1 if it cannot be read.
inline int open_fds() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) {
    return -1;
  }
  int n = 0;
  while (::readdir(dir) != nullptr) {
    ++n;
  }
  ::closedir(dir);
  return n;
}

}  // namespace keel::test
