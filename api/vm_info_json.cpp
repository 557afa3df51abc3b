#include "api/vm_info_json.hpp"

#include "api/dma_report_json.hpp"
#include "api/vm_config_json.hpp"

namespace keel::api {

using nlohmann::json;

std::string_view to_string(vmm::VmmControl::VmState state) {
  switch (state) {
    case vmm::VmmControl::VmState::kCreated:
      return "Created";
    case vmm::VmmControl::VmState::kRunning:
      return "Running";
    case vmm::VmmControl::VmState::kPaused:
      return "Paused";
    case vmm::VmmControl::VmState::kShutdown:
      return "Shutdown";
  }
  return "Shutdown";
}

json ping_to_json(const vmm::VmmControl::VmmPing& ping) {
  // Keel has no optional build features; "features" lists what this build can do, as
  // cloud-hypervisor lists its cargo features.
  return json{{"build_version", ping.version},
              {"version", ping.version},
              {"pid", ping.pid},
              {"features", json::array({"kvm", "vfio", "dma_budget"})}};
}

json vm_info_to_json(const vmm::VmmControl::VmInfo& info) {
  json tree = json::object();
  for (const auto& device : info.devices) {
    json node{{"id", device.id}, {"resources", json::array()}, {"children", json::array()}};
    if (!device.bdf.empty()) {  // a device cold-added to a VM not yet booted has none yet
      node["pci_bdf"] = device.bdf;
    }
    tree[device.id] = std::move(node);
  }
  json dma = json::array();
  for (const auto& report : info.dma) {
    dma.push_back(dma_report_to_json(report, info.config, info.devices));
  }
  return json{{"config", vm_config_to_json(info.config)},
              {"state", to_string(info.state)},
              {"memory_actual_size", info.memory_actual_size},
              {"device_tree", std::move(tree)},
              {"dma", std::move(dma)}};
}

json counters_to_json(const vmm::VmmControl::Counters& counters) {
  json out = json::object();
  for (const auto& [device, values] : counters.devices) {
    out[device] = values;
  }
  // Keel's own groups: one per VFIO container, "dma", then "dma1", "dma2", ... in vm.info's
  // order; the virtual IOMMU's as "viommu".
  for (std::size_t i = 0; i < counters.dma.size(); ++i) {
    const vfio::DmaReport& report = counters.dma[i];
    json group = {{"entries_used", report.entries_used},
                  {"peak_entries", report.peak_entries},
                  {"mapped_bytes", report.mapped_bytes},
                  {"failed_maps", report.failed_maps.total()}};
    if (report.lazy) {
      const vfio::LazyCounters& lazy = report.lazy->counters;
      group["guest_maps"] = lazy.maps;
      group["guest_unmaps"] = lazy.unmaps;
      group["shared_maps"] = lazy.shared_maps;
      group["refused_budget"] = lazy.refused_budget;
      group["refused_reserve"] = lazy.refused_reserve;
      group["refused_invalid"] = lazy.refused_invalid;
      group["kernel_failures"] = lazy.kernel_failures;
      group["served_by_eager"] = lazy.served_by_eager;
    }
    out[i == 0 ? std::string("dma") : "dma" + std::to_string(i)] = std::move(group);
  }
  if (!counters.viommu.empty()) {
    out["viommu"] = counters.viommu;
  }
  return out;
}

json device_info_to_json(const vmm::VmmControl::DeviceInfo& device) {
  return json{{"id", device.id}, {"bdf", device.bdf}};
}

}  // namespace keel::api
