// parse_request + dispatch, fed (method, target, body) from random bytes, against a fake VMM.
// Input: byte 0 picks the method and the fake's answer; then the target up to the first '\n';
// the rest is the body. Properties checked on every input:
//   - nothing throws, crashes or leaks (ASan, UBSan);
//   - the status is one the API documents, and every body is valid JSON;
//   - errors carry {kind, message}; a 405 names the allowed method;
//   - a request that does not parse never reaches the VMM;
//   - a VmConfig that parses survives VmConfig -> JSON -> VmConfig unchanged.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "api/dispatch.hpp"
#include "api/request_parser.hpp"
#include "api/vm_config_json.hpp"
#include "base/log.hpp"
#include "fuzz_checks.hpp"
#include "tests/unit/api/fake_vmm_control.hpp"
#include "tests/unit/api/test_values.hpp"

namespace {

using keel::api::Response;

constexpr std::string_view kMethods[] = {"GET", "PUT", "POST", "HEAD", "DELETE", "PATCH"};

void check_response(const Response& r) {
  const unsigned statuses[] = {200, 204, 400, 404, 405, 409, 413, 500};
  bool known = false;
  for (unsigned s : statuses) {
    known = known || r.status == s;
  }
  KEEL_FUZZ_CHECK(known);
  if (r.status == 204) {
    KEEL_FUZZ_CHECK(r.body.empty());
    return;
  }
  const auto json = nlohmann::json::parse(r.body, nullptr, false);
  KEEL_FUZZ_CHECK(!json.is_discarded());
  if (r.status >= 400) {
    KEEL_FUZZ_CHECK(json.is_object() && json.size() == 2);
    KEEL_FUZZ_CHECK(json["kind"].is_string() && json["message"].is_string());
    KEEL_FUZZ_CHECK(!json["message"].get<std::string>().empty());
  }
  KEEL_FUZZ_CHECK((r.status == 405) == !r.allow.empty());
}

}  // namespace

// NOLINTNEXTLINE(readability-identifier-naming): libFuzzer's entry point
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  keel::log::set_level(keel::log::Level::kError);  // 4xx are logged at info: keep output quiet
  if (size == 0) {
    return 0;
  }
  const std::uint8_t selector = data[0];
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::size_t newline = rest.find('\n');
  const std::string_view target = rest.substr(0, newline);
  const std::string_view body =
      newline == std::string_view::npos ? std::string_view() : rest.substr(newline + 1);
  const std::string_view method = kMethods[selector % std::size(kMethods)];

  keel::api::test::FakeVmmControl vmm;
  switch ((selector / std::size(kMethods)) % 6) {
    case 1:
      vmm.info_value = keel::api::test::full_info();
      vmm.counters_value.devices = {{"nic0", {{"config_reads", 3}}}};
      vmm.counters_value.dma = vmm.info_value.dma;
      vmm.added_bdf = "0000:00:01.0";
      break;
    case 2:
      vmm.fail_with(keel::Error::wrong_state("wrong state"));
      break;
    case 3:
      vmm.fail_with(keel::Error::not_found("no VM"));
      break;
    case 4:
      vmm.fail_with(keel::Error::from_errno(EIO, "kernel failed"));
      break;
    default:
      break;
  }

  auto operation = keel::api::parse_request(method, target, body);
  const Response response = keel::api::RequestHandler(vmm).handle(method, target, body);
  check_response(response);
  KEEL_FUZZ_CHECK(operation.ok() == (vmm.calls().size() == 1));
  if (!operation.ok()) {
    KEEL_FUZZ_CHECK(response.status == keel::api::http_status(operation.error()));
    return 0;
  }
  if (const auto* create = std::get_if<keel::api::CreateVm>(&*operation)) {
    const auto json = keel::api::vm_config_to_json(create->config);
    auto back = keel::api::vm_config_from_json(json);
    KEEL_FUZZ_CHECK(back.ok());
    KEEL_FUZZ_CHECK(keel::api::test::same_config(create->config, *back));
    KEEL_FUZZ_CHECK(vmm.created && keel::api::test::same_config(*vmm.created, create->config));
  }
  return 0;
}
