#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <utility>
#include <vector>

#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>

#include "base/unique_fd.hpp"

namespace keel::api {

// The read side of an API connection: reads with recvmsg, keeping the file descriptors a client
// passes with SCM_RIGHTS beside the bytes (cloud-hypervisor's clients send a TAP's fds with
// vm.add-net this way). An AsyncReadStream for Beast's parser; deadlines are the session's.
// At most kMaxFds are kept per connection until taken; more are closed as they arrive.
class FdReceivingStream {
 public:
  using Socket = boost::asio::local::stream_protocol::socket;
  using executor_type = Socket::executor_type;
  static constexpr std::size_t kMaxFds = 16;

  explicit FdReceivingStream(Socket& socket) : socket_(socket) {}

  executor_type get_executor() { return socket_.get_executor(); }

  // The descriptors received since the last call, in arrival order.
  std::vector<UniqueFd> take_fds() { return std::exchange(fds_, {}); }
  bool has_fds() const { return !fds_.empty(); }
  // Whether more arrived than were kept (the rest were closed).
  bool fds_dropped() const { return dropped_; }

  // Tries recvmsg first (a busy client's next request is usually there already) and waits for
  // the socket only when nothing is; a result found at once is delivered through the executor,
  // never inside the call.
  template <class MutableBuffers, class Handler>
  auto async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    enum class Step { kTry, kDeliver, kWaited };
    return boost::asio::async_compose<Handler, void(boost::system::error_code, std::size_t)>(
        [this, buffers, step = Step::kTry, result = boost::system::error_code{},
         n = std::size_t{0}](auto& self, boost::system::error_code ec = {}) mutable {
          switch (step) {
            case Step::kTry:
              result = receive(buffers, n);
              if (result != boost::asio::error::would_block) {
                step = Step::kDeliver;
                boost::asio::post(socket_.get_executor(), std::move(self));
                return;
              }
              break;
            case Step::kDeliver:
              self.complete(result, n);
              return;
            case Step::kWaited:
              if (ec) {
                self.complete(ec, 0);
                return;
              }
              result = receive(buffers, n);
              if (result != boost::asio::error::would_block) {
                self.complete(result, n);
                return;
              }
              break;
          }
          step = Step::kWaited;
          socket_.async_wait(Socket::wait_read, std::move(self));
        },
        handler, socket_);
  }

 private:
  template <class MutableBuffers>
  boost::system::error_code receive(const MutableBuffers& buffers, std::size_t& n) {
    std::array<iovec, 16> iov{};
    std::size_t count = 0;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers) && count < iov.size(); ++it) {
      boost::asio::mutable_buffer b(*it);
      if (b.size() != 0) {
        iov[count++] = iovec{b.data(), b.size()};
      }
    }
    if (count == 0) {
      n = 0;
      return {};
    }
    return receive(iov.data(), count, n);
  }
  boost::system::error_code receive(iovec* iov, std::size_t count, std::size_t& n);

  Socket& socket_;
  std::vector<UniqueFd> fds_;
  bool dropped_ = false;
};

}  // namespace keel::api
