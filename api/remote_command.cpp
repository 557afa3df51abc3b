#include "api/remote_command.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "api/json_text.hpp"
#include "base/size.hpp"
#include "api/routes.hpp"

namespace keel::api {
namespace {

RemoteRequest request_for(std::string_view endpoint, std::string body = {}) {
  const Route* route = find_route(endpoint);
  // Cannot be null: callers name endpoints of the route table.
  return RemoteRequest{std::string(route->method), std::string(kApiRoot) + std::string(endpoint),
                       std::move(body), {}};
}

struct PlainCommand {
  std::string_view command;
  std::string_view endpoint;
};
constexpr std::array<PlainCommand, 12> kPlainCommands{{
    {"ping", "vmm.ping"},
    {"shutdown-vmm", "vmm.shutdown"},
    {"boot", "vm.boot"},
    {"shutdown", "vm.shutdown"},
    {"reboot", "vm.reboot"},
    {"pause", "vm.pause"},
    {"resume", "vm.resume"},
    {"delete", "vm.delete"},
    {"info", "vm.info"},
    {"counters", "vm.counters"},
    {"power-button", "vm.power-button"},
    {"nmi", "vm.nmi"},
}};

}  // namespace

Result<RemoteRequest> plain_request(std::string_view command) {
  for (const PlainCommand& c : kPlainCommands) {
    if (c.command == command) {
      return request_for(c.endpoint);
    }
  }
  return Error::invalid("unknown command \"" + std::string(command) + "\"");
}

RemoteRequest create_request(std::string config_json) {
  return request_for("vm.create", std::move(config_json));
}

namespace {

// "key=value,key=value" as keel's command line writes options; each key once.
Result<std::vector<std::pair<std::string, std::string>>> split_spec(std::string_view command,
                                                                     std::string_view spec,
                                                                     std::string_view example) {
  std::vector<std::pair<std::string, std::string>> items;
  std::set<std::string> seen;
  std::size_t start = 0;
  while (start <= spec.size()) {
    const std::size_t comma = std::min(spec.find(',', start), spec.size());
    const std::string_view item = spec.substr(start, comma - start);
    start = comma + 1;
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0 || eq + 1 == item.size()) {
      return Error::invalid(std::string(command) + ": \"" + std::string(item) +
                            "\" is not key=value; e.g. " + std::string(example));
    }
    std::string key(item.substr(0, eq));
    if (!seen.insert(key).second) {
      return Error::invalid(std::string(command) + ": " + key + " given twice");
    }
    items.emplace_back(std::move(key), std::string(item.substr(eq + 1)));
  }
  return items;
}

Result<bool> on_off(std::string_view command, const std::string& key, const std::string& value) {
  if (value != "on" && value != "off") {
    return Error::invalid(std::string(command) + ": " + key + "=" + value + " must be on or off");
  }
  return value == "on";
}

// A value of at most `max_digits` decimal digits (split_spec gives no empty values); nullopt for
// anything else, which each caller names in its own words.
std::optional<std::uint64_t> digits(const std::string& value, std::size_t max_digits) {
  if (value.find_first_not_of("0123456789") != std::string::npos || value.size() > max_digits) {
    return std::nullopt;
  }
  return std::stoull(value);
}

}  // namespace

Result<RemoteRequest> add_device_request(std::string_view spec) {
  KEEL_TRY(auto items, split_spec("add-device", spec, "path=/sys/bus/pci/devices/0000:01:00.0,id=nic0"));
  nlohmann::json body = nlohmann::json::object();
  for (const auto& [key, value] : items) {
    if (key == "path" || key == "id" || key == "dma_mapping" || key == "backend") {
      body[key] = value;
    } else if (key == "iommu") {
      KEEL_TRY(body[key], on_off("add-device", key, value));
    } else if (key == "dma_low_water") {
      const auto entries = digits(value, 10);
      if (!entries) {
        return Error::invalid("add-device: dma_low_water=" + value + " is not a number of entries");
      }
      body[key] = *entries;
    } else {
      return Error::invalid("add-device: unknown key \"" + key +
                            "\" (known: path, id, dma_mapping, backend, iommu, dma_low_water)");
    }
  }
  if (!body.contains("path")) {
    return Error::invalid(
        "add-device: path= is required, e.g. path=/sys/bus/pci/devices/0000:01:00.0");
  }
  return request_for("vm.add-device", dump_json(body));
}

Result<RemoteRequest> add_disk_request(std::string_view spec) {
  KEEL_TRY(auto items, split_spec("add-disk", spec, "path=/var/lib/keel/root.img,readonly=on"));
  nlohmann::json body = nlohmann::json::object();
  for (const auto& [key, value] : items) {
    if (key == "path" || key == "id") {
      body[key] = value;
    } else if (key == "readonly" || key == "direct") {
      KEEL_TRY(body[key], on_off("add-disk", key, value));
    } else if (key == "num_queues" || key == "queue_size") {
      const auto number = digits(value, 5);
      if (!number) {
        return Error::invalid("add-disk: " + key + "=" + value + " is not a number");
      }
      body[key] = *number;
    } else {
      return Error::invalid("add-disk: unknown key \"" + key +
                            "\" (known: path, readonly, direct, num_queues, queue_size, id)");
    }
  }
  if (!body.contains("path")) {
    return Error::invalid("add-disk: path= is required, e.g. path=/var/lib/keel/root.img");
  }
  return request_for("vm.add-disk", dump_json(body));
}

