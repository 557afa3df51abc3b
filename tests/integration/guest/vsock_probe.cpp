// Both ends of the testbed's vsock checks, static so it runs in the guest and in the emulated
// host alike:
//   vsock_probe echo PORT                 guest: listen on vsock PORT, echo each connection
//   vsock_probe send CID PORT BYTES       guest: connect to vsock CID:PORT, send BYTES, check echo
//   vsock_probe host-echo PATH            host: listen on the Unix socket PATH, echo connections
//   vsock_probe host-send PATH PORT BYTES host: through keel's hybrid socket PATH to guest PORT
//   vsock_probe agent PORT                guest: a stand-in for Kata's agent: each connection to
//                                         vsock PORT carries one shell command line; its output
//                                         (stdout and stderr) is the answer
//   vsock_probe host-cmd PATH PORT CMD    host: through keel's hybrid socket PATH, runs CMD in
//                                         the guest's agent, prints its answer
//   vsock_probe tap-exec NAME FD PROG...  host: opens the TAP NAME as Kata does (IFF_TAP |
//                                         IFF_NO_PI | IFF_VNET_HDR) as fd FD, then runs PROG
// A sender writes BYTES of a fixed pseudo-random stream while reading the echo, shuts its write
// side, reads to the end, and prints one line:
//   vsock_probe sent=N received=N equal=yes|no [ok=OK-line]
// Exit status 0 only when everything came back equal.
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/vm_sockets.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

int fail(const char* what) {
  std::printf("vsock_probe error=%s errno=%d\n", what, errno);
  std::fflush(stdout);
  return 1;
}

std::uint8_t stream_byte(std::uint64_t i) {
  std::uint64_t x = i * 0x9e3779b97f4a7c15ULL;
  x ^= x >> 29;
  return static_cast<std::uint8_t>(x * 0xbf58476d1ce4e5b9ULL >> 56);
}

int unix_socket(const char* path, bool listening) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path, sizeof a.sun_path - 1);
  if (listening) {
    ::unlink(path);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 8) != 0) {
      return -1;
    }
  } else if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    return -1;
  }
  return fd;
}

// A vsock socket listening on `port` for any guest address; -1 on failure.
int vsock_listener(const char* port) {
  const int fd = ::socket(AF_VSOCK, SOCK_STREAM, 0);
  sockaddr_vm a{};
  a.svm_family = AF_VSOCK;
  a.svm_cid = VMADDR_CID_ANY;
  a.svm_port = static_cast<unsigned>(std::atoi(port));
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(fd, 8) != 0) {
    return -1;
  }
  return fd;
}

// Echoes every connection, one at a time, until killed.
int echo(int listener) {
  std::vector<char> buffer(65536);
  for (;;) {
    const int c = ::accept(listener, nullptr, nullptr);
    if (c < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail("accept");
    }
    for (;;) {
      const ssize_t n = ::read(c, buffer.data(), buffer.size());
      if (n <= 0) {
        break;
      }
      for (ssize_t done = 0; done < n;) {
        const ssize_t w = ::write(c, buffer.data() + done, static_cast<std::size_t>(n - done));
        if (w <= 0) {
          break;
        }
        done += w;
      }
    }
    ::close(c);
  }
}

// Sends `total` bytes of the stream and reads the echo at the same time.
int send_and_check(int fd, std::uint64_t total, const std::string& ok_line) {
  std::vector<std::uint8_t> out(65536), in(65536);
  std::uint64_t sent = 0, received = 0;
  bool equal = true, shut = false;
  while (true) {
    if (sent == total && !shut) {
      ::shutdown(fd, SHUT_WR);
      shut = true;
    }
    pollfd p{fd, static_cast<short>(POLLIN | (shut ? 0 : POLLOUT)), 0};
    if (::poll(&p, 1, 30000) != 1) {
      break;  // stuck for 30 s: report what came
    }
    if ((p.revents & POLLOUT) != 0 && !shut) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(out.size(), total - sent));
      for (std::size_t i = 0; i < n; ++i) {
        out[i] = stream_byte(sent + i);
      }
      const ssize_t w = ::send(fd, out.data(), n, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (w > 0) {
        sent += static_cast<std::uint64_t>(w);
      } else if (w < 0 && errno != EAGAIN) {
        break;
      }
    }
    if ((p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      const ssize_t r = ::recv(fd, in.data(), in.size(), MSG_DONTWAIT);
      if (r == 0) {
        break;
      }
      if (r < 0 && errno != EAGAIN) {
        break;
      }
      for (ssize_t i = 0; i < r; ++i) {
        equal = equal && in[static_cast<std::size_t>(i)] == stream_byte(received + static_cast<std::uint64_t>(i));
      }
      received += r > 0 ? static_cast<std::uint64_t>(r) : 0;
    }
  }
  equal = equal && sent == total && received == total;
  std::printf("vsock_probe sent=%llu received=%llu equal=%s%s%s\n",
              static_cast<unsigned long long>(sent), static_cast<unsigned long long>(received),
              equal ? "yes" : "no", ok_line.empty() ? "" : " ok=", ok_line.c_str());
  std::fflush(stdout);
  return equal ? 0 : 1;
}

