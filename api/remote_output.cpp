#include "api/remote_output.hpp"

#include <algorithm>
#include <sstream>
#include <utility>
#include <vector>

#include "api/json_text.hpp"
#include "base/hex.hpp"
#include "base/size.hpp"

namespace keel::api {
namespace {

using nlohmann::json;

const json& member(const json& object, std::string_view key) {
  static const json kNull;
  if (!object.is_object()) {
    return kNull;
  }
  const auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}

// A scalar for display: strings bare, numbers and booleans as JSON, null as `null_text`.
std::string text(const json& value, std::string_view null_text = "?") {
  if (value.is_string()) {
    return value.get<std::string>();
  }
  if (value.is_null()) {
    return std::string(null_text);
  }
  if (value.is_boolean() || value.is_number()) {
    return dump_json(value);
  }
  return "?";
}

std::string bytes(const json& value) {
  if (!value.is_number_unsigned()) {
    return text(value);
  }
  return format_size(value.get<std::uint64_t>());
}

std::string yes_no(const json& value, std::string_view null_text) {
  if (value.is_boolean()) {
    return value.get<bool>() ? "yes" : "NO";
  }
  return text(value, null_text);
}

void row(std::ostringstream& out, std::string_view indent, std::string_view label,
         const std::string& value) {
  out << indent << label;
  for (std::size_t i = label.size(); i < 16; ++i) {
    out << ' ';
  }
  out << ' ' << value << '\n';
}

void table(std::ostringstream& out, const std::vector<std::vector<std::string>>& rows,
           std::string_view indent) {
  std::vector<std::size_t> widths;
  for (const auto& r : rows) {
    widths.resize(std::max(widths.size(), r.size()));
    for (std::size_t i = 0; i < r.size(); ++i) {
      widths[i] = std::max(widths[i], r[i].size());
    }
  }
  for (const auto& r : rows) {
    std::string line(indent);
    for (std::size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) {
        line += std::string(widths[i] - r[i].size() + 2, ' ');
      }
    }
    out << line << '\n';
  }
}

std::string failed_maps(const json& failed) {
  if (!failed.is_object()) {
    return text(failed);
  }
  std::string out;
  for (const auto& [kind, count] : failed.items()) {
    if (count.is_number_unsigned() && count.get<std::uint64_t>() == 0) {
      continue;
    }
    out += (out.empty() ? "" : ", ") + kind + "=" + text(count);
  }
  return out.empty() ? "none" : out;
}

std::string iova_ranges(const json& ranges) {
  if (!ranges.is_array()) {
    return text(ranges);
  }
  std::string out;
  for (const json& range : ranges) {
    const json& start = member(range, "start");
    const json& end = member(range, "end");
    const std::string item =
        start.is_number_unsigned() && end.is_number_unsigned()
            ? hex(start.get<std::uint64_t>()) + "-" + hex(end.get<std::uint64_t>())
            : "?";
    out += (out.empty() ? "" : ", ") + item;
  }
  return out.empty() ? "none reported" : out;
}

void dma_block(std::ostringstream& out, const json& report, std::size_t index) {
  std::string devices;
  const json& list = member(report, "devices");
  if (list.is_array()) {
    for (const json& device : list) {
      std::string name = text(member(device, "id"), "?") + " (host " +
                         text(member(device, "host_bdf")) + ", guest " +
                         text(member(device, "guest_bdf"), "not assigned") + ")";
      devices += (devices.empty() ? "" : ", ") + name;
    }
  }
  out << "  container " << index << ": " << (devices.empty() ? "no devices" : devices) << '\n';
  const std::string_view in = "    ";
  row(out, in, "backend", text(member(report, "backend_reason"), text(member(report, "backend"))));
  row(out, in, "mode",
      text(member(report, "mode")) + " (requested " + text(member(report, "requested_mode")) + ")");
  row(out, in, "reason", text(member(report, "reason")));
  const std::string source = text(member(report, "avail_source"));
  row(out, in, "avail at open",
      source == "capability"
          ? text(member(report, "avail_at_open")) + " entries (capability)"
          : source == "absent"    ? "absent (kernel < 5.10: budget unknown)"
          : source == "iommufd"   ? "no entry count (iommufd)"
                                  : source);
  const json& memlock = member(report, "memlock");
  row(out, in, "memlock",
      (member(memlock, "cap_ipc_lock") == true ? std::string("CAP_IPC_LOCK (no limit)")
           : member(memlock, "limit_bytes").is_null() ? std::string("unlimited")
                                                       : bytes(member(memlock, "limit_bytes"))) +
          ", charged to the " + text(member(memlock, "charged_to"), "process") + ", plan pins " +
          bytes(member(memlock, "pinned_bytes_planned")));
  row(out, in, "binding limit", text(member(report, "binding_limit"), "none"));
  row(out, in, "avail now", text(member(report, "avail_now"), "not re-read"));
  row(out, in, "entries used",
      text(member(report, "entries_used")) + " (peak " + text(member(report, "peak_entries")) +
          ", planned " + text(member(report, "planned_entries")) + ")");
  row(out, in, "consistent",
      yes_no(member(report, "consistent"), "cannot be checked (no capability)"));
  row(out, in, "mapped", bytes(member(report, "mapped_bytes")));
  row(out, in, "failed maps", failed_maps(member(report, "failed_maps")));
  if (!member(report, "low_water").is_null()) {  // lazy: the guest's mappings and the reserve
    row(out, in, "guest mappings", text(member(report, "guest_mappings")));
    row(out, in, "low water", text(member(report, "low_water")) + " entries kept free");
  }
  row(out, in, "IOVA ranges", iova_ranges(member(report, "iova_ranges")));
}

}  // namespace

