#include "api/api_server.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <future>
#include <list>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "api/http_session.hpp"
#include "api/unix_listener.hpp"
#include "base/log.hpp"

namespace keel::api {
namespace {

namespace asio = boost::asio;
using Protocol = asio::local::stream_protocol;

constexpr int kBacklog = 128;
// After a failed accept (EMFILE, ENFILE, ENOMEM): the first retry, doubling up to the last.
constexpr std::chrono::milliseconds kAcceptRetryFirst{50};
constexpr std::chrono::milliseconds kAcceptRetryMax{1000};

}  // namespace

struct ApiServer::Impl {
  Impl(UnixListener bound, vmm::VmmControl& vmm_control, ApiServerOptions opts)
      : listener(std::move(bound)), handler(vmm_control), options(std::move(opts)) {}

  void accept();
  void on_accept(boost::system::error_code ec, Protocol::socket socket);
  // Room for one more session: the one that has waited longest for its next request is
  // dropped when the limit is reached; false when every session is busy answering.
  bool make_room();
  void stop_sessions();
  void run();

  asio::io_context io{1};  // first member: destroyed last, after everything that uses it
  Protocol::acceptor acceptor{io};
  asio::steady_timer accept_retry{io};
  std::chrono::milliseconds accept_delay{0};  // 0: the last accept succeeded
  UnixListener listener;
  RequestHandler handler;  // API thread only
  ApiServerOptions options;
  std::list<std::weak_ptr<HttpSession>> sessions;  // API thread only
  bool stopping = false;                           // API thread only
  std::thread thread;
  std::promise<void> finished;
};

void ApiServer::Impl::accept() {
  acceptor.async_accept([this](boost::system::error_code ec, Protocol::socket socket) {
    on_accept(ec, std::move(socket));
  });
}

void ApiServer::Impl::on_accept(boost::system::error_code ec, Protocol::socket socket) {
  if (stopping || ec == asio::error::operation_aborted) {
    return;
  }
  if (ec) {
    // EMFILE and the like: keep serving the clients there are and try again later, backing off
    // so that a full fd table does not spin the API thread; one warning per streak.
    if (accept_delay.count() == 0) {
      log::warn("api", "accept failed; retrying with back-off while serving the clients there are",
                {{"error", ec.message()}});
      accept_delay = kAcceptRetryFirst;
    } else {
      accept_delay = std::min(accept_delay * 2, kAcceptRetryMax);
    }
    accept_retry.expires_after(accept_delay);
    accept_retry.async_wait([this](boost::system::error_code wait_ec) {
      if (!wait_ec && !stopping) {
        accept();
      }
    });
    return;
  }
  if (accept_delay.count() != 0) {
    log::info("api", "accepting clients again");
    accept_delay = std::chrono::milliseconds{0};
  }
  if (!make_room()) {
    log::warn("api", "too many API connections, all busy; disconnected a new client",
              {{"max_connections", options.max_connections}});
    boost::system::error_code ignored;
    socket.close(ignored);
  } else {
    auto session = std::make_shared<HttpSession>(
        std::move(socket), handler, SessionLimits{options.timeout, options.body_limit});
    sessions.push_back(session);
    session->start();
  }
  accept();
}

bool ApiServer::Impl::make_room() {
  sessions.remove_if([](const std::weak_ptr<HttpSession>& s) { return s.expired(); });
  if (sessions.size() < options.max_connections) {
    return true;
  }
  std::shared_ptr<HttpSession> idlest;
  std::chrono::steady_clock::time_point oldest{};
  for (const auto& weak : sessions) {
    auto session = weak.lock();
    const auto since = session ? session->waiting_since() : std::nullopt;
    if (since && (!idlest || *since < oldest)) {
      idlest = session;
      oldest = *since;
    }
  }
  if (!idlest) {
    return false;
  }
  log::info("api", "connection limit reached; dropped the client idle longest to serve a new one",
            {{"max_connections", options.max_connections}});
  idlest->stop();
  sessions.remove_if([&](const std::weak_ptr<HttpSession>& s) { return s.lock() == idlest; });
  return true;
}

void ApiServer::Impl::stop_sessions() {
  stopping = true;
  boost::system::error_code ignored;
  acceptor.close(ignored);
  accept_retry.cancel();
  for (const auto& weak : sessions) {
    if (auto session = weak.lock()) {
      session->stop();
    }
  }
}

void ApiServer::Impl::run() {
  // A handler that throws (std::bad_alloc) must not end the API thread: log and go on.
  for (;;) {
    try {
      io.run();
      break;
    } catch (const std::exception& e) {
      log::error("api", "API thread: unexpected exception", {{"what", e.what()}});
    }
  }
  finished.set_value();
}

Result<std::unique_ptr<ApiServer>> ApiServer::start(const std::string& socket_path,
                                                    vmm::VmmControl& control,
                                                    ApiServerOptions options) {
  KEEL_TRY(auto listener, UnixListener::listen(socket_path, kBacklog));
  auto impl = std::make_unique<Impl>(std::move(listener), control, std::move(options));
  boost::system::error_code ec;
  impl->acceptor.assign(Protocol(), impl->listener.fd().get(), ec);
  if (ec) {
    impl->listener.remove_file();
    return Error(ErrorKind::kHost, ec, "API socket: " + socket_path);
  }
  impl->listener.fd().release();  // the acceptor owns it now
  impl->accept();

  // Shared with the thread, which may still be inside set_value() when start() returns.
  auto started = std::make_shared<std::promise<Status>>();
  auto started_future = started->get_future();
  Impl* raw = impl.get();
  try {
    impl->thread = std::thread([raw, started] {
      if (raw->options.on_thread_start) {
        Status status = raw->options.on_thread_start();
        if (!status.ok()) {
          started->set_value(status);
          raw->finished.set_value();
          return;
        }
      }
      started->set_value(ok_status());
      raw->run();
    });
  } catch (const std::system_error& e) {
    impl->listener.remove_file();
    return Error(ErrorKind::kHost, e.code(), "API thread: could not start it");
  }
  Status status = started_future.get();
  if (!status.ok()) {
    impl->thread.join();
    impl->listener.remove_file();
    return status.error();
  }
  log::info("api", "serving the REST API", {{"socket", socket_path}});
  return std::unique_ptr<ApiServer>(new ApiServer(std::move(impl)));
}

ApiServer::ApiServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ApiServer::~ApiServer() { stop(); }

const std::string& ApiServer::socket_path() const { return impl_->listener.path(); }

void ApiServer::stop() {
  if (!impl_ || !impl_->thread.joinable()) {
    return;
  }
  Impl* impl = impl_.get();
  asio::post(impl->io, [impl] { impl->stop_sessions(); });
  // Answers in flight get one timeout to finish; then the loop is stopped whatever is left.
  auto finished = impl->finished.get_future();
  if (finished.wait_for(impl->options.timeout + std::chrono::milliseconds(100)) !=
      std::future_status::ready) {
    impl->io.stop();
  }
  impl->thread.join();
  impl->listener.remove_file();
}

}  // namespace keel::api
