#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "api/dispatch.hpp"
#include "api/fd_receiving_stream.hpp"
#include "api/response.hpp"

namespace keel::api {

struct SessionLimits {
  std::chrono::milliseconds timeout;  // to receive one whole request, and to send one answer
  std::size_t body_limit;             // bytes; larger bodies are answered 413
};

// One client connection: reads requests one after another (keep-alive), answers each with
// RequestHandler::handle, and closes on the client's request, on an error, on a timeout, or on
// stop().
// Lives in shared_ptrs held by its pending handlers; everything runs on the API thread.
class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  using Socket = boost::asio::local::stream_protocol::socket;

  HttpSession(Socket socket, RequestHandler& handler, SessionLimits limits)
      : stream_(std::move(socket)),
        reader_(stream_.socket()),
        read_deadline_(stream_.get_executor()),
        handler_(handler),
        limits_(limits) {}

  void start();
  // Closes now if waiting for a request, after the answer if one is being sent.
  void stop();
  // Since when it has been waiting for the client's next request (idle, or the request still
  // arriving); nullopt while it answers or once closed.
  std::optional<std::chrono::steady_clock::time_point> waiting_since() const;

 private:
  using Stream = boost::beast::basic_stream<boost::asio::local::stream_protocol>;
  using Request = boost::beast::http::request<boost::beast::http::string_body>;

  void read_request();
  void on_header(boost::beast::error_code ec);
  void read_body();
  void on_read(boost::beast::error_code ec);
  // Answers a request that could not be read (413, 400) and closes.
  void answer_unreadable(boost::beast::error_code ec);
  void answer_refused(const Error& error);
  // `head`: the answer to a HEAD request, its headers without the body.
  void send(const Response& response, unsigned version, bool keep_alive, bool head = false);
  void on_write(boost::beast::error_code ec, bool keep_alive);
  void close();

  Stream stream_;  // writes (with their deadline) and closing
  FdReceivingStream reader_;  // reads, with the fds passed beside the bytes
  boost::asio::steady_timer read_deadline_;  // one for a whole request, header and body
  bool read_timed_out_ = false;
  unsigned read_generation_ = 0;  // which request's deadline a timer completion is about
  bool reading_ = false;
  RequestHandler& handler_;
  SessionLimits limits_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  std::string answer_;  // the answer being sent, as HTTP; its capacity kept for the next
  bool writing_ = false;
  bool stopping_ = false;
  bool closed_ = false;
  std::chrono::steady_clock::time_point waiting_since_{};
};

}  // namespace keel::api
