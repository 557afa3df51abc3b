#pragma once

#include <string>
#include <string_view>

#include "devices/vfio/dma_report.hpp"
#include "vmm/vm_config.hpp"
#include "vmm/vmm_control.hpp"

// Values with every field set to something other than its default, shared by the tests.
namespace keel::api::test {

vmm::VmConfig full_config();
// A report read from the DMA_AVAIL capability, re-read, consistent, with failures of each kind.
vfio::DmaReport capability_report();
// A report from a kernel without DMA_AVAIL: the budget and consistency are unknown.
vfio::DmaReport absent_report();
// Running, with full_config(), its two devices at guest addresses and one report per source.
vmm::VmmControl::VmInfo full_info();

// A valid body for each endpoint that takes one ("" for the others): full_config() for
// vm.create, one device, disk, link, share or vsock for the vm.add-* endpoints.
std::string example_body(std::string_view endpoint);

bool same_config(const vmm::VmConfig& a, const vmm::VmConfig& b);

}  // namespace keel::api::test
