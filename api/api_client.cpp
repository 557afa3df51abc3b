#include "api/api_client.hpp"

#include <sys/socket.h>

#include <cstring>
#include <sstream>

#include <boost/asio/io_context.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "api/request_parser.hpp"
#include "base/version.hpp"

namespace keel::api {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using Protocol = asio::local::stream_protocol;

// The exchange as one chain of asynchronous steps on a private io_context, so the stream's
// deadline bounds all of it (Asio's blocking calls would ignore SO_RCVTIMEO and wait forever).
struct Exchange {
  beast::basic_stream<Protocol> stream;
  http::request<http::string_body> request;
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  beast::error_code error;
  std::string step;
  std::string raw;  // the request as sent with file descriptors

  explicit Exchange(asio::io_context& io) : stream(io) {}

  void fail(beast::error_code ec, std::string what) {
    error = ec;
    step = std::move(what);
  }
};

}  // namespace

Result<ApiReply> api_request(const std::string& socket_path, std::string_view method,
                             std::string_view target, std::string body,
                             std::chrono::milliseconds timeout, const std::vector<int>& fds) {
  asio::io_context io;
  Exchange x(io);
  x.request.method_string(beast::string_view(method.data(), method.size()));
  x.request.target(beast::string_view(target.data(), target.size()));
  x.request.version(11);
  x.request.set(http::field::host, "localhost");
  x.request.set(http::field::user_agent, std::string("keel-remote/") + kVersion);
  x.request.set(http::field::accept, "application/json");
  if (!body.empty()) {
    x.request.set(http::field::content_type, "application/json");
  }
  x.request.body() = std::move(body);
  x.request.keep_alive(false);
  x.request.prepare_payload();
  // Answers are small; an error body quoting a request stays well under this.
  x.parser.body_limit(16 * kMaxBodyBytes);

  x.stream.expires_after(timeout);
  x.stream.async_connect(Protocol::endpoint(socket_path), [&x, &fds](beast::error_code ec) {
    if (ec) {
      x.fail(ec, "connect to ");
      return;
    }
    auto read_answer = [&x](beast::error_code wec, std::size_t) {
      // A server that refuses the request (413) may close before reading all of it: read its
      // answer anyway.
      if (wec && wec != asio::error::broken_pipe && wec != asio::error::connection_reset) {
        x.fail(wec, "send the request to ");
        return;
      }
      http::async_read(x.stream, x.buffer, x.parser, [&x](beast::error_code rec, std::size_t) {
        if (rec) {
          x.fail(rec, "read the answer from ");
        }
      });
    };
    if (fds.empty()) {
      http::async_write(x.stream, x.request, read_answer);
      return;
    }
    // The descriptors ride on the request's first bytes; the rest (if any) follows as usual.
    std::ostringstream text;
    text << x.request;
    x.raw = text.str();
    std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
    iovec iov{x.raw.data(), x.raw.size()};
    msghdr message{};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_control = control.data();
    message.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&message);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    const ssize_t sent = ::sendmsg(x.stream.socket().native_handle(), &message, MSG_NOSIGNAL);
    if (sent <= 0) {
      x.fail(beast::error_code(errno, boost::system::system_category()),
             "send the request and its file descriptors to ");
      return;
    }
    asio::async_write(x.stream, asio::buffer(x.raw.data() + sent, x.raw.size() - static_cast<std::size_t>(sent)),
                      read_answer);
  });
  io.run();

  if (x.error) {
    if (x.error == beast::error::timeout) {
      return Error::from_errno(ETIMEDOUT, "no answer from the API at " + socket_path + " within " +
                                              std::to_string(timeout.count()) + " ms");
    }
    return Error(ErrorKind::kHost, x.error, "API: " + x.step + socket_path);
  }
  ApiReply reply;
  reply.status = x.parser.get().result_int();
  reply.body = std::move(x.parser.get().body());
  return reply;
}

}  // namespace keel::api
