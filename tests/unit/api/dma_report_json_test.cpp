#include "api/dma_report_json.hpp"

#include <catch2/catch.hpp>

#include "api/vm_info_json.hpp"
#include "test_values.hpp"

namespace keel::api {
namespace {

using nlohmann::json;

TEST_CASE("a DmaReport from the capability: every field") {
  const vmm::VmmControl::VmInfo info = test::full_info();
  const json j = dma_report_to_json(test::capability_report(), info.config, info.devices);
  CHECK(j == json::parse(R"json({
    "devices": [
      {"id": "nic0", "host_bdf": "0000:01:00.0", "guest_bdf": "0000:00:01.0"},
      {"id": "0000:02:00.0", "host_bdf": "0000:02:00.0", "guest_bdf": "0000:00:02.0"}],
    "backend": "vfio-type1v2",
    "backend_reason": "type1 (auto: the host has no /dev/iommu)",
    "avail_at_open": 24, "avail_source": "capability", "avail_now": 21,
    "binding_limit": "memlock",
    "memlock": {"limit_bytes": 4294967296, "cap_ipc_lock": false, "charged_to": "process",
                "pinned_bytes_planned": 3221225472},
    "entries_used": 3, "consistent": true,
    "mode": "eager", "requested_mode": "auto",
    "reason": "eager plan needs 3 entries, 24 available",
    "planned_entries": 3, "mapped_bytes": 3221225472, "peak_entries": 4,
    "failed_maps": {"eexist": 1, "enospc": 2, "einval": 3, "enomem": 4, "other": 5,
                    "refused_budget": 0, "refused_reserve": 0, "refused_invalid": 0},
    "low_water": null, "guest_mappings": null,
    "iova_ranges": [{"start": 0, "end": 4276092927}, {"start": 4277141504, "end": 549755813887}],
    "iova_pgsizes": 1075843072,
    "unmap_all_supported": true})json"));
}

TEST_CASE("a lazy DmaReport shows the reserve, the guest's mappings and Keel's refusals") {
  vfio::DmaReport r = test::capability_report();
  r.mode = vfio::Decision::kLazy;
  vfio::LazyReport lazy;
  lazy.low_water = 2;
  lazy.guest_mappings = 7;
  lazy.counters.refused_budget = 5;
  lazy.counters.refused_reserve = 2;
  lazy.counters.refused_invalid = 1;
  r.lazy = lazy;
  const json j = dma_report_to_json(r, vmm::VmConfig{}, {});
  CHECK(j["mode"] == "lazy");
  CHECK(j["low_water"] == 2);
  CHECK(j["guest_mappings"] == 7);
  CHECK(j["failed_maps"]["refused_budget"] == 5);
  CHECK(j["failed_maps"]["refused_reserve"] == 2);
  CHECK(j["failed_maps"]["refused_invalid"] == 1);
  CHECK(j["failed_maps"]["enospc"] == 2);  // the kernel's, kept apart
}

TEST_CASE("a DmaReport on iommufd: no count, the user charged, an unlimited memlock is null") {
  vfio::DmaReport r = test::capability_report();
  r.backend = "iommufd";
  r.avail_at_open = vfio::DmaBudget{vfio::AvailSource::kIommufd, 0};
  r.avail_now = r.avail_at_open;
  r.consistent.reset();
  r.charged_per_process = false;
  r.memlock = vfio::MemlockLimit{};
  r.binding_limit = "none";
  const json j = dma_report_to_json(r, vmm::VmConfig{}, {});
  CHECK(j["backend"] == "iommufd");
  CHECK(j["avail_source"] == "iommufd");
  CHECK(j["avail_at_open"].is_null());
  CHECK(j["avail_now"].is_null());
  CHECK(j["consistent"].is_null());
  CHECK(j["binding_limit"] == "none");
  CHECK(j["memlock"]["limit_bytes"].is_null());
  CHECK(j["memlock"]["charged_to"] == "user");
}

TEST_CASE("a DmaReport without the capability: unknown values are null, not 0") {
  const json j = dma_report_to_json(test::absent_report(), vmm::VmConfig{}, {});
  CHECK(j["avail_source"] == "absent");
  CHECK(j["avail_at_open"].is_null());
  CHECK(j["avail_now"].is_null());
  CHECK(j["consistent"].is_null());
  CHECK(j["mode"] == "refused");
  CHECK(j["requested_mode"] == "lazy");
  CHECK(j["iova_ranges"] == json::array());
  // A device no configured device names: its id and guest address are unknown.
  CHECK(j["devices"] ==
        json::parse(R"([{"id": null, "host_bdf": "0000:09:00.0", "guest_bdf": null}])"));
}

TEST_CASE("an unlimited budget (iommufd) is null with source unlimited") {
  vfio::DmaReport r = test::absent_report();
  r.avail_at_open = {vfio::AvailSource::kUnlimited, 0xffffffffU};
  r.avail_now = vfio::DmaBudget{vfio::AvailSource::kUnlimited, 0xffffffffU};
  r.consistent = false;
  const json j = dma_report_to_json(r, vmm::VmConfig{}, {});
  CHECK(j["avail_source"] == "unlimited");
  CHECK(j["avail_at_open"].is_null());
  CHECK(j["avail_now"].is_null());
  CHECK(j["consistent"] == false);
}

TEST_CASE("a device without a guest address yet has guest_bdf null") {
  vmm::VmmControl::VmInfo info = test::full_info();
  info.devices = {{"nic0", ""}};
  const json j = dma_report_to_json(test::capability_report(), info.config, info.devices);
  CHECK(j["devices"][0] ==
        json::parse(R"({"id": "nic0", "host_bdf": "0000:01:00.0", "guest_bdf": null})"));
}

TEST_CASE("vm.info JSON: state, device_tree, dma") {
  const json j = vm_info_to_json(test::full_info());
  CHECK(j["state"] == "Running");
  CHECK(j["memory_actual_size"] == 3ULL << 30);
  CHECK(j["config"]["cpus"]["boot_vcpus"] == 3);
  CHECK(
      j["device_tree"]["nic0"] ==
      json::parse(R"({"id": "nic0", "resources": [], "children": [], "pci_bdf": "0000:00:01.0"})"));
  CHECK(j["dma"].size() == 3);
  vmm::VmmControl::VmInfo created{
      test::full_config(), vmm::VmmControl::VmState::kCreated, 1, {}, {}};
  created.devices = {{"nic0", ""}};
  const json c = vm_info_to_json(created);
  CHECK(c["state"] == "Created");
  CHECK_FALSE(c["device_tree"]["nic0"].contains("pci_bdf"));  // no address before boot
  CHECK(c["dma"] == json::array());
  for (auto state : {vmm::VmmControl::VmState::kPaused, vmm::VmmControl::VmState::kShutdown}) {
    created.state = state;
    CHECK(vm_info_to_json(created)["state"] ==
          (state == vmm::VmmControl::VmState::kPaused ? "Paused" : "Shutdown"));
  }
}

}  // namespace
}  // namespace keel::api
