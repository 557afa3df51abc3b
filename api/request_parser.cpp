#include "api/request_parser.hpp"

#include <string>

#include "api/api_errc.hpp"
#include "api/json_text.hpp"
#include "api/routes.hpp"

namespace keel::api {

Result<Operation> parse_request(std::string_view method, std::string_view target,
                                std::string_view body) {
  const std::string_view path = target.substr(0, target.find('?'));
  const Route* route = nullptr;
  if (path.substr(0, kApiRoot.size()) == kApiRoot) {
    route = find_route(path.substr(kApiRoot.size()));
  }
  if (route == nullptr) {
    return api_error(ApiErrc::kUnknownEndpoint,
                     "no endpoint " + excerpt(path, 128) +
                         "; the API's endpoints are /api/v1/vmm.* and /api/v1/vm.* (see "
                         "api/openapi.yaml)");
  }
  if (method != route->method) {
    return api_error(ApiErrc::kMethodNotAllowed, std::string(route->name) + " takes " +
                                                     std::string(route->method) + ", not " +
                                                     excerpt(method, 16));
  }
  if (body.size() > kMaxBodyBytes) {
    return api_error(ApiErrc::kBodyTooLarge, "the body has " + std::to_string(body.size()) +
                                                 " bytes; the API takes at most " +
                                                 std::to_string(kMaxBodyBytes));
  }
  return route->make(body);
}

}  // namespace keel::api
