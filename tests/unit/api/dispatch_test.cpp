#include "api/dispatch.hpp"

#include <catch2/catch.hpp>

#include <future>

#include "api/json_text.hpp"
#include "api/request_parser.hpp"
#include "api/routes.hpp"
#include "api/vm_config_json.hpp"
#include "fake_vmm_control.hpp"
#include "test_values.hpp"

namespace keel::api {
namespace {

using nlohmann::json;
using test::FakeVmmControl;

Response put(FakeVmmControl& vmm, std::string_view name, std::string_view body = "") {
  return RequestHandler(vmm).handle("PUT", std::string(kApiRoot) + std::string(name), body);
}
Response get(FakeVmmControl& vmm, std::string_view name) {
  return RequestHandler(vmm).handle("GET", std::string(kApiRoot) + std::string(name), "");
}

TEST_CASE("actions answer 204 with no body and call their VmmControl method") {
  const std::pair<const char*, const char*> actions[] = {
      {"vmm.shutdown", "shutdown_vmm"}, {"vm.boot", "boot_vm"},   {"vm.shutdown", "shutdown_vm"},
      {"vm.reboot", "reboot_vm"},       {"vm.pause", "pause_vm"}, {"vm.resume", "resume_vm"},
      {"vm.delete", "delete_vm"},       {"vm.power-button", "power_button"},
      {"vm.nmi", "nmi"},
  };
  for (const auto& [endpoint, method] : actions) {
    INFO(endpoint);
    FakeVmmControl vmm;
    const Response r = put(vmm, endpoint);
    CHECK(r.status == 204);
    CHECK(r.body.empty());
    CHECK(vmm.calls() == std::vector<std::string>{method});
  }
}

TEST_CASE("vm.create hands the parsed VmConfig to the VMM") {
  FakeVmmControl vmm;
  const Response r = put(vmm, "vm.create", dump_json(vm_config_to_json(test::full_config())));
  CHECK(r.status == 204);
  REQUIRE(vmm.created);
  CHECK(test::same_config(*vmm.created, test::full_config()));
}

TEST_CASE("vmm.ping answers cloud-hypervisor's VmmPingResponse") {
  FakeVmmControl vmm;
  const Response r = get(vmm, "vmm.ping");
  CHECK(r.status == 200);
  CHECK(json::parse(r.body) == json::parse(R"({"build_version": "0.1.0", "version": "0.1.0",
      "pid": 4242, "features": ["kvm", "vfio", "dma_budget"]})"));
}

TEST_CASE("vm.info and vm.counters answer 200 with JSON") {
  FakeVmmControl vmm;
  vmm.info_value = test::full_info();
  vmm.counters_value.devices = {{"nic0", {{"config_reads", 7}, {"bar_traps", 2}}}};
  vmm.counters_value.dma = {test::capability_report(), test::absent_report()};
  vmm.counters_value.viommu = {{"requests", 5}};
  const Response info = get(vmm, "vm.info");
  CHECK(info.status == 200);
  CHECK(json::parse(info.body)["dma"][0]["avail_at_open"] == 24);
  const Response counters = get(vmm, "vm.counters");
  CHECK(counters.status == 200);
  CHECK(json::parse(counters.body) ==
        json::parse(R"({"nic0": {"bar_traps": 2, "config_reads": 7},
                        "dma": {"entries_used": 3, "peak_entries": 4, "mapped_bytes": 3221225472,
                                "failed_maps": 15},
                        "dma1": {"entries_used": 0, "peak_entries": 0, "mapped_bytes": 0,
                                 "failed_maps": 0},
                        "viommu": {"requests": 5}})"));
}

TEST_CASE("vm.info's body is made again for every new snapshot, and an error is not cached") {
  FakeVmmControl vmm;  // answers every vm.info with a new snapshot
  RequestHandler handler(vmm);
  const auto state = [&] {
    const Response r = handler.handle("GET", "/api/v1/vm.info", "");
    return r.status == 200 ? json::parse(r.body)["state"].get<std::string>() : std::to_string(r.status);
  };
  CHECK(state() == "Created");
  vmm.info_value.state = vmm::VmmControl::VmState::kRunning;
  CHECK(state() == "Running");
  vmm.fail_with(Error::not_found("no VM"));
  CHECK(state() == "404");
  vmm.error.reset();
  CHECK(state() == "Running");
}

TEST_CASE("vm.add-device answers 204 before boot (a cold add), 200 {id, bdf} when hot-plugged") {
  FakeVmmControl vmm;
  const Response before =
      put(vmm, "vm.add-device", R"({"path": "/sys/bus/pci/devices/0000:01:00.0"})");
  CHECK(before.status == 204);
  CHECK(before.body.empty());
  REQUIRE(vmm.added);
  CHECK(vmm.added->path == "/sys/bus/pci/devices/0000:01:00.0");
  vmm.added_bdf = "0000:00:03.0";
  const Response after =
      put(vmm, "vm.add-device", R"({"path": "/sys/bus/pci/devices/0000:01:00.0", "id": "nic0"})");
  CHECK(after.status == 200);
  CHECK(json::parse(after.body) == json::parse(R"({"id": "nic0", "bdf": "0000:00:03.0"})"));
}

TEST_CASE("vm.add-net answers 204 (cold) and passes the NetConfig; TAP fds are refused") {
  FakeVmmControl vmm;
  const Response r = put(vmm, "vm.add-net", R"({"tap": "tap1", "ip": "192.168.1.1", "mask": "255.255.255.0"})");
  CHECK(r.status == 204);
  REQUIRE(vmm.added_net);
  CHECK(vmm.added_net->tap == "tap1");
  CHECK(vmm.added_net->ip == "192.168.1.1");
  CHECK(vmm.added_net->id.empty());  // the VMM names it
  const Response fds = put(vmm, "vm.add-net", R"({"fds": [3]})");
  CHECK(fds.status == 400);
}

TEST_CASE("vm.add-vsock answers 204 (cold) and passes the VsockConfig") {
  FakeVmmControl vmm;
  const Response r = put(vmm, "vm.add-vsock", R"({"cid": 7, "socket": "/run/k.vsock", "id": "v"})");
  CHECK(r.status == 204);
  REQUIRE(vmm.added_vsock);
  CHECK(vmm.added_vsock->cid == 7);
  CHECK(vmm.added_vsock->socket == "/run/k.vsock");
  const Response bad = put(vmm, "vm.add-vsock", R"({"cid": 2, "socket": "/run/k.vsock"})");
  CHECK(bad.status == 400);
  CHECK(json::parse(bad.body)["message"] == "cid=2 is not a guest's context id; use 3 to 4294967294");
}

TEST_CASE("vm.remove-device passes the id") {
  FakeVmmControl vmm;
  CHECK(put(vmm, "vm.remove-device", R"({"id": "nic0"})").status == 204);
  CHECK(vmm.removed == "nic0");
}

TEST_CASE("vm.resize passes desired_ram and desired_vcpus; an empty or wrong body is 400") {
  FakeVmmControl vmm;
  CHECK(put(vmm, "vm.resize", R"({"desired_ram": 1073741824, "desired_vcpus": 2})").status == 204);
  CHECK(vmm.resized.desired_ram == 1073741824U);
  CHECK(vmm.resized.desired_vcpus == 2U);
  CHECK_FALSE(vmm.resized.desired_balloon);
  for (const char* bad : {"{}", R"({"desired_ram": -1})", R"({"desired_ram": "1G"})",
                          R"({"desired_vcpus": 70000})", R"({"memory": 1})"}) {
    INFO(bad);
    CHECK(put(vmm, "vm.resize", bad).status == 400);
  }
}

TEST_CASE("VMM errors map to statuses by their kind, not their errno, with the error body") {
  struct Case {
    Error error;
    unsigned status = 0;
    const char* kind = nullptr;
  };
  const Case cases[] = {
      {Error::invalid("memory.size: too big for this host"), 400, "bad_request"},
      {Error::not_found("no VM: create one first (vm.create)"), 404, "not_found"},
      {Error::wrong_state("vm.boot: the VM is running"), 409, "wrong_state"},
      {Error::not_supported("hot-plug is not supported while the VM runs"), 409, "not_supported"},
      {Error::exists("device nic0 is already added"), 409, "already_exists"},
      {Error::from_errno(EIO, "KVM_RUN"), 500, "internal"},
      {Error::from_errno(ENOSPC, "VFIO_IOMMU_MAP_DMA"), 500, "internal"},
      // A kernel's errno says nothing about the kind: ENOENT from open() is not "no VM",
      // EBUSY from VFIO is not "wrong state".
      {Error::from_errno(ENOENT, "open /dev/vfio/vfio"), 500, "internal"},
      {Error::from_errno(EBUSY, "open /dev/vfio/12"), 500, "internal"},
      {Error::from_errno(ENOENT, "open kernel /k").as(ErrorKind::kInvalid), 400, "bad_request"},
      {Error(ErrorKind::kHost, std::make_error_code(std::future_errc::broken_promise),
             "VMM thread gone"),
       500, "internal"},
  };
  for (const Route& route : routes()) {
    for (const Case& c : cases) {
      INFO(route.name << " " << c.error.message());
      FakeVmmControl vmm;
      vmm.fail_with(c.error);
      const std::string body = test::example_body(route.name);
      const Response r =
          RequestHandler(vmm).handle(route.method, std::string(kApiRoot) + std::string(route.name), body);
      // As cloud-hypervisor documents: pause, resume, shutdown, reboot, power-button and nmi
      // of a VM not in the state they apply to are 405.
      const bool state_change = route.name == "vm.pause" || route.name == "vm.resume" ||
                                route.name == "vm.shutdown" || route.name == "vm.reboot" ||
                                route.name == "vm.power-button" || route.name == "vm.nmi";
      const unsigned want =
          state_change && c.error.kind() == ErrorKind::kWrongState ? 405 : c.status;
      CHECK(r.status == want);
      const json j = json::parse(r.body);
      CHECK(j["kind"] == c.kind);
      CHECK(j["message"] == c.error.message());
      CHECK(vmm.calls().size() == 1);
    }
  }
}

TEST_CASE("a request that does not parse never reaches the VMM") {
  FakeVmmControl vmm;
  CHECK(put(vmm, "vm.create", "{").status == 400);
  CHECK(put(vmm, "vm.create", R"({"payload": {"kernel": "/k"}, "x": 1})").status == 400);
  CHECK(get(vmm, "vm.boot").status == 405);
  CHECK(get(vmm, "vm.nothing").status == 404);
  CHECK(put(vmm, "vm.create", std::string(kMaxBodyBytes + 1, 'x')).status == 413);
  CHECK(vmm.calls().empty());
}

TEST_CASE("405 carries the endpoint's method for the Allow header") {
  FakeVmmControl vmm;
  const Response r = get(vmm, "vm.boot");
  CHECK(r.status == 405);
  CHECK(r.allow == "PUT");
  CHECK(json::parse(r.body) ==
        json::parse(R"({"kind": "method_not_allowed", "message": "vm.boot takes PUT, not GET"})"));
  CHECK(RequestHandler(vmm).handle("PUT", "/api/v1/vm.info?x", "").allow == "GET");
  CHECK(put(vmm, "vm.nothing").allow.empty());
}

TEST_CASE("answers are valid UTF-8 JSON even when the request is not") {
  FakeVmmControl vmm;
  const Response r = RequestHandler(vmm).handle("GET", "/api/v1/\xff\xfe", "");
  CHECK(r.status == 404);
  CHECK(json::parse(r.body)["message"].get<std::string>().find("\xef\xbf\xbd") !=
        std::string::npos);
  const Response bad_method = RequestHandler(vmm).handle("G\xc3", "/api/v1/vm.info", "");
  CHECK(bad_method.status == 405);
  CHECK_NOTHROW(json::parse(bad_method.body));
}

}  // namespace
}  // namespace keel::api
