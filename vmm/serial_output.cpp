#include "vmm/serial_output.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <memory>

#include "base/unique_fd.hpp"

namespace keel::vmm {
namespace {

// All of `bytes`, a short write or an interrupted one going on; a sink that fails (or would
// block) loses the rest: the guest never waits on its console.
void write_all(int fd, std::span<const std::uint8_t> bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n > 0) {
      bytes = bytes.subspan(static_cast<std::size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return;
    }
  }
}

}  // namespace

Result<SerialSink> open_serial_output(const VmConfig& config) {
  const auto nothing_to_begin = [] { return ok_status(); };
  switch (config.serial) {
    case SerialMode::kOff:
      return SerialSink{devices::Serial::Output{}, nothing_to_begin};
    case SerialMode::kTty:
      return SerialSink{devices::Serial::Output([](std::span<const std::uint8_t> bytes) {
                          write_all(STDOUT_FILENO, bytes);
                        }),
                        nothing_to_begin};
    case SerialMode::kFile: {
      // Not through a symlink (a root keel must not write where a planted link points), not
      // blocking on a FIFO, and not truncated yet: a start that fails later must not have
      // destroyed the file. begin() truncates it.
      const std::string what = "serial file " + config.serial_file;
      auto fd = std::make_shared<UniqueFd>(::open(
          config.serial_file.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644));
      if (!fd->valid()) {
        const int err = errno;
        if (err == ELOOP) {
          return Error::opening_user_path(err, "open " + what + ": it is a symbolic link; give the file itself");
        }
        if (err == ENXIO) {  // a FIFO nobody reads (or a device without one): it would block
          return Error::invalid(what + " is not a regular file; give the path of a file to write");
        }
        return Error::opening_user_path(err, "open " + what);
      }
      struct stat st {};
      if (::fstat(fd->get(), &st) != 0) {
        return Error::from_errno("stat " + what);
      }
      if (!S_ISREG(st.st_mode)) {
        return Error::invalid(what + " is not a regular file; give the path of a file to write");
      }
      const int flags = ::fcntl(fd->get(), F_GETFL);
      if (flags < 0 || ::fcntl(fd->get(), F_SETFL, flags & ~O_NONBLOCK) != 0) {
        return Error::from_errno("fcntl " + what);
      }
      auto truncated = std::make_shared<bool>(false);
      auto begin = [fd, truncated, what]() -> Status {
        if (!*truncated) {
          if (::ftruncate(fd->get(), 0) != 0) {
            return Error::from_errno("truncate " + what);
          }
          *truncated = true;
        }
        return ok_status();
      };
      return SerialSink{devices::Serial::Output([fd](std::span<const std::uint8_t> bytes) {
                          write_all(fd->get(), bytes);
                        }),
                        begin};
    }
  }
  return Error::invalid("serial: unknown mode");
}

}  // namespace keel::vmm
