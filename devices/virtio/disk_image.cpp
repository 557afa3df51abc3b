#include "devices/virtio/disk_image.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

namespace keel::virtio {

Result<DiskImage> DiskImage::open(const Options& options) {
  const std::string& path = options.path;
  if (path.empty()) {
    return Error::invalid("disk: path= is empty; give the image file, e.g. path=/var/lib/keel/root.img");
  }
  // The type first: opening a device node can do things (arm a watchdog, rewind a tape) even
  // when keel then refuses it. What open() finds must be the file checked here.
  struct stat named {};
  const bool named_ok =
      ::fstatat(AT_FDCWD, path.c_str(), &named, options.readonly ? 0 : AT_SYMLINK_NOFOLLOW) == 0;
  if (named_ok && S_ISLNK(named.st_mode)) {
    return Error::invalid("disk " + path +
                          " is a symbolic link; a writable image is opened by its own path "
                          "(give the link's target, or readonly=on)");
  }
  if (named_ok && !S_ISREG(named.st_mode)) {
    return Error::invalid("disk " + path + " is not a regular file; give a raw image file");
  }
  // O_NONBLOCK: were a FIFO put there meanwhile, open() must not wedge keel; it is refused below.
  int flags = O_CLOEXEC | O_NONBLOCK | O_NOCTTY | (options.readonly ? O_RDONLY : O_RDWR | O_NOFOLLOW);
  if (options.direct) {
    flags |= O_DIRECT;
  }
  UniqueFd fd(::open(path.c_str(), flags));
  if (!fd) {
    if (errno == ELOOP && !options.readonly) {
      return Error::invalid("disk " + path +
                            " is a symbolic link; a writable image is opened by its own path "
                            "(give the link's target, or readonly=on)");
    }
    if (errno == EISDIR) {
      return Error::invalid("disk " + path + " is not a regular file; give a raw image file");
    }
    if (errno == EINVAL && options.direct) {
      return Error::invalid("disk " + path +
                            ": its file system does not support direct=on (O_DIRECT); leave it off");
    }
    return Error::opening_user_path("open disk image " + path);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return Error::from_errno("fstat disk image " + path);
  }
  if (!S_ISREG(st.st_mode)) {
    return Error::invalid("disk " + path + " is not a regular file; give a raw image file");
  }
  if (named_ok && (st.st_dev != named.st_dev || st.st_ino != named.st_ino)) {
    return Error::invalid("disk " + path + " was replaced while keel opened it; try again");
  }
  if (st.st_size < 512) {
    return Error::invalid("disk " + path + " holds " + std::to_string(st.st_size) +
                          " bytes, less than one 512-byte sector; grow it, e.g. truncate -s 1G " +
                          path);
  }
  const int fl = ::fcntl(fd.get(), F_GETFL);
  if (fl < 0 || ::fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK) != 0) {
    return Error::from_errno("fcntl disk image " + path);
  }
  if (::flock(fd.get(), (options.readonly ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Error::wrong_state(
          "disk " + path + " is in use: another process holds a lock on it" +
          (options.readonly ? " for writing" : "") +
          "; stop the VM that uses it, or give each VM its own image (two may share one only "
          "with readonly=on)");
    }
    return Error::from_errno("flock disk image " + path);
  }
  char serial[21] = {};
  std::snprintf(serial, sizeof serial, "%lx-%lx", static_cast<unsigned long>(st.st_dev),
                static_cast<unsigned long>(st.st_ino));
  return DiskImage(std::move(fd), path, static_cast<std::uint64_t>(st.st_size), options.readonly,
                   serial);
}

namespace {

// Advances `iov` past `n` bytes.
void consume(std::vector<iovec>& iov, std::size_t n) {
  std::size_t i = 0;
  while (i < iov.size() && n >= iov[i].iov_len) {
    n -= iov[i].iov_len;
    ++i;
  }
  iov.erase(iov.begin(), iov.begin() + static_cast<std::ptrdiff_t>(i));
  if (!iov.empty() && n > 0) {
    iov[0].iov_base = static_cast<std::uint8_t*>(iov[0].iov_base) + n;
    iov[0].iov_len -= n;
  }
}

// preadv or pwritev at `offset` until `iov` is done or the file gives no more (0 bytes: the
// end of the file for a read, no progress for a write); what is left stays in `iov`.
Status vectored(int fd, bool write, std::uint64_t offset, std::vector<iovec>& iov,
                const std::string& what) {
  while (!iov.empty()) {
    const int count = static_cast<int>(std::min<std::size_t>(iov.size(), IOV_MAX));
    const ssize_t n = write ? ::pwritev(fd, iov.data(), count, static_cast<off_t>(offset))
                            : ::preadv(fd, iov.data(), count, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return Error::from_errno(what);
    }
    if (n == 0) {
      break;
    }
    offset += static_cast<std::uint64_t>(n);
    consume(iov, static_cast<std::size_t>(n));
  }
  return ok_status();
}

}  // namespace

Status DiskImage::read(std::uint64_t offset, std::span<const iovec> span) const {
  std::vector<iovec> iov(span.begin(), span.end());
  KEEL_TRY_STATUS(vectored(fd_.get(), false, offset, iov, "read disk " + path_));
  for (const iovec& v : iov) {  // the file shrank under us: what is gone reads as zeros
    std::memset(v.iov_base, 0, v.iov_len);
  }
  return ok_status();
}

Status DiskImage::write(std::uint64_t offset, std::span<const iovec> span) const {
  std::vector<iovec> iov(span.begin(), span.end());
  KEEL_TRY_STATUS(vectored(fd_.get(), true, offset, iov, "write disk " + path_));
  if (!iov.empty()) {
    return Error::from_errno(EIO, "write disk " + path_ + ": no progress");
  }
  return ok_status();
}

Status DiskImage::flush() const {
  if (::fdatasync(fd_.get()) != 0) {
    return Error::from_errno("fdatasync disk " + path_);
  }
  return ok_status();
}

Status DiskImage::discard(std::uint64_t offset, std::uint64_t length) const {
  if (::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  static_cast<off_t>(offset), static_cast<off_t>(length)) != 0) {
    return Error::from_errno("discard on disk " + path_);
  }
  return ok_status();
}

Status DiskImage::write_zeroes(std::uint64_t offset, std::uint64_t length, bool unmap) const {
  const int mode = (unmap ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE) | FALLOC_FL_KEEP_SIZE;
  if (::fallocate(fd_.get(), mode, static_cast<off_t>(offset), static_cast<off_t>(length)) != 0) {
    return Error::from_errno("write zeroes on disk " + path_);
  }
  return ok_status();
}

}  // namespace keel::virtio
