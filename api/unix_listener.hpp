#pragma once

#include <sys/types.h>

#include <string>

#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace keel::api {

// A listening AF_UNIX stream socket bound at a path, created with mode 0600, and the identity of
// the socket file it created, so it removes that file and no other.
class UnixListener {
 public:
  // Binds and listens at `path`. A socket file already there is removed only when nothing
  // listens on it (connect is refused); a live one (another keel serves it) is EADDRINUSE, and a
  // path that is not a socket is EEXIST: neither is touched. The file is created 0600 (fchmod
  // of the socket before bind, so no other user can connect in between) and chmod'ed again.
  static Result<UnixListener> listen(const std::string& path, int backlog);

  UnixListener(UnixListener&&) noexcept = default;
  UnixListener& operator=(UnixListener&&) noexcept = default;
  UnixListener(const UnixListener&) = delete;
  UnixListener& operator=(const UnixListener&) = delete;
  ~UnixListener() = default;

  // The listening descriptor; the caller may take it (release()) and hand it to Asio.
  UniqueFd& fd() { return fd_; }
  const std::string& path() const { return path_; }

  // Removes the socket file if it is still the one bound here (same device and inode).
  void remove_file() const;

 private:
  UnixListener(UniqueFd fd, std::string path, dev_t dev, ino_t ino)
      : fd_(std::move(fd)), path_(std::move(path)), dev_(dev), ino_(ino) {}

  UniqueFd fd_;
  std::string path_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

}  // namespace keel::api
