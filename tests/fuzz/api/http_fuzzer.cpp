// Raw bytes from a client, through a real HttpSession over a socketpair, against a fake VMM:
// Beast's parser, the 413 and 400 paths, pipelined keep-alive requests, Expect: 100-continue.
// The client sends the input and half-closes; the session must answer and close without
// waiting for a timeout. Properties: nothing crashes or leaks; everything the server writes is
// a sequence of HTTP/1.1 responses.
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>

#include <boost/asio/io_context.hpp>

#include "api/http_session.hpp"
#include "base/log.hpp"
#include "base/unique_fd.hpp"
#include "fuzz_checks.hpp"
#include "tests/unit/api/fake_vmm_control.hpp"

namespace {

constexpr std::size_t kMaxInput =
    std::size_t{64} * 1024;  // fits in the socket buffer: one write, no blocking

void drain(int fd, std::string& into) {
  char buf[16384];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n <= 0) {
      return;
    }
    into.append(buf, static_cast<std::size_t>(n));
  }
}

}  // namespace

// NOLINTNEXTLINE(readability-identifier-naming): libFuzzer's entry point
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  keel::log::set_level(keel::log::Level::kError);
  if (size > kMaxInput) {
    return 0;
  }
  int fds[2];
  KEEL_FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  keel::UniqueFd client(fds[0]);

  boost::asio::io_context io;
  keel::api::HttpSession::Socket server_socket(io);
  boost::system::error_code ec;
  server_socket.assign(boost::asio::local::stream_protocol(), fds[1], ec);
  KEEL_FUZZ_CHECK(!ec);

  keel::api::test::FakeVmmControl vmm;
  // A small body limit, so inputs of fuzzing size reach the 413 path too.
  auto session = std::make_shared<keel::api::HttpSession>(
      std::move(server_socket), vmm, keel::api::SessionLimits{std::chrono::seconds(5), 512});
  session->start();
  session.reset();

  std::size_t sent = 0;
  while (sent < size) {
    const ssize_t n = ::send(client.get(), data + sent, size - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n <= 0) {
      break;  // the server closed early (413, 400): fine
    }
    sent += static_cast<std::size_t>(n);
  }
  ::shutdown(client.get(), SHUT_WR);

  std::string answer;
  while (!io.stopped()) {
    io.poll();
    drain(client.get(), answer);
  }
  drain(client.get(), answer);
  KEEL_FUZZ_CHECK(answer.empty() || answer.rfind("HTTP/1.1 ", 0) == 0 ||
                  answer.rfind("HTTP/1.0 ", 0) == 0);
  return 0;
}
