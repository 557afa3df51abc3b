#pragma once

#include <vector>

#include <nlohmann/json.hpp>

#include "devices/vfio/dma_report.hpp"
#include "vmm/vm_config.hpp"
#include "vmm/vmm_control.hpp"

namespace keel::api {

// One VFIO container's DMA report as vm.info's dma[] entry (DESIGN.md §4; every field of
// vfio::DmaReport). The report names its devices by host PCI address; `config` and `devices`
// resolve them to the API's device ids and guest addresses (null where unresolved).
// Unknown numbers are null, never 0: avail_at_open when the source is not "capability",
// avail_now when never re-read or not a capability reading, consistent when not checkable.
nlohmann::json dma_report_to_json(const vfio::DmaReport& report, const vmm::VmConfig& config,
                                  const std::vector<vmm::VmmControl::DeviceInfo>& devices);

}  // namespace keel::api
