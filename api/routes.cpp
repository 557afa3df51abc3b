#include "api/routes.hpp"

#include <algorithm>
#include <array>

#include "api/json_object_reader.hpp"
#include "api/json_text.hpp"
#include "api/vm_config_json.hpp"

namespace keel::api {
namespace {

template <typename T>
Result<Operation> make_plain(std::string_view /*body*/) {
  return Operation(T{});
}

Result<nlohmann::json> body_json(std::string_view body, std::string_view endpoint,
                                 std::string_view schema) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return Error::invalid(std::string(endpoint) + " needs a body: a " + std::string(schema) +
                          " JSON object (see api/openapi.yaml)");
  }
  return parse_json_text(body);
}

Result<Operation> make_create(std::string_view body) {
  KEEL_TRY(auto json, body_json(body, "vm.create", "VmConfig"));
  KEEL_TRY(auto config, vm_config_from_json(json));
  return Operation(CreateVm{std::move(config)});
}

Result<Operation> make_add_device(std::string_view body) {
  KEEL_TRY(auto json, body_json(body, "vm.add-device", "DeviceConfig"));
  KEEL_TRY(auto device, device_config_from_json(json, ""));
  return Operation(AddDevice{std::move(device)});
}

Result<Operation> make_add_disk(std::string_view body) {
  KEEL_TRY(auto json, body_json(body, "vm.add-disk", "DiskConfig"));
  KEEL_TRY(auto disk, disk_config_from_json(json, "", ""));
  return Operation(AddDisk{std::move(disk)});
}

Result<Operation> make_add_net(std::string_view body) {
  KEEL_TRY(auto json, body_json(body, "vm.add-net", "NetConfig"));
  std::size_t named = 0;
  if (json.is_object() && json.contains("fds")) {
    const auto& fds = json["fds"];
    if (!fds.is_null() && !fds.is_array()) {
      return Error::invalid("fds: expected an array of file descriptor numbers, got " +
                            describe_json(fds));
    }
    named = fds.is_array() ? fds.size() : 0;
    json.erase("fds");  // the descriptors themselves come with the request (SCM_RIGHTS)
  }
  KEEL_TRY(auto net, net_config_from_json(json, "", ""));
  return Operation(AddNet{std::move(net), nullptr, named});
}

Result<Operation> make_add_vsock(std::string_view body) {
  KEEL_TRY(auto json, body_json(body, "vm.add-vsock", "VsockConfig"));
  KEEL_TRY(auto vsock, vsock_config_from_json(json, ""));
  return Operation(AddVsock{std::move(vsock)});
}

Result<Operation> make_add_fs(std::string_view body) {
  KEEL_TRY(auto json, body_json(body, "vm.add-fs", "FsConfig"));
  KEEL_TRY(auto fs, fs_config_from_json(json, "", ""));
  return Operation(AddFs{std::move(fs)});
}

Result<Operation> make_remove_device(std::string_view body) {
  KEEL_TRY(auto json, body_json(body, "vm.remove-device", "VmRemoveDevice"));
  KEEL_TRY(auto reader, JsonObjectReader::open(json, "", "VmRemoveDevice"));
  KEEL_TRY(auto id, reader.string("id", "the id of a device of the VM, e.g. \"nic0\""));
  KEEL_TRY_STATUS(reader.finish());
  if (!id || (id)->empty()) {
    return Error::invalid("id is missing; give the id of a device of the VM (vm.info lists them)");
  }
  return Operation(RemoveDevice{*id});
}

Result<Operation> make_resize(std::string_view body) {
  KEEL_TRY(auto json, body_json(body, "vm.resize", "VmResize"));
  KEEL_TRY(auto reader, JsonObjectReader::open(json, "", "VmResize"));
  ResizeVm op;
  KEEL_TRY(auto vcpus, reader.unsigned_integer("desired_vcpus", "a number of vCPUs"));
  KEEL_TRY(op.resize.desired_ram,
           reader.unsigned_integer("desired_ram", "bytes of guest memory, e.g. 1073741824"));
  KEEL_TRY(op.resize.desired_balloon, reader.unsigned_integer("desired_balloon", "bytes"));
  KEEL_TRY_STATUS(reader.finish());
  if (vcpus) {
    if (*vcpus > 0xffff) {
      return Error::invalid("desired_vcpus: " + std::to_string(*vcpus) + " is not a vCPU count");
    }
    op.resize.desired_vcpus = static_cast<std::uint32_t>(*vcpus);
  }
  if (!vcpus && !op.resize.desired_ram && !op.resize.desired_balloon) {
    return Error::invalid("nothing to resize: give desired_ram (bytes), desired_vcpus or "
                          "desired_balloon");
  }
  return Operation(op);
}

constexpr std::array<Route, 20> kRoutes{{
    {"vmm.ping", "GET", false, &make_plain<PingVmm>},
    {"vmm.shutdown", "PUT", false, &make_plain<ShutdownVmm>},
    {"vm.create", "PUT", true, &make_create},
    {"vm.boot", "PUT", false, &make_plain<BootVm>},
    {"vm.shutdown", "PUT", false, &make_plain<ShutdownVm>},
    {"vm.reboot", "PUT", false, &make_plain<RebootVm>},
    {"vm.pause", "PUT", false, &make_plain<PauseVm>},
    {"vm.resume", "PUT", false, &make_plain<ResumeVm>},
    {"vm.delete", "PUT", false, &make_plain<DeleteVm>},
    {"vm.info", "GET", false, &make_plain<GetVmInfo>},
    {"vm.counters", "GET", false, &make_plain<GetVmCounters>},
    {"vm.add-device", "PUT", true, &make_add_device},
    {"vm.add-disk", "PUT", true, &make_add_disk},
    {"vm.add-net", "PUT", true, &make_add_net},
    {"vm.add-vsock", "PUT", true, &make_add_vsock},
    {"vm.add-fs", "PUT", true, &make_add_fs},
    {"vm.remove-device", "PUT", true, &make_remove_device},
    {"vm.resize", "PUT", true, &make_resize},
    {"vm.power-button", "PUT", false, &make_plain<PowerButton>},
    {"vm.nmi", "PUT", false, &make_plain<InjectNmi>},
}};

}  // namespace

std::span<const Route> routes() { return kRoutes; }

const Route* find_route(std::string_view name) {
  const auto it = std::find_if(kRoutes.begin(), kRoutes.end(),
                               [name](const Route& route) { return route.name == name; });
  return it == kRoutes.end() ? nullptr : &*it;
}

}  // namespace keel::api