std::string format_ping(const json& ping) {
  return "keel " + text(member(ping, "version")) + " (pid " + text(member(ping, "pid")) + ")\n";
}

std::string format_info(const json& info) {
  std::ostringstream out;
  const json& config = member(info, "config");
  const json& memory = member(config, "memory");
  const json& payload = member(config, "payload");
  row(out, "", "state", text(member(info, "state")));
  row(out, "", "vCPUs", text(member(member(config, "cpus"), "boot_vcpus")));
  std::string mem = bytes(member(memory, "size"));
  if (member(memory, "shared") == true) {
    mem += ", shared";
  }
  if (member(memory, "hugepages") == true) {
    mem += ", hugepages";
  }
  row(out, "", "memory", mem);
  row(out, "", "kernel", text(member(payload, "kernel")));
  row(out, "", "initramfs", text(member(payload, "initramfs"), "none"));
  row(out, "", "cmdline", text(member(payload, "cmdline")));
  const json& serial = member(config, "serial");
  row(out, "", "serial",
      text(member(serial, "mode")) +
          (member(serial, "file").is_string() ? " " + text(member(serial, "file")) : ""));

  const json& devices = member(config, "devices");
  const json& tree = member(info, "device_tree");
  if (devices.is_array() && !devices.empty()) {
    out << "devices\n";
    std::vector<std::vector<std::string>> rows{
        {"ID", "GUEST BDF", "DMA MAPPING", "BACKEND", "IOMMU", "PATH"}};
    for (const json& device : devices) {
      const std::string id = text(member(device, "id"));
      rows.push_back({id, text(member(member(tree, id), "pci_bdf"), "-"),
                      text(member(device, "dma_mapping")), text(member(device, "backend"), "auto"),
                      member(device, "iommu") == true ? "on" : "off", text(member(device, "path"))});
    }
    table(out, rows, "  ");
  } else {
    row(out, "", "devices", "none");
  }
  const json& dma = member(info, "dma");
  if (dma.is_array() && !dma.empty()) {
    out << "DMA (" << dma.size() << (dma.size() == 1 ? " container)\n" : " containers)\n");
    for (std::size_t i = 0; i < dma.size(); ++i) {
      dma_block(out, dma[i], i);
    }
  }
  return out.str();
}

std::string format_counters(const json& counters) {
  if (!counters.is_object() || counters.empty()) {
    return "no counters\n";
  }
  std::ostringstream out;
  std::vector<std::vector<std::string>> rows{{"DEVICE", "COUNTER", "VALUE"}};
  for (const auto& [device, values] : counters.items()) {
    if (!values.is_object()) {
      rows.push_back({device, "?", "?"});
      continue;
    }
    for (const auto& [name, value] : values.items()) {
      rows.push_back({device, name, text(value)});
    }
  }
  table(out, rows, "");
  return out.str();
}

std::string format_added_device(const json& device) {
  const json& bdf = member(device, "bdf");
  return "added device " + text(member(device, "id")) +
         (bdf.is_string() ? " at " + text(bdf) : std::string(" (guest address assigned at boot)")) +
         "\n";
}

std::string format_done(std::string_view command) {
  static constexpr std::pair<std::string_view, std::string_view> kDone[] = {
      {"create", "VM created"},
      {"boot", "VM booted"},
      {"shutdown", "VM shut down"},
      {"reboot", "VM rebooted"},
      {"pause", "VM paused"},
      {"resume", "VM resumed"},
      {"delete", "VM deleted"},
      {"remove-device", "device removed (a running guest is asked to eject it first)"},
      {"add-device", "device added; it gets its guest address at vm.boot"},
      {"add-disk", "disk added; it gets its guest address at vm.boot"},
      {"add-net", "network link added; it gets its guest address at vm.boot"},
      {"add-vsock", "vsock device added; it gets its guest address at vm.boot"},
      {"add-fs", "virtio-fs share added; it gets its guest address at vm.boot"},
      {"resize", "resize asked of the guest (vm.info's memory_actual_size follows)"},
      {"shutdown-vmm", "keel is shutting down"},
      {"power-button", "power button pressed; the guest decides what follows"},
      {"nmi", "NMI sent to every vCPU"},
  };
  for (const auto& [name, done] : kDone) {
    if (name == command) {
      return std::string(done) + "\n";
    }
  }
  return "done\n";
}

std::string format_error(unsigned status, const std::string& body) {
  auto parsed = parse_json_text(body);
  if (parsed.ok() && member(*parsed, "message").is_string()) {
    return member(*parsed, "message").get<std::string>();
  }
  if (!body.empty()) {
    return excerpt(body, 512);
  }
  return "HTTP status " + std::to_string(status);
}

}  // namespace keel::api
