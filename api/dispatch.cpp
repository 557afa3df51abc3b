#include "api/dispatch.hpp"

#include <algorithm>
#include <string>

#include "api/api_errc.hpp"
#include "api/json_text.hpp"
#include "api/request_parser.hpp"
#include "api/routes.hpp"
#include "api/vm_info_json.hpp"
#include "base/log.hpp"

namespace keel::api {
namespace {

Response from_status(const Status& status) {
  return status.ok() ? no_content() : error_response(status.error());
}

template <typename T, typename ToJson>
Response from_result(const Result<T>& result, ToJson to_json) {
  return result.ok() ? json_response(200, to_json(result.value())) : error_response(result.error());
}

// pause, resume, shutdown, reboot, power-button, nmi: cloud-hypervisor documents 405 when the VM
// is not in the state the action applies to (not booted, not paused).
Response from_state_change(const Status& status) {
  Response response = from_status(status);
  if (!status.ok() && status.error().kind() == ErrorKind::kWrongState) {
    response.status = 405;
  }
  return response;
}

// The vm.add-* answers: 200 with the guest BDF when the device was hot-plugged, 204 when it was
// added to a VM that is not running (cloud-hypervisor's "cold" add).
Response from_added(const Result<vmm::VmmControl::DeviceInfo>& added) {
  if (added.ok() && added->bdf.empty()) {
    return no_content();
  }
  return from_result(added, device_info_to_json);
}

}  // namespace

struct RequestHandler::Run {
  RequestHandler& handler;
  vmm::VmmControl& control;

  Response operator()(const PingVmm&) const { return from_result(control.ping(), ping_to_json); }
  Response operator()(const ShutdownVmm&) const { return from_status(control.shutdown_vmm()); }
  Response operator()(const CreateVm& op) const {
    return from_status(control.create_vm(op.config));
  }
  Response operator()(const BootVm&) const { return from_status(control.boot_vm()); }
  Response operator()(const ShutdownVm&) const { return from_state_change(control.shutdown_vm()); }
  Response operator()(const RebootVm&) const { return from_state_change(control.reboot_vm()); }
  Response operator()(const PauseVm&) const { return from_state_change(control.pause_vm()); }
  Response operator()(const ResumeVm&) const { return from_state_change(control.resume_vm()); }
  Response operator()(const DeleteVm&) const { return from_status(control.delete_vm()); }
  Response operator()(const GetVmInfo&) const { return handler.vm_info(); }
  Response operator()(const GetVmCounters&) const {
    return from_result(control.vm_counters(), counters_to_json);
  }
  Response operator()(const AddDevice& op) const {
    return from_added(control.add_device(op.device));
  }
  Response operator()(const AddDisk& op) const {
    return from_added(control.add_disk(op.disk));
  }
  Response operator()(const AddNet& op) const {
    return from_added(control.add_net(op.net, op.tap ? std::move(*op.tap) : UniqueFd()));
  }
  Response operator()(const AddVsock& op) const {
    return from_added(control.add_vsock(op.vsock));
  }
  Response operator()(const AddFs& op) const { return from_added(control.add_fs(op.fs)); }
  Response operator()(const RemoveDevice& op) const {
    return from_status(control.remove_device(op.id));
  }
  Response operator()(const ResizeVm& op) const { return from_status(control.resize(op.resize)); }
  Response operator()(const PowerButton&) const {
    return from_state_change(control.power_button());
  }
  Response operator()(const InjectNmi&) const { return from_state_change(control.nmi()); }
};

namespace {

void log_failure(std::string_view what, const Response& response) {
  const auto level = response.status >= 500 ? log::Level::kWarn : log::Level::kInfo;
  log::write(level, "api", "request failed",
             {{"request", what}, {"status", response.status}, {"body", response.body}});
}

}  // namespace

Response RequestHandler::vm_info() {
  auto info = control_.vm_info();
  if (!info.ok()) {
    info_.reset();
    return error_response(info.error());
  }
  if (*info != info_) {
    std::string body = dump_json(vm_info_to_json(**info));  // may throw: nothing changed then
    info_body_ = std::move(body);
    info_ = std::move(*info);
  }
  return Response{200, info_body_, {}};
}

Response RequestHandler::dispatch(const Operation& operation) {
  Response response = std::visit(Run{*this, control_}, operation);
  if (response.status >= 400) {
    log_failure(operation_name(operation), response);
  }
  return response;
}

Response RequestHandler::handle(std::string_view method, std::string_view target,
                                std::string_view body, std::vector<UniqueFd> fds) {
  auto operation = parse_request(method, target, body);
  if (operation.ok()) {
    const AddNet* add = std::get_if<AddNet>(&*operation);
    if (add != nullptr && add->fds_named != 0 && fds.empty()) {
      const Response response = error_response(Error::invalid(
          "fds: the body names " + std::to_string(add->fds_named) +
          " file descriptors but none came with the request; send the TAP's fd with the "
          "request (SCM_RIGHTS on the API socket), or give tap instead"));
      log_failure("vm.add-net", response);
      return response;
    }
  }
  if (operation.ok() && !fds.empty()) {
    AddNet* add = std::get_if<AddNet>(&*operation);
    if (add == nullptr || fds.size() != 1) {
      const Response response = error_response(Error::invalid(
          std::to_string(fds.size()) + " file descriptors came with " +
          std::string(operation_name(*operation)) +
          (add == nullptr ? ", which takes none; send them with vm.add-net only"
                          : "; Keel's virtio-net takes one TAP (one queue pair): send one")));
      log_failure(operation_name(*operation), response);
      return response;  // the fds close here
    }
    add->tap = std::make_shared<UniqueFd>(std::move(fds.front()));
  }
  if (operation.ok()) {
    return dispatch(*operation);
  }
  Response response = error_response(operation.error());
  if (operation.error().code() == make_error_code(ApiErrc::kMethodNotAllowed)) {
    // Cannot fail: a 405 means the path named a route.
    const std::string_view path = target.substr(0, target.find('?'));
    if (const Route* route = find_route(path.substr(std::min(path.size(), kApiRoot.size())))) {
      response.allow = std::string(route->method);
    }
  }
  log_failure(excerpt(method, 16) + " " + excerpt(target, 128), response);
  return response;
}

}  // namespace keel::api
