#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "api/operation.hpp"
#include "api/response.hpp"
#include "base/unique_fd.hpp"
#include "vmm/vmm_control.hpp"

namespace keel::api {

// What the API answers, one request after another (the API thread's; not for several threads).
class RequestHandler {
 public:
  explicit RequestHandler(vmm::VmmControl& control) : control_(control) {}

  // parse_request, then dispatch: what the HTTP server answers for one request. A 405 carries
  // the endpoint's method in `allow`. `fds` came with the request (SCM_RIGHTS): vm.add-net
  // takes one TAP's; every other request refuses them with 400 (and they are closed).
  Response handle(std::string_view method, std::string_view target, std::string_view body,
                  std::vector<UniqueFd> fds = {});

  // Runs one operation on the VMM and turns its result into the answer (cloud-hypervisor's
  // statuses): 204 for actions, 200 with JSON for vmm.ping, vm.info, vm.counters and
  // vm.add-device, and an error body (response.hpp) for every failure.
  Response dispatch(const Operation& operation);

 private:
  struct Run;
  // vm.info's body is made once per snapshot the VMM serves: many readers of one snapshot get
  // the same bytes without the JSON being built again.
  Response vm_info();

  vmm::VmmControl& control_;
  std::shared_ptr<const vmm::VmmControl::VmInfo> info_;  // the snapshot info_body_ shows
  std::string info_body_;
};

}  // namespace keel::api
