#pragma once

#include <span>
#include <string_view>

#include "api/operation.hpp"
#include "base/result.hpp"

namespace keel::api {

inline constexpr std::string_view kApiRoot = "/api/v1/";

// One endpoint: /api/v1/<name>, the one method it takes, and how its body becomes an
// Operation. Bodies of endpoints that take none are ignored, as cloud-hypervisor does.
struct Route {
  std::string_view name;    // "vm.boot"
  std::string_view method;  // "GET" or "PUT"
  bool takes_body;
  Result<Operation> (*make)(std::string_view body);
};

// Every endpoint, in api/openapi.yaml's order.
std::span<const Route> routes();
// The route named `name` ("vm.boot"), or nullptr.
const Route* find_route(std::string_view name);

}  // namespace keel::api
