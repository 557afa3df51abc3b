#include "api/request_parser.hpp"

#include <catch2/catch.hpp>

#include <string>

#include "api/api_errc.hpp"
#include "api/response.hpp"
#include "api/routes.hpp"

namespace keel::api {
namespace {

std::string target(std::string_view name) { return std::string(kApiRoot) + std::string(name); }

unsigned status_of(const Result<Operation>& result) {
  REQUIRE_FALSE(result.ok());
  return http_status(result.error());
}

std::string message_of(const Result<Operation>& result) {
  REQUIRE_FALSE(result.ok());
  return error_message(result.error());
}

constexpr const char* kMinimalConfig = R"({"payload": {"kernel": "/boot/vmlinuz"}})";

TEST_CASE("every endpoint parses to its operation") {
  struct Case {
    const char* name;
    const char* method;
    const char* body;
    std::size_t index;  // in the Operation variant
  };
  const Case cases[] = {
      {"vmm.ping", "GET", "", Operation(PingVmm{}).index()},
      {"vmm.shutdown", "PUT", "", Operation(ShutdownVmm{}).index()},
      {"vm.create", "PUT", kMinimalConfig, Operation(CreateVm{}).index()},
      {"vm.boot", "PUT", "", Operation(BootVm{}).index()},
      {"vm.shutdown", "PUT", "", Operation(ShutdownVm{}).index()},
      {"vm.reboot", "PUT", "", Operation(RebootVm{}).index()},
      {"vm.pause", "PUT", "", Operation(PauseVm{}).index()},
      {"vm.resume", "PUT", "", Operation(ResumeVm{}).index()},
      {"vm.delete", "PUT", "", Operation(DeleteVm{}).index()},
      {"vm.info", "GET", "", Operation(GetVmInfo{}).index()},
      {"vm.counters", "GET", "", Operation(GetVmCounters{}).index()},
      {"vm.add-device", "PUT", R"({"path": "/sys/bus/pci/devices/0000:01:00.0"})",
       Operation(AddDevice{}).index()},
      {"vm.add-disk", "PUT", R"({"path": "/images/root.img"})", Operation(AddDisk{}).index()},
      {"vm.add-net", "PUT", R"({"tap": "tap0"})", Operation(AddNet{}).index()},
      {"vm.add-vsock", "PUT", R"({"cid": 3, "socket": "/run/keel.vsock"})", Operation(AddVsock{}).index()},
      {"vm.add-fs", "PUT", R"({"tag": "myfs", "socket": "/run/virtiofsd.sock"})", Operation(AddFs{}).index()},
      {"vm.remove-device", "PUT", R"({"id": "nic0"})", Operation(RemoveDevice{}).index()},
      {"vm.resize", "PUT", R"({"desired_ram": 1073741824})", Operation(ResizeVm{}).index()},
      {"vm.power-button", "PUT", "", Operation(PowerButton{}).index()},
      {"vm.nmi", "PUT", "", Operation(InjectNmi{}).index()},
  };
  REQUIRE(std::size(cases) == routes().size());
  for (const Case& c : cases) {
    INFO(c.name);
    auto op = parse_request(c.method, target(c.name), c.body);
    REQUIRE(op.ok());
    CHECK(op->index() == c.index);
    CHECK(operation_name(*op) == c.name);
  }
}

TEST_CASE("every endpoint refuses the other method with 405 naming the right one") {
  for (const Route& route : routes()) {
    INFO(route.name);
    const std::string other = route.method == "GET" ? "PUT" : "GET";
    auto op = parse_request(other, target(route.name), "");
    CHECK(status_of(op) == 405);
    CHECK(message_of(op) ==
          std::string(route.name) + " takes " + std::string(route.method) + ", not " + other);
  }
  CHECK(status_of(parse_request("POST", target("vm.create"), kMinimalConfig)) == 405);
  CHECK(status_of(parse_request("HEAD", target("vmm.ping"), "")) == 405);
  CHECK(status_of(parse_request("DELETE", target("vm.delete"), "")) == 405);
}

TEST_CASE("unknown endpoints are 404") {
  for (const char* path :
       {"/", "", "/api/v1/", "/api/v1/vm.restore", "/api/v1/vm.snapshot", "/api/v2/vm.info",
        "/api/v1/vm.info/", "/api/v1//vm.info", "api/v1/vm.info", "/API/V1/VM.INFO"}) {
    INFO(path);
    auto op = parse_request("GET", path, "");
    CHECK(status_of(op) == 404);
  }
  CHECK(status_of(parse_request("GET", std::string("/api/v1/vm.info\0x", 17), "")) == 404);
  CHECK(message_of(parse_request("GET", "/api/v1/vm.restore", "")).find("/api/v1/vm.restore") !=
        std::string::npos);
}

TEST_CASE("a query string is ignored, as cloud-hypervisor ignores it") {
  auto op = parse_request("GET", "/api/v1/vm.info?verbose=1", "");
  REQUIRE(op.ok());
  CHECK(std::holds_alternative<GetVmInfo>(*op));
}

TEST_CASE("a body over 1 MiB is 413, at any endpoint") {
  const std::string big(kMaxBodyBytes + 1, ' ');
  CHECK(status_of(parse_request("PUT", target("vm.create"), big)) == 413);
  CHECK(status_of(parse_request("PUT", target("vm.boot"), big)) == 413);
  // Exactly the limit is parsed (and here fails as JSON, not as size).
  CHECK(status_of(parse_request("PUT", target("vm.create"), std::string(kMaxBodyBytes, ' '))) ==
        400);
}

TEST_CASE("a body sent to an endpoint that takes none is ignored") {
  auto op = parse_request("PUT", target("vm.boot"), "not json at all");
  REQUIRE(op.ok());
  CHECK(std::holds_alternative<BootVm>(*op));
}

TEST_CASE("endpoints that take a body refuse a missing or broken one with 400") {
  for (const char* name : {"vm.create", "vm.add-device", "vm.add-disk", "vm.add-net",
                           "vm.add-vsock", "vm.remove-device"}) {
    INFO(name);
    auto empty = parse_request("PUT", target(name), "");
    CHECK(status_of(empty) == 400);
    CHECK(message_of(empty).find("needs a body") != std::string::npos);
    CHECK(status_of(parse_request("PUT", target(name), " \r\n ")) == 400);
    auto broken = parse_request("PUT", target(name), "{\"id\": ");
    CHECK(status_of(broken) == 400);
    CHECK(message_of(broken).find("not valid JSON") != std::string::npos);
    CHECK(message_of(broken).find("line 1, column 8") != std::string::npos);
    auto not_object = parse_request("PUT", target(name), "[1, 2]");
    CHECK(status_of(not_object) == 400);
    CHECK(message_of(not_object).find("expected a JSON object") != std::string::npos);
  }
}

TEST_CASE("JSON is parsed strictly: duplicate keys and deep nesting are 400") {
  auto twice = parse_request("PUT", target("vm.remove-device"), R"({"id": "a", "id": "b"})");
  CHECK(status_of(twice) == 400);
  CHECK(message_of(twice).find("\"id\" appears twice") != std::string::npos);
  auto nested_twice =
      parse_request("PUT", target("vm.create"),
                    R"({"payload": {"kernel": "/k"}, "memory": {"size": 1, "size": 2}})");
  CHECK(message_of(nested_twice).find("\"size\" appears twice") != std::string::npos);
  // Same key in two different objects is fine.
  CHECK(parse_request("PUT", target("vm.create"),
                      R"({"payload": {"kernel": "/k"}, "serial": {"mode": "Tty", "file": null}})")
            .ok());

  const std::string deep = std::string(100, '[') + std::string(100, ']');
  auto too_deep = parse_request("PUT", target("vm.create"), deep);
  CHECK(status_of(too_deep) == 400);
  CHECK(message_of(too_deep).find("deeper than 32") != std::string::npos);
  // A megabyte of '[' is refused quickly, without exhausting the stack.
  CHECK(status_of(parse_request("PUT", target("vm.create"), std::string(kMaxBodyBytes, '['))) ==
        400);
}

TEST_CASE("vm.remove-device takes exactly {id}") {
  auto op = parse_request("PUT", target("vm.remove-device"), R"({"id": "nic0"})");
  REQUIRE(op.ok());
  CHECK(std::get<RemoveDevice>(*op).id == "nic0");
  auto missing = parse_request("PUT", target("vm.remove-device"), "{}");
  CHECK(status_of(missing) == 400);
  CHECK(message_of(missing).find("id is missing") != std::string::npos);
  auto wrong = parse_request("PUT", target("vm.remove-device"), R"({"id": 7})");
  CHECK(message_of(wrong) ==
        "id: expected a string, got 7; give the id of a device of the VM, "
        "e.g. \"nic0\"");
  auto unknown = parse_request("PUT", target("vm.remove-device"), R"({"id": "a", "force": true})");
  CHECK(status_of(unknown) == 400);
  CHECK(message_of(unknown).find("force: unknown field") != std::string::npos);
}

TEST_CASE("vm.add-device: defaults, the id from the path, and iommu refused") {
  auto op = parse_request("PUT", target("vm.add-device"),
                          R"({"path": "/sys/bus/pci/devices/0000:01:00.0/"})");
  REQUIRE(op.ok());
  const vmm::DeviceConfig& device = std::get<AddDevice>(*op).device;
  CHECK(device.path == "/sys/bus/pci/devices/0000:01:00.0");
  CHECK(device.id == "0000:01:00.0");
  CHECK(device.dma_mapping == vfio::MappingMode::kAuto);

  auto full =
      parse_request("PUT", target("vm.add-device"),
                    R"({"path": "/sys/bus/pci/devices/0000:01:00.0", "id": "nic0", "iommu": false,
          "dma_mapping": "lazy", "pci_segment": 0, "pci_device_id": null})");
  REQUIRE(full.ok());
  CHECK(std::get<AddDevice>(*full).device.id == "nic0");
  CHECK(std::get<AddDevice>(*full).device.dma_mapping == vfio::MappingMode::kLazy);

