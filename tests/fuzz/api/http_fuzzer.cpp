// Raw bytes from a client, through a real HttpSession over a socketpair, against a fake VMM:
// Beast's parser, the 413 and 400 paths, pipelined keep-alive requests, Expect: 100-continue.
// The client sends the input and half-closes; the session must answer and close without
// waiting for a timeout (its timer is a minute, far above libFuzzer's -timeout of 10 s, so a
// session that waits for it fails the run). Properties: nothing crashes or leaks; everything
// the server writes is a sequence of complete HTTP responses (status line, headers, a body of
// exactly its Content-Length), one per request it read, of statuses the API documents; and a
// request the client sent whole (a header block ending in an empty line, with no body framing)
// gets an answer.
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <regex>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

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

// How many complete HTTP/1.x responses `answer` holds; -1 when anything in it is not one.
int count_responses(const std::string& answer) {
  namespace http = boost::beast::http;
  int count = 0;
  std::size_t at = 0;
  while (at < answer.size()) {
    http::response_parser<http::string_body> parser;
    parser.eager(true);
    parser.skip(false);
    boost::beast::error_code ec;
    std::size_t used = 0;
    while (!parser.is_done()) {
      const std::size_t n = parser.put(boost::asio::buffer(answer.data() + at + used, answer.size() - at - used), ec);
      if (ec || n == 0) {
        return -1;  // malformed, or cut short
      }
      used += n;
    }
    const unsigned status = parser.get().result_int();
    if (status != 100 && status != 200 && status != 204 && status != 400 && status != 404 &&
        status != 405 && status != 409 && status != 413 && status != 500) {
      return -1;
    }
    count += status == 100 ? 0 : 1;
    at += used;
  }
  return count;
}

// Whether the input starts with a request the client sent whole and that has no body framing:
// a valid request line (a method, an origin-form target, HTTP/1.0 or 1.1), a header block that
// ends in an empty line, no Content-Length, Transfer-Encoding or Expect. (Bytes that are not a
// request line at all may be dropped without an answer.)
bool whole_request_first(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::size_t end = text.find("\r\n\r\n");
  if (end == std::string::npos || end == 0) {
    return false;
  }
  const std::string line = text.substr(0, text.find("\r\n"));
  static const std::regex kRequestLine("(GET|PUT|POST|DELETE|HEAD|PATCH|OPTIONS) /[!-~]* HTTP/1\\.[01]");
  if (!std::regex_match(line, kRequestLine)) {
    return false;
  }
  std::string head = text.substr(0, end);
  for (char& c : head) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return head.find("content-length") == std::string::npos &&
         head.find("transfer-encoding") == std::string::npos &&
         head.find("expect") == std::string::npos && head.find('\0') == std::string::npos;
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
  keel::api::RequestHandler handler(vmm);
  // A small body limit, so inputs of fuzzing size reach the 413 path too.
  auto session = std::make_shared<keel::api::HttpSession>(
      std::move(server_socket), handler, keel::api::SessionLimits{std::chrono::seconds(60), 512});
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
  const int responses = count_responses(answer);
  KEEL_FUZZ_CHECK(responses >= 0);
  KEEL_FUZZ_CHECK(!whole_request_first(data, size) || responses >= 1);
  return 0;
}
