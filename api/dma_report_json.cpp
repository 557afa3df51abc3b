#include "api/dma_report_json.hpp"

#include <string>

namespace keel::api {
namespace {

using nlohmann::json;

json budget_to_json(const vfio::DmaBudget& budget) {
  return budget.source == vfio::AvailSource::kCapability ? json(budget.avail) : json(nullptr);
}

// The API's name and guest address of the device at host address `host_bdf`.
json device_to_json(const std::string& host_bdf, const vmm::VmConfig& config,
                    const std::vector<vmm::VmmControl::DeviceInfo>& devices) {
  json id = nullptr;
  json guest_bdf = nullptr;
  for (const vmm::DeviceConfig& device : config.devices) {
    const std::string last = device.path.substr(device.path.rfind('/') + 1);
    if (last == host_bdf) {
      id = device.id;
      break;
    }
  }
  if (id.is_string()) {
    for (const auto& info : devices) {
      if (info.id == id.get_ref<const std::string&>() && !info.bdf.empty()) {
        guest_bdf = info.bdf;
        break;
      }
    }
  }
  return json{{"id", id}, {"host_bdf", host_bdf}, {"guest_bdf", guest_bdf}};
}

}  // namespace

json dma_report_to_json(const vfio::DmaReport& report, const vmm::VmConfig& config,
                        const std::vector<vmm::VmmControl::DeviceInfo>& devices) {
  json device_list = json::array();
  for (const std::string& host_bdf : report.devices) {
    device_list.push_back(device_to_json(host_bdf, config, devices));
  }
  json ranges = json::array();
  for (const vfio::IovaRange& range : report.iova_ranges) {
    ranges.push_back({{"start", range.start}, {"end", range.last}});
  }
  const vfio::FailedMaps& failed = report.failed_maps;
  return json{
      {"devices", std::move(device_list)},
      {"backend", report.backend},
      {"avail_at_open", budget_to_json(report.avail_at_open)},
      {"backend_reason", report.backend_reason},
      {"avail_source", vfio::to_string(report.avail_at_open.source)},
      {"binding_limit", report.binding_limit},
      {"memlock",
       {{"limit_bytes", report.memlock.limit_bytes == vfio::kMemlockUnlimited
                            ? json(nullptr)
                            : json(report.memlock.limit_bytes)},
        {"cap_ipc_lock", report.memlock.cap_ipc_lock},
        {"charged_to", report.charged_per_process ? "process" : "user"},
        {"pinned_bytes_planned", report.pinned_bytes_planned}}},
      {"avail_now", report.avail_now ? budget_to_json(*report.avail_now) : json(nullptr)},
      {"entries_used", report.entries_used},
      {"consistent", report.consistent ? json(*report.consistent) : json(nullptr)},
      {"mode", vfio::to_string(report.mode)},
      {"requested_mode", vfio::to_string(report.requested_mode)},
      {"reason", report.reason},
      {"planned_entries", report.planned_entries},
      {"mapped_bytes", report.mapped_bytes},
      {"peak_entries", report.peak_entries},
      // The kernel's refusals by errno, and Keel's own (lazy mapping) before asking it.
      {"failed_maps",
       {{"eexist", failed.overlap},
        {"enospc", failed.budget},
        {"einval", failed.outside_iova},
        {"enomem", failed.memlock},
        {"other", failed.other},
        {"refused_budget", report.lazy ? report.lazy->counters.refused_budget : 0},
        {"refused_reserve", report.lazy ? report.lazy->counters.refused_reserve : 0},
        {"refused_invalid", report.lazy ? report.lazy->counters.refused_invalid : 0}}},
      {"low_water", report.lazy ? json(report.lazy->low_water) : json(nullptr)},
      {"guest_mappings", report.lazy ? json(report.lazy->guest_mappings) : json(nullptr)},
      {"iova_ranges", std::move(ranges)},
      {"iova_pgsizes", report.iova_pgsizes},
      {"unmap_all_supported", report.unmap_all_supported},
  };
}

}  // namespace keel::api