  auto iommu = parse_request("PUT", target("vm.add-device"),
                             R"({"path": "/sys/bus/pci/devices/0000:01:00.0", "iommu": true})");
  REQUIRE(iommu.ok());
  CHECK(std::get<AddDevice>(*iommu).device.iommu);
  auto iommu_text = parse_request("PUT", target("vm.add-device"),
                                  R"({"path": "/sys/bus/pci/devices/0000:01:00.0", "iommu": "on"})");
  CHECK(status_of(iommu_text) == 400);
  CHECK(message_of(iommu_text).find("iommu:") == 0);

  auto mode = parse_request("PUT", target("vm.add-device"),
                            R"({"path": "/sys/bus/pci/devices/0000:01:00.0", "dma_mapping": "x"})");
  CHECK(message_of(mode) ==
        "dma_mapping: 'x' is not a DMA mapping mode; give auto, eager or lazy");
  auto slot = parse_request("PUT", target("vm.add-device"),
                            R"({"path": "/sys/bus/pci/devices/0000:01:00.0", "pci_device_id": 3})");
  CHECK(status_of(slot) == 400);
  CHECK(message_of(slot).find("pci_device_id: 3 asks for a PCI slot of your choice") !=
        std::string::npos);
  auto no_path = parse_request("PUT", target("vm.add-device"), R"({"id": "x"})");
  CHECK(message_of(no_path).find("path is missing") != std::string::npos);
}

}  // namespace
}  // namespace keel::api
