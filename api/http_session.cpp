#include "api/http_session.hpp"

#include <boost/asio/write.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>

#include "api/api_errc.hpp"
#include "base/log.hpp"

namespace keel::api {
namespace {

namespace beast = boost::beast;
namespace http = boost::beast::http;

constexpr std::size_t kHeaderLimit = std::size_t{16} * 1024;
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

}  // namespace

void HttpSession::start() { read_request(); }

void HttpSession::stop() {
  stopping_ = true;
  if (!writing_) {
    close();
  }
}

std::optional<std::chrono::steady_clock::time_point> HttpSession::waiting_since() const {
  if (closed_ || stopping_ || writing_) {
    return std::nullopt;
  }
  return waiting_since_;
}

void HttpSession::read_request() {
  waiting_since_ = std::chrono::steady_clock::now();
  parser_.emplace();
  parser_->body_limit(limits_.body_limit);
  parser_->header_limit(kHeaderLimit);
  // One deadline for the whole request, header and body: a client that trickles bytes or
  // half-closes is dropped when it expires, as is an idle keep-alive connection.
  read_timed_out_ = false;
  reading_ = true;
  const unsigned generation = ++read_generation_;
  read_deadline_.expires_after(limits_.timeout);
  read_deadline_.async_wait([weak = weak_from_this(), generation](beast::error_code ec) {
    auto self = weak.lock();
    // A completion already queued when the request finished is not this one's to act on.
    if (!ec && self && self->reading_ && self->read_generation_ == generation) {
      self->read_timed_out_ = true;
      // Cancelling ends a wait for the socket, but a read whose bytes were there at once is
      // already queued and would leave the next one without a deadline: shutting the receive
      // side ends that one too (bytes already received are still read, then end of stream).
      beast::error_code ignored;
      self->stream_.socket().shutdown(boost::asio::socket_base::shutdown_receive, ignored);
      self->stream_.socket().cancel(ignored);
    }
  });
  http::async_read_header(
      reader_, buffer_, *parser_,
      [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_header(ec); });
}

void HttpSession::on_header(beast::error_code ec) {
  if (ec) {
    on_read(ec);
    return;
  }
  // RFC 9112 §6.1: a request whose Transfer-Encoding does not end in chunked has a body of
  // unknown length, and one with both Transfer-Encoding and Content-Length is ambiguous; reading
  // either as bodiless would parse the body as the next request (smuggling). Answer 400, close.
  const auto& header = parser_->get();
  if (header.count(http::field::transfer_encoding) != 0 &&
      (!parser_->chunked() || header.count(http::field::content_length) != 0)) {
    const auto coding = header[http::field::transfer_encoding];
    answer_refused(Error::invalid(
        "Transfer-Encoding \"" + std::string(coding.substr(0, 64)) +
        "\" is not taken: send the body with Content-Length, or chunked alone"));
    return;
  }
  // RFC 9110, 10.1.1: an HTTP/1.0 client's 100-continue is ignored.
  if (beast::iequals(header[http::field::expect], "100-continue") && header.version() >= 11 &&
      !parser_->is_done()) {
    // curl sends large bodies only after "100 Continue" (or a one-second wait).
    writing_ = true;
    stream_.expires_after(limits_.timeout);
    boost::asio::async_write(stream_, boost::asio::buffer(kContinue.data(), kContinue.size()),
                             [self = shared_from_this()](beast::error_code wec, std::size_t) {
                               self->writing_ = false;
                               if (wec || self->stopping_) {
                                 self->close();
                                 return;
                               }
                               self->read_body();
                             });
    return;
  }
  read_body();
}

void HttpSession::read_body() {
  http::async_read(
      reader_, buffer_, *parser_,
      [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
}

void HttpSession::on_read(beast::error_code ec) {
  reading_ = false;
  read_deadline_.cancel();
  if (stopping_) {  // stop() came while the request arrived: not handed to the VMM
    close();
    return;
  }
  if (read_timed_out_ && ec) {
    ec = beast::error::timeout;
  }
  const bool parse_error =
      ec && &ec.category() == &beast::error_code(http::error::bad_method).category() &&
      ec != http::error::end_of_stream && ec != http::error::partial_message;
  if (parse_error) {  // includes body_limit: answered 413
    answer_unreadable(ec);
    return;
  }
  if (ec) {
    if (ec == beast::error::timeout) {
      log::info("api", "dropped a client that sent no whole request in time",
                {{"timeout_ms", static_cast<std::int64_t>(limits_.timeout.count())}});
    } else if (ec != http::error::end_of_stream && ec != boost::asio::error::operation_aborted) {
      log::debug("api", "connection ended", {{"error", ec.message()}});
    }
    close();
    return;
  }
  Request& request = parser_->get();
  const auto method = request.method_string();
  const auto target = request.target();
  if (reader_.has_fds() && buffer_.size() != 0) {
    // The descriptors came with the last bytes read, and those reach into the next request
    // (pipelined): whose they are cannot be told. Refused whole rather than guessed.
    answer_refused(Error::invalid("file descriptors came with pipelined requests; send a "
                                  "request with descriptors alone, after the previous answer"));
    return;
  }
  if (reader_.fds_dropped()) {
    answer_refused(Error::invalid("more than " + std::to_string(FdReceivingStream::kMaxFds) +
                                  " file descriptors came with the request; send at most that"));
    return;
  }
  // HEAD is GET without the body (RFC 9110, 9.3.2): the same status and headers.
  const bool head = request.method() == http::verb::head;
  const Response response =
      handler_.handle(head ? std::string_view("GET") : std::string_view(method.data(), method.size()),
                      std::string_view(target.data(), target.size()), request.body(),
                      reader_.take_fds());
  // Beast takes "HTTP/1.9" as version 19: answer 1.0 clients in 1.0, everyone else in 1.1.
  send(response, request.version() == 10 ? 10 : 11, request.keep_alive(), head);
}

void HttpSession::answer_unreadable(beast::error_code ec) {
  answer_refused(ec == http::error::body_limit
                     ? api_error(ApiErrc::kBodyTooLarge, "the body is larger than the API takes (" +
                                                             std::to_string(limits_.body_limit) + " bytes)")
                     : Error::invalid("the request is not valid HTTP/1.1: " + ec.message()));
}

void HttpSession::answer_refused(const Error& error) {
  Response response = error_response(error);
  log::info("api", "request refused", {{"status", response.status}, {"body", response.body}});
  // The rest of the request is unread: the connection cannot be used again.
  send(response, 11, false);
}

void HttpSession::send(const Response& response, unsigned version, bool keep_alive, bool head) {
  reading_ = false;
  read_deadline_.cancel();
  keep_alive = keep_alive && !stopping_;
  answer_.clear();
  append_http(response, version == 10 ? 0 : 1, keep_alive, answer_);
  if (head) {
    answer_.resize(answer_.size() - response.body.size());
  }
  writing_ = true;
  stream_.expires_after(limits_.timeout);
  boost::asio::async_write(stream_, boost::asio::buffer(answer_),
                           [self = shared_from_this(), keep_alive](beast::error_code ec, std::size_t) {
                             self->on_write(ec, keep_alive);
                           });
}

void HttpSession::on_write(beast::error_code ec, bool keep_alive) {
  writing_ = false;
  if (ec || !keep_alive || stopping_) {
    close();
    return;
  }
  read_request();
}

void HttpSession::close() {
  if (closed_) {
    return;
  }
  closed_ = true;
  beast::error_code ignored;
  stream_.socket().shutdown(boost::asio::socket_base::shutdown_send, ignored);
  stream_.close();
}

}  // namespace keel::api
