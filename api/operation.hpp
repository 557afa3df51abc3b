#pragma once

#include <string>
#include <string_view>
#include <variant>

#include "vmm/vm_config.hpp"

namespace keel::api {

// One typed request per API operation (cloud-hypervisor's vmm.* and vm.*). parse_request turns
// an HTTP request into one of these; dispatch calls the matching VmmControl method.
struct PingVmm {};
struct ShutdownVmm {};
struct CreateVm {
  vmm::VmConfig config;
};
struct BootVm {};
struct ShutdownVm {};
struct RebootVm {};
struct PauseVm {};
struct ResumeVm {};
struct DeleteVm {};
struct GetVmInfo {};
struct GetVmCounters {};
struct AddDevice {
  vmm::DeviceConfig device;
};
struct AddDisk {
  vmm::DiskConfig disk;
};
struct AddNet {
  vmm::NetConfig net;
};
struct AddVsock {
  vmm::VsockConfig vsock;
};
struct RemoveDevice {
  std::string id;
};

using Operation =
    std::variant<PingVmm, ShutdownVmm, CreateVm, BootVm, ShutdownVm, RebootVm, PauseVm, ResumeVm,
                 DeleteVm, GetVmInfo, GetVmCounters, AddDevice, AddDisk, AddNet, AddVsock, RemoveDevice>;

// The operation's API name: "vmm.ping", "vm.create", ...
std::string_view operation_name(const Operation& operation);

}  // namespace keel::api
