#pragma once

#include <string_view>
#include <vector>

#include "api/operation.hpp"
#include "api/response.hpp"
#include "base/unique_fd.hpp"
#include "vmm/vmm_control.hpp"

namespace keel::api {

// Runs one operation on the VMM and turns its result into the answer (cloud-hypervisor's
// statuses): 204 for actions, 200 with JSON for vmm.ping, vm.info, vm.counters and
// vm.add-device, and an error body (response.hpp) for every failure.
Response dispatch(const Operation& operation, vmm::VmmControl& control);

// parse_request, then dispatch: what the HTTP server answers for one request. A 405 carries the
// endpoint's method in `allow`. `fds` came with the request (SCM_RIGHTS): vm.add-net takes one
// TAP's; every other request refuses them with 400 (and they are closed).
Response handle_request(std::string_view method, std::string_view target, std::string_view body,
                        vmm::VmmControl& control, std::vector<UniqueFd> fds = {});

}  // namespace keel::api
