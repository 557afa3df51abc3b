#pragma once

// Talking to a Unix socket byte by byte, as a client the API server does not control would:
// for the tests that send it what no well-behaved HTTP client sends.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>

#include "base/unique_fd.hpp"

namespace keel::testing {

// A connected socket, or an invalid fd when the connect failed.
inline UniqueFd try_connect(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return UniqueFd();
  }
  return fd;
}

inline void send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) {
      return;  // the server may close first (413): what it answered is still readable
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

// Reads until the peer closes or `limit` passes; returns what arrived and whether it closed.
inline std::pair<std::string, bool> read_until_close(int fd, std::chrono::milliseconds limit) {
  std::string data;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return {data, false};
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      return {data, false};
    }
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) {
      return {data, true};
    }
    data.append(buf, static_cast<std::size_t>(n));
  }
}

}  // namespace keel::testing
