#include "vmm/boot/host_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/hex.hpp"

namespace keel::vmm::boot {

Result<HostFile> open_host_file(const std::string& path, std::string_view what) {
  HostFile file;
  file.path = path;
  file.what = std::string(what);
  // O_NONBLOCK: a FIFO or a device must not block keel before the type check refuses it
  // (it changes nothing for a regular file).
  file.fd = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!file.fd) {
    return Error::opening_user_path("open " + file.name());
  }
  struct stat st {};
  if (::fstat(file.fd.get(), &st) != 0) {
    return Error::from_errno("stat " + file.name());
  }
  if (!S_ISREG(st.st_mode)) {
    return Error::invalid(file.name() + " is not a regular file; pass the path of the image file");
  }
  file.size = static_cast<std::uint64_t>(st.st_size);
  return file;
}

Status read_at(const HostFile& file, std::uint64_t offset, std::span<std::uint8_t> out) {
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::pread(file.fd.get(), out.data() + done, out.size() - done,
                              static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return Error::from_errno("read " + file.name() + " at offset " + hex(offset + done));
    }
    if (n == 0) {
      return Error::from_errno(EIO, file.name() + " ended at " + std::to_string(offset + done) +
                                        " bytes while reading " + std::to_string(out.size()) +
                                        " bytes at offset " + std::to_string(offset) +
                                        "; was it changed while loading?");
    }
    done += static_cast<std::size_t>(n);
  }
  return ok_status();
}

Result<std::vector<std::uint8_t>> read_all(const HostFile& file) {
  std::vector<std::uint8_t> bytes(file.size);
  KEEL_TRY_STATUS(read_at(file, 0, bytes));
  return bytes;
}

Status read_into_guest(const HostFile& file, const memory::GuestMemory& mem, std::uint64_t gpa) {
  std::uint8_t* dst = mem.translate(gpa, file.size);
  if (dst == nullptr) {
    return Error::from_errno(EFAULT, file.name() + " (" + std::to_string(file.size) +
                                         " bytes) does not fit in guest RAM at " + hex(gpa));
  }
  return read_at(file, 0, std::span(dst, file.size));
}

}  // namespace keel::vmm::boot