Result<RemoteRequest> add_net_request(std::string_view spec) {
  KEEL_TRY(auto items, split_spec("add-net", spec, "tap=tap0,ip=192.168.249.1,mask=255.255.255.0"));
  nlohmann::json body = nlohmann::json::object();
  std::vector<int> fds;
  for (const auto& [key, value] : items) {
    if (key == "tap" || key == "ip" || key == "mask" || key == "mac" || key == "id") {
      body[key] = value;
    } else if (key == "fd") {
      const auto fd = digits(value, 9);
      if (!fd || *fd < 3) {
        return Error::invalid("add-net: fd=" + value +
                              " is not the number of an open TAP fd of keel-remote's (3 or more)");
      }
      fds.push_back(static_cast<int>(*fd));
      body["fds"] = nlohmann::json::array({fds.back()});
    } else if (key == "num_queues" || key == "queue_size") {
      const auto number = digits(value, 5);
      if (!number) {
        return Error::invalid("add-net: " + key + "=" + value + " is not a number");
      }
      body[key] = *number;
    } else {
      return Error::invalid("add-net: unknown key \"" + key +
                            "\" (known: tap, fd, ip, mask, mac, num_queues, queue_size, id)");
    }
  }
  if (body.contains("tap") == !fds.empty()) {
    return Error::invalid("add-net: give tap=NAME (keel creates it when missing) or fd=N (an "
                          "open TAP of keel-remote's, passed to keel), one of them");
  }
  RemoteRequest request = request_for("vm.add-net", dump_json(body));
  request.fds = std::move(fds);
  return request;
}

Result<RemoteRequest> add_vsock_request(std::string_view spec) {
  KEEL_TRY(auto items, split_spec("add-vsock", spec, "cid=3,socket=/run/keel.vsock"));
  nlohmann::json body = nlohmann::json::object();
  for (const auto& [key, value] : items) {
    if (key == "socket" || key == "id") {
      body[key] = value;
    } else if (key == "cid") {
      const auto cid = digits(value, 10);
      if (!cid) {
        return Error::invalid("add-vsock: cid=" + value + " is not a number, e.g. cid=3");
      }
      body[key] = *cid;
    } else {
      return Error::invalid("add-vsock: unknown key \"" + key + "\" (known: cid, socket, id)");
    }
  }
  if (!body.contains("cid") || !body.contains("socket")) {
    return Error::invalid("add-vsock: cid= and socket= are required, e.g. "
                          "cid=3,socket=/run/keel.vsock");
  }
  return request_for("vm.add-vsock", dump_json(body));
}

Result<RemoteRequest> add_fs_request(std::string_view spec) {
  KEEL_TRY(auto items, split_spec("add-fs", spec, "tag=myfs,socket=/run/virtiofsd.sock"));
  nlohmann::json body = nlohmann::json::object();
  for (const auto& [key, value] : items) {
    if (key == "tag" || key == "socket" || key == "id") {
      body[key] = value;
    } else if (key == "num_queues" || key == "queue_size") {
      const auto number = digits(value, 5);
      if (!number) {
        return Error::invalid("add-fs: " + key + "=" + value + " is not a number");
      }
      body[key] = *number;
    } else {
      return Error::invalid("add-fs: unknown key \"" + key +
                            "\" (known: tag, socket, num_queues, queue_size, id)");
    }
  }
  if (!body.contains("tag") || !body.contains("socket")) {
    return Error::invalid("add-fs: tag= and socket= are required, e.g. "
                          "tag=myfs,socket=/run/virtiofsd.sock");
  }
  return request_for("vm.add-fs", dump_json(body));
}

RemoteRequest remove_device_request(const std::string& id) {
  return request_for("vm.remove-device", dump_json(nlohmann::json{{"id", id}}));
}

Result<RemoteRequest> resize_request(const std::string& memory, const std::string& cpus) {
  nlohmann::json body = nlohmann::json::object();
  if (!memory.empty()) {
    KEEL_TRY_WRAP(const std::uint64_t bytes, parse_size(memory), "resize --memory");
    body["desired_ram"] = bytes;
  }
  if (!cpus.empty()) {
    const auto n = digits(cpus, 5);
    if (!n) {
      return Error::invalid("resize --cpus: " + cpus + " is not a number of vCPUs");
    }
    body["desired_vcpus"] = *n;
  }
  if (body.empty()) {
    return Error::invalid("resize: give --memory SIZE (e.g. 1G) or --cpus N");
  }
  return request_for("vm.resize", dump_json(body));
}

}  // namespace keel::api
