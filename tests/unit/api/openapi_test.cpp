// The answers the API gives validate against api/openapi.yaml, and the file documents exactly the
// endpoints the route table serves.
#include <catch2/catch.hpp>

#include <set>

#include "api/dispatch.hpp"
#include "api/dma_report_json.hpp"
#include "api/json_text.hpp"
#include "api/request_parser.hpp"
#include "api/routes.hpp"
#include "api/vm_config_json.hpp"
#include "fake_vmm_control.hpp"
#include "openapi_validator.hpp"
#include "test_values.hpp"

namespace keel::api {
namespace {

using nlohmann::json;
using test::FakeVmmControl;
using test::OpenApiValidator;
using test::lower;

const OpenApiValidator& spec() {
  static const OpenApiValidator validator(KEEL_OPENAPI_YAML);
  return validator;
}

void check_answer(const Route& route, const Response& response) {
  const auto problems = spec().check_response("/" + std::string(route.name), lower(route.method),
                                              response.status, response.body);
  INFO(route.name << " " << response.status << " " << response.body);
  for (const auto& problem : problems) {
    FAIL_CHECK(problem);
  }
}

TEST_CASE("openapi.yaml loads") { REQUIRE(spec().load_error().empty()); }

TEST_CASE("openapi.yaml documents exactly the route table") {
  std::set<std::pair<std::string, std::string>> documented, served;
  for (const auto& op : spec().operations()) {
    documented.insert(op);
  }
  for (const Route& route : routes()) {
    served.insert({"/" + std::string(route.name), lower(route.method)});
  }
  CHECK(documented == served);
}

TEST_CASE("every success answer validates") {
  for (const Route& route : routes()) {
    for (bool full : {false, true}) {
      FakeVmmControl vmm;
      if (full) {
        vmm.info_value = test::full_info();
        vmm.counters_value.devices = {{"nic0", {{"config_reads", 1}}}};
        vmm.counters_value.dma = vmm.info_value.dma;
        vmm.counters_value.viommu = {{"requests", 1}};
        vmm.added_bdf = "0000:00:01.0";
      }
      check_answer(route,
                   RequestHandler(vmm).handle(route.method, std::string(kApiRoot) + std::string(route.name),
                                  test::example_body(route.name)));
    }
  }
}

TEST_CASE("every error answer validates and is documented for its endpoint") {
  const Error errors[] = {
      Error::invalid("bad"),       Error::not_found("no VM"), Error::wrong_state("x"),
      Error::not_supported("x"),   Error::exists("x"),       Error::from_errno(EIO, "x"),
  };
  for (const Route& route : routes()) {
    const std::string target = std::string(kApiRoot) + std::string(route.name);
    for (const Error& error : errors) {
      FakeVmmControl vmm;
      vmm.fail_with(error);
      check_answer(route, RequestHandler(vmm).handle(route.method, target, test::example_body(route.name)));
    }
    FakeVmmControl vmm;
    check_answer(route, RequestHandler(vmm).handle(route.method == "GET" ? "PUT" : "GET", target, ""));
    check_answer(route,
                 RequestHandler(vmm).handle(route.method, target, std::string(kMaxBodyBytes + 1, ' ')));
    if (route.takes_body) {
      check_answer(route, RequestHandler(vmm).handle(route.method, target, "{"));
      check_answer(route, RequestHandler(vmm).handle(route.method, target, R"({"unknown": 1})"));
    }
  }
  // An unknown endpoint has no path to document it under: its body is still an ErrorBody.
  FakeVmmControl vmm;
  const Response r = RequestHandler(vmm).handle("GET", "/api/v1/vm.nothing", "");
  CHECK(r.status == 404);
  CHECK(spec().check_schema("ErrorBody", json::parse(r.body)).empty());
}

TEST_CASE("request bodies Keel writes validate against their request schemas") {
  CHECK(spec().check_schema("VmConfig", vm_config_to_json(test::full_config())).empty());
  vmm::VmConfig plain;
  plain.kernel = "/k";
  CHECK(spec().check_schema("VmConfig", vm_config_to_json(plain)).empty());
  for (const auto& device : test::full_config().devices) {
    CHECK(spec().check_schema("DeviceConfig", device_config_to_json(device)).empty());
  }
}

TEST_CASE("every DmaReport field is documented") {
  const auto info = test::full_info();
  for (const auto& report : info.dma) {
    const json j = dma_report_to_json(report, info.config, info.devices);
    CHECK(spec().check_schema("DmaReport", j).empty());
  }
}

TEST_CASE("the validator is not vacuous") {
  const json good = json::parse(R"({"kind": "internal", "message": "x"})");
  CHECK(spec().check_schema("ErrorBody", good).empty());
  CHECK(spec().check_schema("ErrorBody", json::parse(R"({"kind": "internal"})")).size() == 1);
  CHECK(
      spec().check_schema("ErrorBody", json::parse(R"({"kind": "oops", "message": "x"})")).size() ==
      1);
  CHECK(spec()
            .check_schema("ErrorBody", json::parse(R"({"kind": "internal", "message": 1})"))
            .size() == 1);
  CHECK(spec()
            .check_schema("ErrorBody",
                          json::parse(R"({"kind": "internal", "message": "x", "extra": 1})"))
            .size() == 1);
  CHECK(spec()
            .check_schema("ErrorBody", json::parse(R"({"kind": "internal", "message": null})"))
            .size() == 1);
  // null only where the schema says nullable
  CHECK(spec()
            .check_schema("DmaDevice", json::parse(R"({"id": "a", "host_bdf": "x", "guest_bdf": null})"))
            .empty());
  CHECK(spec().check_schema("PciDeviceInfo", json::parse(R"({"id": "a", "bdf": null})")).size() == 1);
  CHECK(spec().check_schema("PciDeviceInfo", json::parse(R"({"id": null, "bdf": null})")).size() ==
        2);
  CHECK(spec().check_schema("VmCounters", json::parse(R"({"a": {"b": "c"}})")).size() == 1);
  CHECK(spec().check_schema("VmInfo", json::parse(R"({"state": "Running"})")).size() == 4);
  CHECK(spec()
            .check_schema("IovaRange", json::parse(R"({"start": 1, "end": 18446744073709551615})"))
            .size() == 1);
  CHECK(spec().check_schema("CpusConfig", json::parse(R"({"boot_vcpus": 0})")).size() == 1);
  CHECK(spec().check_response("/vm.boot", "put", 200, "{}").size() == 1);
  CHECK(spec().check_response("/vm.boot", "put", 204, "{}").size() == 1);
  CHECK(spec().check_response("/vm.info", "get", 200, "not json").size() == 1);
  CHECK(spec().check_response("/vm.nothing", "get", 200, "").size() == 1);
}

}  // namespace
}  // namespace keel::api
