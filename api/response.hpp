#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/result.hpp"

namespace keel::api {

// An API answer before it becomes HTTP: the status, a JSON body (empty for 204) and, for 405,
// the methods the endpoint takes.
struct Response {
  unsigned status = 204;
  std::string body;
  std::string allow;
};

Response no_content();
Response json_response(unsigned status, const nlohmann::json& body);

// How an Error maps to HTTP. The API's own errors (api_errc.hpp) carry their status; the
// others by their ErrorKind (vmm/vmm_control.hpp): kInvalid 400, kNotFound 404, kWrongState,
// kNotSupported and kExists 409 (a device id or path already in use, as cloud-hypervisor
// answers), kRetry 429 (as cloud-hypervisor's vm.resize while a vCPU removal is pending), kHost
// 500 whatever its errno.
unsigned http_status(const Error& error);
// "bad_request", "not_found", "method_not_allowed", "wrong_state", "not_supported",
// "already_exists", "retry", "payload_too_large" or "internal".
std::string_view error_kind(const Error& error);
// The message for people: the context alone for the API's errors and for invalid(), "context:
// strerror" for errors a syscall reported.
std::string error_message(const Error& error);

// The answer as HTTP/1.`version` (0 or 1), appended to `out`: the status line, Server,
// Content-Type and Content-Length (a 204 has neither: RFC 9110, 8.6), Allow when set, and
// Connection when `keep_alive` differs from the version's default, then the body.
void append_http(const Response& response, unsigned version, bool keep_alive, std::string& out);

// The error body every non-2xx answer carries: {"kind": error_kind, "message": error_message}.
Response error_response(const Error& error);

}  // namespace keel::api
