#pragma once

#include <string>
#include <system_error>

#include "base/result.hpp"

namespace keel::api {

// Errors that belong to HTTP itself and have no errno: an unknown endpoint, a method the endpoint
// does not take, a body over the limit. Everything else the API reports carries an ErrorKind (see
// vmm/vmm_control.hpp): kInvalid for a bad request, and the VMM's own errors.
enum class ApiErrc {
  kUnknownEndpoint = 1,  // 404
  kMethodNotAllowed,     // 405
  kBodyTooLarge,         // 413
};

const std::error_category& api_category();
std::error_code make_error_code(ApiErrc errc);

// An Error in the API category; message() is the context alone.
Error api_error(ApiErrc errc, std::string context);

}  // namespace keel::api

template <>
struct std::is_error_code_enum<keel::api::ApiErrc> : std::true_type {};
