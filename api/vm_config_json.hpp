#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "api/json_object_reader.hpp"

#include "base/result.hpp"
#include "vmm/vm_config.hpp"

// VmConfig and DeviceConfig as JSON, in cloud-hypervisor's shape (cpus.boot_vcpus, memory.size,
// payload.kernel, serial.mode, devices[].path) plus Keel's devices[].dma_mapping and
// exit_on_reboot. Reading is strict: unknown fields are refused, cloud-hypervisor fields that
// Keel does not implement are accepted only with values that ask for nothing (api/openapi.yaml
// lists them), and every error names the field, the value and the fix. Every field that asks for
// what Keel lacks is named in one answer.
namespace keel::api {

Result<vmm::VmConfig> vm_config_from_json(const nlohmann::json& value);
nlohmann::json vm_config_to_json(const vmm::VmConfig& config);

// One devices[] entry or the vm.add-device body. `path` is its place for messages ("devices[2]",
// or "" for a whole body). A missing id defaults to the path's last component, as on keel's
// command line. The readers below report what the entry asks for that Keel lacks into
// `unsupported` when given (vm.create gathers them all), else with their own error.
Result<vmm::DeviceConfig> device_config_from_json(const nlohmann::json& value,
                                                  const std::string& path,
                                                  Unsupported* unsupported = nullptr);
nlohmann::json device_config_to_json(const vmm::DeviceConfig& device);

// One disks[] entry or the vm.add-disk body (cloud-hypervisor's DiskConfig). A missing id
// becomes `default_id` (empty for vm.add-disk: the VMM names it "_disk<N>").
Result<vmm::DiskConfig> disk_config_from_json(const nlohmann::json& value, const std::string& path,
                                              const std::string& default_id,
                                              Unsupported* unsupported = nullptr);
nlohmann::json disk_config_to_json(const vmm::DiskConfig& disk);

// One net[] entry (cloud-hypervisor's NetConfig). A missing id becomes `default_id`.
Result<vmm::NetConfig> net_config_from_json(const nlohmann::json& value, const std::string& path,
                                            const std::string& default_id,
                                            Unsupported* unsupported = nullptr);
nlohmann::json net_config_to_json(const vmm::NetConfig& net);

// The vsock object or the vm.add-vsock body (cloud-hypervisor's VsockConfig).
Result<vmm::VsockConfig> vsock_config_from_json(const nlohmann::json& value,
                                                const std::string& path,
                                                Unsupported* unsupported = nullptr);
nlohmann::json vsock_config_to_json(const vmm::VsockConfig& vsock);

// One fs[] entry or the vm.add-fs body (cloud-hypervisor's FsConfig). A missing id becomes
// `default_id` (empty for vm.add-fs: the VMM names it "_fs<N>").
Result<vmm::FsConfig> fs_config_from_json(const nlohmann::json& value, const std::string& path,
                                          const std::string& default_id,
                                          Unsupported* unsupported = nullptr);
nlohmann::json fs_config_to_json(const vmm::FsConfig& fs);

std::string_view to_string(vmm::SerialMode mode);     // "Tty", "File", "Off"

}  // namespace keel::api