// The agent: one command per connection, run by the shell, its output sent back.
int agent(int listener) {
  for (;;) {
    const int c = ::accept(listener, nullptr, nullptr);
    if (c < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail("accept");
    }
    std::string command;
    char ch = 0;
    while (command.size() < 4096 && ::read(c, &ch, 1) == 1 && ch != '\n') {
      command.push_back(ch);
    }
    if (FILE* out = ::popen((command + " 2>&1").c_str(), "r")) {
      char buffer[4096];
      std::size_t n;
      while ((n = std::fread(buffer, 1, sizeof buffer, out)) > 0) {
        if (::write(c, buffer, n) != static_cast<ssize_t>(n)) {
          break;
        }
      }
      ::pclose(out);
    }
    ::close(c);
  }
}

// Connects through keel's hybrid vsock socket to guest `port`; returns the fd, or -1 after
// printing why.
int hybrid_connect(const char* path, const char* port, std::string& ok_line) {
  const int fd = unix_socket(path, false);
  if (fd < 0) {
    fail("unix-connect");
    return -1;
  }
  const std::string connect = std::string("CONNECT ") + port + "\n";
  if (::write(fd, connect.data(), connect.size()) != static_cast<ssize_t>(connect.size())) {
    fail("write-connect");
    return -1;
  }
  char ch = 0;  // "OK <port>", read byte by byte: the stream follows it
  while (ok_line.size() < 64 && ::read(fd, &ch, 1) == 1 && ch != '\n') {
    ok_line.push_back(ch == ' ' ? '_' : ch);
  }
  if (ok_line.rfind("OK_", 0) != 0) {
    std::printf("vsock_probe refused line=%s\n", ok_line.empty() ? "none" : ok_line.c_str());
    return -1;
  }
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "echo" && argc == 3) {
    const int fd = vsock_listener(argv[2]);
    return fd < 0 ? fail("vsock-listen") : echo(fd);
  }
  if (mode == "send" && argc == 5) {
    const int fd = ::socket(AF_VSOCK, SOCK_STREAM, 0);
    sockaddr_vm a{};
    a.svm_family = AF_VSOCK;
    a.svm_cid = static_cast<unsigned>(std::atoi(argv[2]));
    a.svm_port = static_cast<unsigned>(std::atoi(argv[3]));
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      return fail("vsock-connect");
    }
    return send_and_check(fd, std::strtoull(argv[4], nullptr, 10), "");
  }
  if (mode == "host-echo" && argc == 3) {
    const int fd = unix_socket(argv[2], true);
    return fd < 0 ? fail("unix-listen") : echo(fd);
  }
  if (mode == "host-send" && argc == 5) {
    std::string line;
    const int fd = hybrid_connect(argv[2], argv[3], line);
    return fd < 0 ? 1 : send_and_check(fd, std::strtoull(argv[4], nullptr, 10), line);
  }
  if (mode == "agent" && argc == 3) {
    const int fd = vsock_listener(argv[2]);
    return fd < 0 ? fail("vsock-listen") : agent(fd);
  }
  if (mode == "host-cmd" && argc == 5) {
    std::string line;
    const int fd = hybrid_connect(argv[2], argv[3], line);
    if (fd < 0) {
      return 1;
    }
    const std::string command = std::string(argv[4]) + "\n";
    if (::write(fd, command.data(), command.size()) != static_cast<ssize_t>(command.size())) {
      return fail("write-command");
    }
    char buffer[4096];
    ssize_t n;
    while ((n = ::read(fd, buffer, sizeof buffer)) > 0) {
      std::fwrite(buffer, 1, static_cast<std::size_t>(n), stdout);
    }
    std::fflush(stdout);
    return 0;
  }
  if (mode == "tap-exec" && argc >= 5) {
    const int fd = ::open("/dev/net/tun", O_RDWR);
    ifreq req{};
    std::strncpy(req.ifr_name, argv[2], IFNAMSIZ - 1);
    req.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    const int want = std::atoi(argv[3]);
    if (fd < 0 || ::ioctl(fd, TUNSETIFF, &req) != 0 || ::dup2(fd, want) != want) {
      return fail("tap-open");
    }
    ::execvp(argv[4], argv + 4);
    return fail("exec");
  }
  std::fprintf(stderr,
               "usage: vsock_probe echo PORT | send CID PORT BYTES | host-echo PATH | "
               "host-send PATH PORT BYTES | agent PORT | host-cmd PATH PORT CMD | "
               "tap-exec NAME FD PROG [ARGS...]\n");
  return 2;
}
