#include "api/remote_cli.hpp"

#include <CLI/CLI.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <iterator>
#include <vector>

#include "api/api_client.hpp"
#include "api/json_text.hpp"
#include "api/remote_command.hpp"
#include "api/remote_output.hpp"
#include "api/request_parser.hpp"
#include "base/unique_fd.hpp"
#include "base/version.hpp"

namespace keel::api {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitApiError = 1;
constexpr int kExitUsage = 2;

// A VmConfig from a regular file or standard input ("-"), no larger than the API takes: a FIFO
// or a device given as the file would block or never end.
Result<std::string> read_config_file(const std::string& path) {
  const std::string what = path == "-" ? std::string("standard input") : path;
  UniqueFd owned;
  int fd = STDIN_FILENO;
  if (path != "-") {
    owned = UniqueFd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    if (!owned) {
      return Error::opening_user_path("create: cannot read " + path);
    }
    struct stat st {};
    if (::fstat(owned.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return Error::invalid("create: " + path + " is not a regular file; give a VmConfig JSON file, "
                            "or - for standard input");
    }
    fd = owned.get();
  }
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Error::from_errno("create: read " + what);
    }
    if (n == 0) {
      return text;
    }
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > kMaxBodyBytes) {
      return Error::invalid("create: " + what + " is larger than the API takes (" +
                            std::to_string(kMaxBodyBytes) + " bytes)");
    }
  }
}

// Prints a 2xx answer for `command`.
void print_success(const std::string& command, const ApiReply& reply, bool raw, std::ostream& out) {
  if (raw) {
    if (!reply.body.empty()) {
      out << reply.body << '\n';
    }
    return;
  }
  if (reply.body.empty()) {
    out << format_done(command);
    return;
  }
  auto json = parse_json_text(reply.body);
  if (!json.ok()) {
    out << reply.body << '\n';
    return;
  }
  if (command == "ping") {
    out << format_ping(*json);
  } else if (command == "info") {
    out << format_info(*json);
  } else if (command == "counters") {
    out << format_counters(*json);
  } else if (command == "add-device") {
    out << format_added_device(*json);
  } else {
    out << reply.body << '\n';
  }
}

}  // namespace

