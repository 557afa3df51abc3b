#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"

// What keel-remote sends for each command: pure, no I/O.
namespace keel::api {

struct RemoteRequest {
  std::string method;
  std::string target;  // "/api/v1/vm.boot"
  std::string body;    // JSON, or empty
  std::vector<int> fds;  // keel-remote's own fds passed with the request (SCM_RIGHTS)
};

// The request for a command that takes no argument: "ping", "boot", "info", "counters",
// "shutdown", "reboot", "pause", "resume", "delete", "shutdown-vmm". EINVAL for other names.
Result<RemoteRequest> plain_request(std::string_view command);
// vm.create with the VmConfig JSON text as it was read (the server checks it).
RemoteRequest create_request(std::string config_json);
// vm.add-device from "path=PATH[,id=ID][,dma_mapping=auto|eager|lazy][,iommu=on|off]", the
// syntax of keel's --device. EINVAL names a malformed or unknown key.
Result<RemoteRequest> add_device_request(std::string_view spec);
// add-disk path=FILE[,readonly=on][,direct=on][,num_queues=N][,queue_size=N][,id=NAME]
Result<RemoteRequest> add_disk_request(std::string_view spec);
// add-net tap=NAME|fd=N[,ip=..,mask=..][,mac=..][,num_queues=2][,queue_size=N][,id=NAME]
// (fd=N: keel-remote's open TAP fd N, passed to keel with the request)
Result<RemoteRequest> add_net_request(std::string_view spec);
// add-vsock cid=N,socket=PATH[,id=NAME]
Result<RemoteRequest> add_vsock_request(std::string_view spec);
// add-fs tag=TAG,socket=PATH[,num_queues=N][,queue_size=N][,id=NAME]
Result<RemoteRequest> add_fs_request(std::string_view spec);
// vm.remove-device {"id": ID}.
RemoteRequest remove_device_request(const std::string& id);
// vm.resize: --memory SIZE (desired_ram, as "1G" or bytes) and/or --cpus N (desired_vcpus).
Result<RemoteRequest> resize_request(const std::string& memory, const std::string& cpus);

}  // namespace keel::api
