#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <variant>

#include "base/unique_fd.hpp"
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
  // A TAP passed with the request (SCM_RIGHTS), handed to the VMM; null for none.
  std::shared_ptr<UniqueFd> tap;
  // How many the body's "fds" named (cloud-hypervisor's clients list them; the values mean
  // nothing here, the descriptors that came do).
  std::size_t fds_named = 0;
};
struct AddVsock {
  vmm::VsockConfig vsock;
};
struct AddFs {
  vmm::FsConfig fs;
};
struct RemoveDevice {
  std::string id;
};
struct ResizeVm {
  vmm::ResizeConfig resize;
};
struct PowerButton {};
struct InjectNmi {};

using Operation =
    std::variant<PingVmm, ShutdownVmm, CreateVm, BootVm, ShutdownVm, RebootVm, PauseVm, ResumeVm,
                 DeleteVm, GetVmInfo, GetVmCounters, AddDevice, AddDisk, AddNet, AddVsock, AddFs,
                 RemoveDevice, ResizeVm, PowerButton, InjectNmi>;

// The operation's API name: "vmm.ping", "vm.create", ...
std::string_view operation_name(const Operation& operation);

}  // namespace keel::api
