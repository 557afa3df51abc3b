#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <string>

#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace keel::virtio {

// A raw disk image file as a virtio-blk device uses it: opened by the rules for a path a user
// names, locked against a second writer, and read and written only inside its size.
class DiskImage {
 public:
  struct Options {
    std::string path;
    bool readonly = false;
    bool direct = false;  // O_DIRECT: bypass the host's page cache
  };

  // The path must name a regular file, not empty; a writable image is not opened through a
  // symbolic link (O_NOFOLLOW: a link planted where the image was expected must not redirect
  // writes). A writable image is locked exclusively, a read-only one shared (flock), so that two
  // VMs cannot write one image, nor one write what another reads.
  static Result<DiskImage> open(const Options& options);

  const std::string& path() const { return path_; }
  std::uint64_t size() const { return size_; }  // bytes
  bool readonly() const { return readonly_; }
  // Up to 20 bytes naming the image (virtio-blk GET_ID): its device and inode numbers, as
  // cloud-hypervisor does, so a guest can tell disks apart and find one again.
  const std::string& serial() const { return serial_; }

  // preadv/pwritev at `offset`, repeated until done; the range must be inside the image (the
  // caller checks). A short read (the file shrank under us) fills zeros.
  Status read(std::uint64_t offset, std::span<const iovec> iov) const;
  Status write(std::uint64_t offset, std::span<const iovec> iov) const;
  Status flush() const;  // fdatasync
  // Punches a hole / writes zeros over [offset, offset+length); EOPNOTSUPP when the file
  // system cannot.
  Status discard(std::uint64_t offset, std::uint64_t length) const;
  Status write_zeroes(std::uint64_t offset, std::uint64_t length, bool unmap) const;

 private:
  DiskImage(UniqueFd fd, std::string path, std::uint64_t size, bool readonly, std::string serial)
      : fd_(std::move(fd)),
        path_(std::move(path)),
        size_(size),
        readonly_(readonly),
        serial_(std::move(serial)) {}

  UniqueFd fd_;
  std::string path_;
  std::uint64_t size_;
  bool readonly_;
  std::string serial_;
};

}  // namespace keel::virtio
