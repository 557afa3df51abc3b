// TCP throughput for scripts/bench/net, static so that it runs in the guest and in the emulated
// host alike.
//   net_bench server PORT            host: serves clients one at a time, for ever
//   net_bench client IP PORT SECONDS guest: guest to host for SECONDS, then host to guest
// The client's first byte names the direction ('s': the client sends, the server counts;
// 'r': the server sends until the client closes). It prints one line:
//   KEEL-BENCH net tx_mibs=X rx_mibs=Y bytes=N
// (tx: guest to host, rx: host to guest; MiB/s over the measured seconds; bytes both ways).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kChunk = 128 * 1024;

int serve(int port) {
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in at{};
  at.sin_family = AF_INET;
  at.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::bind(listener, reinterpret_cast<sockaddr*>(&at), sizeof at) != 0 || ::listen(listener, 4) != 0) {
    std::perror("net_bench: listen");
    return 1;
  }
  std::vector<char> buffer(kChunk, 'k');
  for (;;) {
    const int c = ::accept(listener, nullptr, nullptr);
    if (c < 0) {
      continue;
    }
    char mode = 0;
    if (::read(c, &mode, 1) == 1) {
      if (mode == 's') {
        while (::read(c, buffer.data(), buffer.size()) > 0) {
        }
      } else if (mode == 'r') {
        while (::send(c, buffer.data(), buffer.size(), MSG_NOSIGNAL) > 0) {
        }
      }
    }
    ::close(c);
  }
}

int connect_to(const char* ip, int port, char mode) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in at{};
  at.sin_family = AF_INET;
  at.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, ip, &at.sin_addr);
  for (int i = 0; i < 100; ++i) {
    if (::connect(fd, reinterpret_cast<sockaddr*>(&at), sizeof at) == 0) {
      return ::write(fd, &mode, 1) == 1 ? fd : -1;
    }
    ::usleep(100000);
  }
  return -1;
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "server") == 0) {
    return serve(std::atoi(argv[2]));
  }
  if (argc != 5 || std::strcmp(argv[1], "client") != 0) {
    std::fprintf(stderr, "usage: net_bench server PORT | client IP PORT SECONDS\n");
    return 2;
  }
  const int port = std::atoi(argv[3]);
  const double seconds = std::atof(argv[4]);
  std::vector<char> buffer(kChunk, 'g');
  // Guest to host.
  const int out = connect_to(argv[2], port, 's');
  if (out < 0) {
    std::printf("KEEL-BENCH net error=connect\n");
    return 1;
  }
  std::uint64_t sent = 0;
  auto start = Clock::now();
  while (seconds_since(start) < seconds) {
    const ssize_t n = ::send(out, buffer.data(), buffer.size(), MSG_NOSIGNAL);
    if (n <= 0) {
      break;
    }
    sent += static_cast<std::uint64_t>(n);
  }
  const double tx = static_cast<double>(sent) / 1048576.0 / seconds_since(start);
  ::close(out);
  // Host to guest.
  const int in = connect_to(argv[2], port, 'r');
  if (in < 0) {
    std::printf("KEEL-BENCH net error=connect\n");
    return 1;
  }
  std::uint64_t received = 0;
  start = Clock::now();
  while (seconds_since(start) < seconds) {
    const ssize_t n = ::read(in, buffer.data(), buffer.size());
    if (n <= 0) {
      break;
    }
    received += static_cast<std::uint64_t>(n);
  }
  const double rx = static_cast<double>(received) / 1048576.0 / seconds_since(start);
  ::close(in);
  std::printf("KEEL-BENCH net tx_mibs=%.1f rx_mibs=%.1f bytes=%llu\n", tx, rx,
              static_cast<unsigned long long>(sent + received));
  std::fflush(stdout);
  return 0;
}
