#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"

namespace keel::api {

struct ApiReply {
  unsigned status = 0;
  std::string body;
};

// One HTTP/1.1 request to the API on a fresh connection to the Unix socket `socket_path`
// (Connection: close). The whole exchange must finish within `timeout`. Errors are the
// connection's (ENOENT: no socket there, ECONNREFUSED: nobody serves it, ETIMEDOUT); any HTTP
// status is a reply, not an error. `fds` go with the request's first bytes (SCM_RIGHTS), as
// cloud-hypervisor's clients pass a TAP to vm.add-net.
Result<ApiReply> api_request(const std::string& socket_path, std::string_view method,
                             std::string_view target, std::string body,
                             std::chrono::milliseconds timeout, const std::vector<int>& fds = {});

}  // namespace keel::api
