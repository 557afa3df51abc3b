#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

#include "vmm/vmm_control.hpp"

// The JSON of the API's answers, in cloud-hypervisor's shapes (VmmPingResponse, VmInfo,
// VmCounters, PciDeviceInfo) plus Keel's vm.info "dma". api/openapi.yaml is their schema.
namespace keel::api {

std::string_view to_string(vmm::VmmControl::VmState state);  // "Created", "Running", ...

nlohmann::json ping_to_json(const vmm::VmmControl::VmmPing& ping);
// {config, state, memory_actual_size, device_tree, dma}. device_tree is cloud-hypervisor's map
// of id to {id, resources, children, pci_bdf}, holding the passthrough devices; pci_bdf is null
// until the device has a guest address (before vm.boot).
nlohmann::json vm_info_to_json(const vmm::VmmControl::VmInfo& info);
nlohmann::json counters_to_json(const vmm::VmmControl::Counters& counters);
// {id, bdf}; bdf is null when the device has no guest address yet (added before vm.boot).
nlohmann::json device_info_to_json(const vmm::VmmControl::DeviceInfo& device);

}  // namespace keel::api
