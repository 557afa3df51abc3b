#include "api/response.hpp"

#include <boost/beast/http/status.hpp>

#include "api/api_errc.hpp"
#include "api/json_text.hpp"
#include "base/version.hpp"

namespace keel::api {

Response no_content() { return Response{204, {}, {}}; }

Response json_response(unsigned status, const nlohmann::json& body) {
  return Response{status, dump_json(body), {}};
}

unsigned http_status(const Error& error) {
  if (error.code().category() == api_category()) {
    switch (static_cast<ApiErrc>(error.code().value())) {
      case ApiErrc::kUnknownEndpoint:
        return 404;
      case ApiErrc::kMethodNotAllowed:
        return 405;
      case ApiErrc::kBodyTooLarge:
        return 413;
    }
    return 500;
  }
  switch (error.kind()) {
    case ErrorKind::kInvalid:
      return 400;
    case ErrorKind::kNotFound:
      return 404;
    case ErrorKind::kWrongState:
    case ErrorKind::kNotSupported:
    case ErrorKind::kExists:
      return 409;
    case ErrorKind::kRetry:
      return 429;
    case ErrorKind::kHost:
      break;
  }
  return 500;
}

std::string_view error_kind(const Error& error) {
  if (error.code().category() == api_category()) {
    switch (static_cast<ApiErrc>(error.code().value())) {
      case ApiErrc::kUnknownEndpoint:
        return "not_found";
      case ApiErrc::kMethodNotAllowed:
        return "method_not_allowed";
      case ApiErrc::kBodyTooLarge:
        return "payload_too_large";
    }
    return "internal";
  }
  switch (error.kind()) {
    case ErrorKind::kInvalid:
      return "bad_request";
    case ErrorKind::kNotFound:
      return "not_found";
    case ErrorKind::kWrongState:
      return "wrong_state";
    case ErrorKind::kNotSupported:
      return "not_supported";
    case ErrorKind::kExists:
      return "already_exists";
    case ErrorKind::kRetry:
      return "retry";
    case ErrorKind::kHost:
      break;
  }
  return "internal";
}

std::string error_message(const Error& error) {
  if (error.code().category() == api_category()) {
    return error.context();
  }
  return error.message();
}

void append_http(const Response& response, unsigned version, bool keep_alive, std::string& out) {
  const auto reason = boost::beast::http::obsolete_reason(
      static_cast<boost::beast::http::status>(response.status));
  out.append(version == 0 ? "HTTP/1.0 " : "HTTP/1.1 ");
  out.append(std::to_string(response.status)).append(" ");
  out.append(reason.data(), reason.size()).append("\r\nServer: keel/").append(kVersion);
  if (!response.body.empty()) {
    out.append("\r\nContent-Type: application/json");
  }
  if (response.status != 204) {
    out.append("\r\nContent-Length: ").append(std::to_string(response.body.size()));
  }
  if (!response.allow.empty()) {
    out.append("\r\nAllow: ").append(response.allow);
  }
  if (version == 0 && keep_alive) {
    out.append("\r\nConnection: keep-alive");
  } else if (version != 0 && !keep_alive) {
    out.append("\r\nConnection: close");
  }
  out.append("\r\n\r\n").append(response.body);
}

Response error_response(const Error& error) {
  return json_response(http_status(error),
                       {{"kind", error_kind(error)}, {"message", error_message(error)}});
}

}  // namespace keel::api
