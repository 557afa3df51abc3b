#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "api/request_parser.hpp"
#include "base/result.hpp"
#include "vmm/vmm_control.hpp"

namespace keel::api {

struct ApiServerOptions {
  // To receive one whole request (header and body; an idle keep-alive connection counts) and to
  // send one answer; a client slower than this is disconnected.
  std::chrono::milliseconds timeout{10'000};
  std::size_t body_limit = kMaxBodyBytes;  // larger bodies are answered 413
  std::size_t max_connections = 256;       // at the limit the client idle longest is dropped
  // Runs first on the API thread, before it accepts anyone: the place for its seccomp filter.
  // A failure makes start() fail.
  std::function<Status()> on_thread_start;
};

// The REST API server: HTTP/1.1 on a Unix socket, on its own thread (the API thread), which
// runs every connection (asynchronously, keep-alive) and calls `control` for each request.
// VmmControl's methods block until the VMM thread answers, so one slow operation delays the
// other clients' answers, but not their connections.
class ApiServer {
 public:
  // Binds `socket_path` (mode 0600; a stale socket file is replaced, a live one or a non-socket
  // is refused: see UnixListener), then starts the API thread. `control` must outlive the server.
  static Result<std::unique_ptr<ApiServer>> start(const std::string& socket_path,
                                                  vmm::VmmControl& control,
                                                  ApiServerOptions options = ApiServerOptions());

  // Stops accepting, lets answers being sent finish (within the timeout), closes every
  // connection, joins the API thread and removes the socket file. Idempotent; call it from any
  // thread but the API thread (not from inside a VmmControl call).
  void stop();
  ~ApiServer();

  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  const std::string& socket_path() const;

 private:
  struct Impl;
  explicit ApiServer(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
};

}  // namespace keel::api