int remote_main(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CLI::App app{"keel-remote: drive a running keel through its REST API on a Unix socket"};
  app.set_version_flag("--version", std::string("keel-remote ") + kVersion);
  app.require_subcommand(1);
  app.fallthrough();  // --api-socket and --json may follow the command too

  std::string socket_path;
  bool raw = false;
  double timeout_s = 120;
  app.add_option("--api-socket", socket_path, "The Unix socket keel serves its API on")->required();
  app.add_flag("--json", raw, "Print the API's JSON answer as it is");
  app.add_option("--timeout", timeout_s, "Seconds to wait for an answer (default 120)")
      ->check(CLI::Range(0.001, 86400.0));

  std::string config_file, device_spec, disk_spec, device_id;
  for (const char* name : {"ping", "boot", "info", "counters", "shutdown", "reboot", "pause",
                           "resume", "delete", "shutdown-vmm", "power-button", "nmi"}) {
    app.add_subcommand(name, std::string("vm/vmm operation ") + name);
  }
  app.get_subcommand("ping")->description("Check that keel answers (vmm.ping)");
  app.get_subcommand("boot")->description("Boot the created VM (vm.boot)");
  app.get_subcommand("info")->description(
      "The VM's state, configuration, devices and DMA budget (vm.info)");
  app.get_subcommand("counters")->description("Per-device counters (vm.counters)");
  app.get_subcommand("shutdown")->description("Shut the VM down (vm.shutdown)");
  app.get_subcommand("reboot")->description("Reboot the VM (vm.reboot)");
  app.get_subcommand("pause")->description("Pause the VM's vCPUs (vm.pause)");
  app.get_subcommand("resume")->description("Resume a paused VM (vm.resume)");
  app.get_subcommand("delete")->description("Delete the VM (vm.delete)");
  app.get_subcommand("shutdown-vmm")->description("End keel itself (vmm.shutdown)");
  app.get_subcommand("power-button")
      ->description("Press the VM's ACPI power button; the guest decides what follows "
                    "(vm.power-button)");
  app.get_subcommand("nmi")->description(
      "Send a non-maskable interrupt to every vCPU of the VM (vm.nmi)");
  app.add_subcommand("create", "Create a VM from a VmConfig JSON file, - for stdin (vm.create)")
      ->add_option("file", config_file, "The VmConfig JSON file")
      ->required();
  app.add_subcommand(
         "add-device",
         "Pass a PCI function through (vm.add-device): "
         "path=/sys/bus/pci/devices/DDDD:BB:DD.F[,id=NAME][,dma_mapping=auto|eager|lazy]")
      ->add_option("spec", device_spec, "path=...[,id=...][,dma_mapping=...]")
      ->required();
  app.add_subcommand("add-disk",
                     "Add a virtio-blk disk (vm.add-disk): "
                     "path=FILE[,readonly=on][,direct=on][,num_queues=N][,queue_size=N][,id=NAME]")
      ->add_option("spec", disk_spec, "path=...[,readonly=on][,id=...]")
      ->required();
  std::string net_spec;
  app.add_subcommand("add-net",
                     "Add a virtio-net link over a TAP (vm.add-net): "
                     "tap=NAME[,ip=IP,mask=MASK][,mac=MAC][,queue_size=N][,id=NAME]")
      ->add_option("spec", net_spec, "tap=...[,ip=...,mask=...][,id=...]")
      ->required();
  std::string vsock_spec;
  app.add_subcommand("add-vsock",
                     "Add the virtio-vsock device (vm.add-vsock): cid=N,socket=PATH[,id=NAME]")
      ->add_option("spec", vsock_spec, "cid=...,socket=...[,id=...]")
      ->required();
  std::string fs_spec;
  app.add_subcommand("add-fs",
                     "Add a virtio-fs share served by virtiofsd (vm.add-fs): "
                     "tag=TAG,socket=PATH[,num_queues=N][,queue_size=N][,id=NAME]")
      ->add_option("spec", fs_spec, "tag=...,socket=...[,id=...]")
      ->required();
  app.add_subcommand("remove-device",
                     "Remove a device, disk, link, share or vsock by id (vm.remove-device)")
      ->add_option("id", device_id, "The device's id")
      ->required();
  std::string resize_memory, resize_cpus;
  auto* resize = app.add_subcommand(
      "resize", "Resize a running VM (vm.resize): --memory SIZE is boot RAM plus hot-plugged memory");
  resize->add_option("--memory", resize_memory, "The guest's memory, e.g. 1G");
  resize->add_option("--cpus", resize_cpus, "The number of vCPUs");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e, out, err) == 0 ? kExitOk : kExitUsage;
  }

  const std::string command = app.get_subcommands().front()->get_name();
  Result<RemoteRequest> request = Error::invalid("no command");
  if (command == "create") {
    auto text = read_config_file(config_file);
    if (!text.ok()) {
      err << "keel-remote: " << text.error().message() << '\n';
      return kExitApiError;
    }
    request = create_request(std::move(text).value());
  } else if (command == "add-device") {
    request = add_device_request(device_spec);
  } else if (command == "add-disk") {
    request = add_disk_request(disk_spec);
  } else if (command == "add-net") {
    request = add_net_request(net_spec);
  } else if (command == "add-vsock") {
    request = add_vsock_request(vsock_spec);
  } else if (command == "add-fs") {
    request = add_fs_request(fs_spec);
  } else if (command == "remove-device") {
    request = remove_device_request(device_id);
  } else if (command == "resize") {
    request = resize_request(resize_memory, resize_cpus);
  } else {
    request = plain_request(command);
  }
  if (!request.ok()) {
    err << "keel-remote: " << request.error().message() << '\n';
    return kExitUsage;
  }

  const auto timeout = std::chrono::milliseconds(static_cast<long long>(timeout_s * 1000));
  auto reply = api_request(socket_path, request->method, request->target, request->body, timeout,
                           request->fds);
  if (!reply.ok()) {
    err << "keel-remote: " << reply.error().message() << '\n';
    return kExitApiError;
  }
  if (reply->status < 200 || reply->status > 299) {
    if (raw && !reply->body.empty()) {
      out << reply->body << '\n';
    }
    err << "keel-remote: " << command << ": " << format_error(reply->status, reply->body)
        << " (HTTP " << reply->status << ")\n";
    return kExitApiError;
  }
  print_success(command, *reply, raw, out);
  return kExitOk;
}

}  // namespace keel::api
