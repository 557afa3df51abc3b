// Keel's answers checked against cloud-hypervisor's published API: data/cloud-hypervisor-api.yaml
// holds the facts of its OpenAPI file (paths, methods, statuses, field names and types) for the
// endpoints Keel serves. Every endpoint Keel serves is one of cloud-hypervisor's with the same
// method; every success answer has a status cloud-hypervisor documents and a body its schema
// accepts; an error cloud-hypervisor documents for an endpoint gets the status it documents; and
// the VmConfig Keel writes (vm.info's config) is one its clients can read back.
#include <catch2/catch.hpp>

#include <set>

#include "api/dispatch.hpp"
#include "api/json_text.hpp"
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

const OpenApiValidator& ch() {
  static const OpenApiValidator validator(KEEL_CH_API_FACTS);
  return validator;
}

// Bodies as cloud-hypervisor's clients send them.
std::string path_of(const Route& route) { return "/" + std::string(route.name); }

void check_no_problems(const std::vector<std::string>& problems) {
  for (const auto& problem : problems) {
    FAIL_CHECK(problem);
  }
}

TEST_CASE("conformance: the facts load") { REQUIRE(ch().load_error().empty()); }

TEST_CASE("conformance: every endpoint Keel serves is cloud-hypervisor's, with its method") {
  const auto published = ch().operations();
  const std::set<std::pair<std::string, std::string>> ops(published.begin(), published.end());
  for (const Route& route : routes()) {
    INFO(route.name);
    CHECK(ops.count({path_of(route), lower(route.method)}) == 1);
  }
  CHECK(ops.size() == routes().size());  // and the facts hold no endpoint Keel lacks
}

TEST_CASE("conformance: success answers have cloud-hypervisor's statuses and schemas") {
  for (const Route& route : routes()) {
    // A VM with everything set, and the defaults; devices added to a running VM (200 with the
    // BDF) and to one that is not (204).
    for (bool full : {false, true}) {
      FakeVmmControl vmm;
      if (full) {
        vmm.info_value = test::full_info();
        vmm.counters_value.devices = {{"nic0", {{"config_reads", 1}}}};
        vmm.added_bdf = "0000:00:05.0";
      }
      const Response r = RequestHandler(vmm).handle(
          route.method, std::string(kApiRoot) + std::string(route.name), test::example_body(route.name));
      INFO(route.name << " " << r.status << " " << r.body);
      CHECK(r.status < 300);
      check_no_problems(ch().check_response(path_of(route), lower(route.method), r.status, r.body));
    }
  }
}

TEST_CASE("conformance: an error cloud-hypervisor documents for an endpoint gets its status") {
  // The error each documented status stands for in cloud-hypervisor's file.
  const std::pair<unsigned, Error> documented[] = {
      {400, Error::invalid("x")},          {404, Error::not_found("no VM")},
      {405, Error::wrong_state("x")},      {409, Error::exists("x")},
      {429, Error::retry("x")},            {500, Error::from_errno(EIO, "x")},
  };
  int checked = 0;
  for (const Route& route : routes()) {
    for (const auto& [status, error] : documented) {
      // Documented for this endpoint: a status cloud-hypervisor lists without a body.
      if (!ch().check_response(path_of(route), lower(route.method), status, "").empty()) {
        continue;
      }
      INFO(route.name << " " << status << " " << error.message());
      FakeVmmControl vmm;
      vmm.fail_with(error);
      const Response r = RequestHandler(vmm).handle(
          route.method, std::string(kApiRoot) + std::string(route.name), test::example_body(route.name));
      CHECK(r.status == status);
      ++checked;
    }
  }
  // 404 on 14 endpoints, 405 on 5, 400/409 on the 5 add-*, 500 on 4 of them, 429 on vm.resize.
  CHECK(checked == 14 + 5 + 5 + 5 + 4 + 1);
}

TEST_CASE("conformance: the VmConfig Keel writes is one cloud-hypervisor's schema accepts") {
  vmm::VmConfig minimal;
  minimal.kernel = "/boot/vmlinuz";
  for (const vmm::VmConfig& config : {minimal, test::full_config()}) {
    const json j = vm_config_to_json(config);
    INFO(j.dump());
    check_no_problems(ch().check_schema("VmConfig", j));
  }
}

}  // namespace
}  // namespace keel::api
