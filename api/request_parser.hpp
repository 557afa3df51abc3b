#pragma once

#include <cstddef>
#include <string_view>

#include "api/operation.hpp"
#include "base/result.hpp"
#include "base/size.hpp"

namespace keel::api {

// The largest request body the API takes (cloud-hypervisor takes 4 MiB; a VmConfig is a few
// hundred bytes).
inline constexpr std::size_t kMaxBodyBytes = 1 * kMiB;

// An HTTP request to its typed operation, or the error to answer with: pure, no VMM involved
// (Firecracker's model). `target` is the request target ("/api/v1/vm.info"; a query string is
// ignored, as cloud-hypervisor ignores it). Errors: an unknown endpoint (404), a method the
// endpoint does not take (405), a body over kMaxBodyBytes (413), a body that is not the JSON the
// endpoint takes (EINVAL, 400, naming the field, the value and the fix).
Result<Operation> parse_request(std::string_view method, std::string_view target,
                                std::string_view body);

}  // namespace keel::api
