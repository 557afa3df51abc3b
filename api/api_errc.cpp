#include "api/api_errc.hpp"

namespace keel::api {
namespace {

class ApiCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "keel-api"; }
  std::string message(int value) const override {
    switch (static_cast<ApiErrc>(value)) {
      case ApiErrc::kUnknownEndpoint:
        return "unknown endpoint";
      case ApiErrc::kMethodNotAllowed:
        return "method not allowed";
      case ApiErrc::kBodyTooLarge:
        return "body too large";
    }
    return "unknown API error";
  }
};

}  // namespace

const std::error_category& api_category() {
  static const ApiCategory category;
  return category;
}

std::error_code make_error_code(ApiErrc errc) { return {static_cast<int>(errc), api_category()}; }

Error api_error(ApiErrc errc, std::string context) {
  // The kind is for callers outside api/; http_status() reads the code itself.
  const ErrorKind kind = errc == ApiErrc::kUnknownEndpoint ? ErrorKind::kNotFound : ErrorKind::kInvalid;
  return Error(kind, make_error_code(errc), std::move(context));
}

}  // namespace keel::api
