#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "api/api_server.hpp"
#include "api/remote_cli.hpp"
#include "api/remote_command.hpp"
#include "api/remote_output.hpp"
#include "api/vm_info_json.hpp"
#include "fake_vmm_control.hpp"
#include "test_values.hpp"

namespace keel::api {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

TEST_CASE("remote: commands map to endpoints and methods") {
  const std::pair<const char*, const char*> cases[] = {
      {"ping", "GET /api/v1/vmm.ping"},    {"shutdown-vmm", "PUT /api/v1/vmm.shutdown"},
      {"boot", "PUT /api/v1/vm.boot"},     {"shutdown", "PUT /api/v1/vm.shutdown"},
      {"reboot", "PUT /api/v1/vm.reboot"}, {"pause", "PUT /api/v1/vm.pause"},
      {"resume", "PUT /api/v1/vm.resume"}, {"delete", "PUT /api/v1/vm.delete"},
      {"info", "GET /api/v1/vm.info"},     {"counters", "GET /api/v1/vm.counters"},
      {"power-button", "PUT /api/v1/vm.power-button"}, {"nmi", "PUT /api/v1/vm.nmi"},
  };
  for (const auto& [command, expected] : cases) {
    auto request = plain_request(command);
    REQUIRE(request.ok());
    CHECK(request->method + " " + request->target == expected);
    CHECK(request->body.empty());
  }
  CHECK_FALSE(plain_request("create").ok());
  CHECK(create_request("{}").target == "/api/v1/vm.create");
  const RemoteRequest remove = remove_device_request("nic0");
  CHECK(remove.method == "PUT");
  CHECK(json::parse(remove.body) == json{{"id", "nic0"}});
}

TEST_CASE("remote: add-net and add-vsock take keel's --net and --vsock syntax") {
  auto net = add_net_request("tap=tap1,ip=10.0.0.1,mask=255.0.0.0,queue_size=512,id=n");
  REQUIRE(net.ok());
  CHECK(net->target == "/api/v1/vm.add-net");
  CHECK(nlohmann::json::parse(net->body) ==
        nlohmann::json::parse(R"({"tap": "tap1", "ip": "10.0.0.1", "mask": "255.0.0.0",
                                  "queue_size": 512, "id": "n"})"));
  CHECK(add_net_request("ip=10.0.0.1").error().message().find("give tap=NAME") !=
        std::string::npos);
  CHECK(add_net_request("tap=t,fd=3").error().message().find("one of them") != std::string::npos);
  CHECK(add_net_request("fd=1").error().message().find("3 or more") != std::string::npos);
  auto with_fd = add_net_request("fd=7,id=n1");
  REQUIRE(with_fd.ok());
  CHECK(with_fd->fds == std::vector<int>{7});
  CHECK(nlohmann::json::parse(with_fd->body) == nlohmann::json::parse(R"({"fds": [7], "id": "n1"})"));
  auto vsock = add_vsock_request("cid=3,socket=/run/k.vsock");
  REQUIRE(vsock.ok());
  CHECK(vsock->target == "/api/v1/vm.add-vsock");
  CHECK(nlohmann::json::parse(vsock->body) ==
        nlohmann::json::parse(R"({"cid": 3, "socket": "/run/k.vsock"})"));
  CHECK(add_vsock_request("cid=x,socket=/s").error().message() ==
        "add-vsock: cid=x is not a number, e.g. cid=3");
  CHECK(add_vsock_request("socket=/s").error().message().find("cid= and socket= are required") !=
        std::string::npos);
}

TEST_CASE("remote: add-disk takes keel's --disk syntax") {
  auto request = add_disk_request("path=/img/root.img,readonly=on,num_queues=2,id=root");
  REQUIRE(request.ok());
  CHECK(request->method == "PUT");
  CHECK(request->target == "/api/v1/vm.add-disk");
  CHECK(json::parse(request->body) == json::parse(R"({"path": "/img/root.img", "readonly": true,
                                                      "num_queues": 2, "id": "root"})"));
  CHECK(add_disk_request("readonly=on").error().message().find("path= is required") !=
        std::string::npos);
  CHECK(add_disk_request("path=/a,readonly=yes").error().message() ==
        "add-disk: readonly=yes must be on or off");
  CHECK(add_disk_request("path=/a,queue_size=big").error().message() ==
        "add-disk: queue_size=big is not a number");
  CHECK(add_disk_request("path=/a,cache=none").error().message().find("unknown key \"cache\"") !=
        std::string::npos);
}

TEST_CASE("remote: add-device takes keel's --device syntax") {
  auto request =
      add_device_request("path=/sys/bus/pci/devices/0000:01:00.0,id=nic0,dma_mapping=eager");
  REQUIRE(request.ok());
  CHECK(request->target == "/api/v1/vm.add-device");
  CHECK(json::parse(request->body) == json::parse(R"({"path": "/sys/bus/pci/devices/0000:01:00.0",
                                                      "id": "nic0", "dma_mapping": "eager"})"));
  CHECK(json::parse(add_device_request("path=/p,iommu=on")->body)["iommu"] == true);
  CHECK(add_device_request("id=nic0").error().message().find("path= is required") !=
        std::string::npos);
  CHECK(add_device_request("path=/p,colour=red").error().message().find("unknown key \"colour\"") !=
        std::string::npos);
  CHECK(add_device_request("path=/p,path=/q").error().message() == "add-device: path given twice");
  CHECK_FALSE(add_device_request("path").ok());
  CHECK_FALSE(add_device_request("path=/p,").ok());
  CHECK_FALSE(add_device_request("path=/p,iommu=yes").ok());
}

TEST_CASE("remote: info for people shows state, vCPUs, memory, devices and the DMA table") {
  const std::string text = format_info(vm_info_to_json(test::full_info()));
  INFO(text);
  CHECK(text.find("state            Running\n") != std::string::npos);
  CHECK(text.find("vCPUs            3\n") != std::string::npos);
  CHECK(text.find("memory           3 GiB, shared, hugepages\n") != std::string::npos);
  CHECK(text.find("initramfs        /boot/initrd.img\n") != std::string::npos);
  CHECK(text.find("nic0          0000:00:01.0  eager        auto     off    "
                  "/sys/bus/pci/devices/0000:01:00.0") != std::string::npos);
  CHECK(text.find("lazy         iommufd  on     /sys/bus/pci/devices/0000:02:00.0") !=
        std::string::npos);
  CHECK(text.find("backend          type1 (auto: the host has no /dev/iommu)\n") !=
        std::string::npos);
  CHECK(text.find("memlock          4 GiB, charged to the process, plan pins 3 GiB\n") !=
        std::string::npos);
  CHECK(text.find("binding limit    memlock\n") != std::string::npos);
  CHECK(text.find("DMA (3 containers)\n") != std::string::npos);
  CHECK(text.find("container 0: nic0 (host 0000:01:00.0, guest 0000:00:01.0)") !=
        std::string::npos);
  CHECK(text.find("avail at open    24 entries (capability)\n") != std::string::npos);
  CHECK(text.find("avail now        21\n") != std::string::npos);
  CHECK(text.find("entries used     3 (peak 4, planned 3)\n") != std::string::npos);
  CHECK(text.find("consistent       yes\n") != std::string::npos);
  CHECK(text.find("failed maps      eexist=1, einval=3, enomem=4, enospc=2, other=5\n") !=
        std::string::npos);
  CHECK(text.find("low water") == std::string::npos);  // eager containers have no reserve
  CHECK(text.find("IOVA ranges      0x0-0xfedfffff, 0xfef00000-0x7fffffffff\n") !=
        std::string::npos);
  CHECK(text.find("avail at open    absent (kernel < 5.10: budget unknown)\n") !=
        std::string::npos);
  CHECK(text.find("avail now        not re-read\n") != std::string::npos);
  CHECK(text.find("consistent       cannot be checked (no capability)\n") != std::string::npos);
  CHECK(text.find("avail at open    unlimited\n") != std::string::npos);
  CHECK(text.find("container 1: ? (host 0000:09:00.0, guest not assigned)") != std::string::npos);
}

TEST_CASE("remote: info for people shows a lazy container's guest mappings and reserve") {
  vmm::VmmControl::VmInfo info = test::full_info();
  vfio::LazyReport lazy;
  lazy.low_water = 2;
  lazy.guest_mappings = 7;
  lazy.counters.refused_budget = 3;
  info.dma[0].mode = vfio::Decision::kLazy;
  info.dma[0].lazy = lazy;
  const std::string text = format_info(vm_info_to_json(info));
  INFO(text);
  CHECK(text.find("guest mappings   7\n") != std::string::npos);
  CHECK(text.find("low water        2 entries kept free\n") != std::string::npos);
  CHECK(text.find("refused_budget=3") != std::string::npos);
}

TEST_CASE("remote: output is tolerant of answers of another shape") {
  for (const char* odd : {"[]", "null", "{}", R"({"config": 5, "dma": [1, {"devices": 3}]})",
                          R"({"state": {"x": 1}, "device_tree": [], "dma": {}})"}) {
    const json j = json::parse(odd);
    CHECK_NOTHROW(format_info(j));
    CHECK_NOTHROW(format_counters(j));
    CHECK_NOTHROW(format_ping(j));
    CHECK_NOTHROW(format_added_device(j));
  }
  CHECK(format_counters(json::parse(R"({"nic0": {"bar_traps": 2}})")) ==
        "DEVICE  COUNTER    VALUE\nnic0    bar_traps  2\n");
  CHECK(format_error(409, R"({"kind": "wrong_state", "message": "vm.boot: the VM is running"})") ==
        "vm.boot: the VM is running");
  CHECK(format_error(502, "proxy says no") == "proxy says no");
  CHECK(format_error(500, "") == "HTTP status 500");
}

struct Run {
  int status;
  std::string out;
  std::string err;
};

Run run(std::vector<std::string> args) {
  args.insert(args.begin(), "keel-remote");
  std::vector<const char*> argv;
  argv.reserve(args.size());
  for (const auto& a : args) {
    argv.push_back(a.c_str());
  }
  std::ostringstream out, err;
  const int status = remote_main(static_cast<int>(argv.size()), argv.data(), out, err);
  return {status, out.str(), err.str()};
}

TEST_CASE("remote: keel-remote against a server") {
  char name[] = "/tmp/keel-remote-test-XXXXXX";
  REQUIRE(::mkdtemp(name) != nullptr);
  const std::string dir = name;
  const std::string socket = dir + "/api.sock";
  test::FakeVmmControl vmm;
  vmm.info_value = test::full_info();
  auto server = ApiServer::start(socket, vmm);
  REQUIRE(server.ok());

  Run ping = run({"--api-socket", socket, "ping"});
  CHECK(ping.status == 0);
  CHECK(ping.out == "keel 0.1.0 (pid 4242)\n");
  Run ping_json = run({"ping", "--api-socket", socket, "--json"});
  CHECK(ping_json.status == 0);
  CHECK(json::parse(ping_json.out)["pid"] == 4242);

  Run info = run({"--api-socket", socket, "info"});
  CHECK(info.status == 0);
  CHECK(info.out.find("DMA (3 containers)") != std::string::npos);

  const std::string config = dir + "/vm.json";
  std::ofstream(config) << R"({"payload": {"kernel": "/boot/vmlinuz"}, "cpus": {"boot_vcpus": 2}})";
  Run create = run({"--api-socket", socket, "create", config});
  CHECK(create.status == 0);
  CHECK(create.out == "VM created\n");
  REQUIRE(vmm.created);
  CHECK(vmm.created->boot_vcpus == 2);

  Run added =
      run({"--api-socket", socket, "add-device", "path=/sys/bus/pci/devices/0000:01:00.0,id=nic0"});
  CHECK(added.status == 0);
  CHECK(added.out == "device added; it gets its guest address at vm.boot\n");
  Run removed = run({"--api-socket", socket, "remove-device", "nic0"});
  CHECK(removed.status == 0);
  CHECK(vmm.removed == "nic0");

  std::ofstream(config) << R"({"payload": {"kernel": "/k"}, "memory": {"size": "512M"}})";
  Run bad = run({"--api-socket", socket, "create", config});
  CHECK(bad.status == 1);
  CHECK(bad.err.find("keel-remote: create: memory.size: expected an unsigned 64-bit integer") == 0);
  CHECK(bad.err.find("(HTTP 400)") != std::string::npos);

  vmm.fail_with(Error::wrong_state("vm.boot: the VM is running"));
  Run busy = run({"--api-socket", socket, "boot"});
  CHECK(busy.status == 1);
  CHECK(busy.err ==
        "keel-remote: boot: vm.boot: the VM is running (HTTP 409)\n");
  Run busy_json = run({"--api-socket", socket, "--json", "boot"});
  CHECK(busy_json.status == 1);
  CHECK(json::parse(busy_json.out)["kind"] == "wrong_state");

  CHECK(run({"--api-socket", socket}).status == 2);
  CHECK(run({"boot"}).status == 2);
  CHECK(run({"--api-socket", socket, "frobnicate"}).status == 2);
  CHECK(run({"--api-socket", socket, "add-device", "id=x"}).status == 2);
  CHECK(run({"--api-socket", socket, "create"}).status == 2);
  CHECK(run({"--api-socket", socket, "create", dir + "/missing.json"}).status == 1);
  CHECK(run({"--help"}).status == 0);

  server->reset();
  Run gone = run({"--api-socket", socket, "ping"});
  CHECK(gone.status == 1);
  CHECK(gone.err.find("keel-remote: API: connect to " + socket) == 0);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace keel::api
