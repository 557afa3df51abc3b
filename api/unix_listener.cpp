#include "api/unix_listener.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.hpp"

namespace keel::api {
namespace {

Result<sockaddr_un> address_of(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return Error::invalid("API socket path \"" + path + "\" must have 1 to " +
                          std::to_string(sizeof(addr.sun_path) - 1) +
                          " bytes; choose a shorter path");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

// Removes a socket file at `path` that nothing listens on; refuses anything else.
Status clear_stale_socket(const std::string& path, const sockaddr_un& addr) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return ok_status();
    }
    return Error::from_errno("API socket: lstat " + path);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Error::from_errno(EEXIST, "API socket: " + path +
                                         " exists and is not a socket; remove it or choose "
                                         "another path");
  }
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe.valid()) {
    return Error::from_errno("API socket: socket(AF_UNIX)");
  }
  if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) {
    return Error::from_errno(EADDRINUSE, "API socket: another process serves " + path +
                                             "; stop it or choose another path");
  }
  if (errno != ECONNREFUSED) {
    return Error::from_errno("API socket: probing " + path);
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Error::from_errno("API socket: removing the stale socket " + path);
  }
  log::info("api", "removed a stale API socket", {{"path", path}});
  return ok_status();
}

}  // namespace

Result<UnixListener> UnixListener::listen(const std::string& path, int backlog) {
  KEEL_TRY(auto addr, address_of(path));
  KEEL_TRY_STATUS(clear_stale_socket(path, addr));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) {
    return Error::from_errno("API socket: socket(AF_UNIX)");
  }
  // Linux creates the socket file with the socket inode's mode (less the umask): set it first,
  // so the file never exists with a wider mode.
  if (::fchmod(fd.get(), 0600) != 0) {
    return Error::from_errno("API socket: fchmod 0600");
  }
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Error::from_errno("API socket: bind " + path);
  }
  struct stat st {};
  if (::chmod(path.c_str(), 0600) != 0 || ::lstat(path.c_str(), &st) != 0) {
    const Error error = Error::from_errno("API socket: chmod 0600 " + path);
    ::unlink(path.c_str());
    return error;
  }
  if (::listen(fd.get(), backlog) != 0) {
    const Error error = Error::from_errno("API socket: listen on " + path);
    ::unlink(path.c_str());
    return error;
  }
  return UnixListener(std::move(fd), path, st.st_dev, st.st_ino);
}

void UnixListener::remove_file() const {
  if (path_.empty()) {
    return;
  }
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) {
    ::unlink(path_.c_str());
  }
}

}  // namespace keel::api
