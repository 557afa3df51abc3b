#include "vmm/cli.hpp"

#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <map>
#include <sstream>

#include <CLI/CLI.hpp>

#include "base/version.hpp"

namespace keel::vmm {
namespace {

using Options = std::map<std::string, std::string>;

// Splits "boot=2,max=4" into keys and values; every key must be one of `allowed`.
Result<Options> split_options(const std::string& flag, const std::string& text,
                              std::initializer_list<const char*> allowed) {
  Options out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Error::invalid(flag + ": \"" + item + "\" is not key=value");
    }
    std::string key = item.substr(0, eq);
    if (std::find_if(allowed.begin(), allowed.end(), [&](const char* a) { return key == a; }) ==
        allowed.end()) {
      std::string names;
      for (const char* a : allowed) {
        names += names.empty() ? a : std::string(", ") + a;
      }
      return Error::invalid(flag + ": unknown option \"" + key + "\" (known: " + names + ")");
    }
    if (out.count(key) != 0) {
      return Error::invalid(flag + ": \"" + key + "\" given twice");
    }
    out[key] = item.substr(eq + 1);
  }
  if (out.empty()) {
    return Error::invalid(flag + ": empty value");
  }
  return out;
}

Result<bool> parse_on_off(const std::string& flag, const std::string& key, const std::string& v) {
  if (v == "on" || v == "true") {
    return true;
  }
  if (v == "off" || v == "false") {
    return false;
  }
  return Error::invalid(flag + ": " + key + "=" + v + " must be on or off");
}

Status apply_cpus(const std::string& text, VmConfig& config) {
  KEEL_TRY(auto opts, split_options("--cpus", text, {"boot", "max"}));
  auto count = [&opts](const char* key, bool required) -> Result<std::uint32_t> {
    if (opts.count(key) == 0) {
      if (!required) {
        return 0U;
      }
      return Error::invalid(std::string("--cpus: ") + key + " is missing; give " + key +
                            "=N, e.g. boot=2");
    }
    const std::string& v = opts[key];
    if (v.empty() || v.size() > 4 || !std::all_of(v.begin(), v.end(), ::isdigit)) {
      return Error::invalid(std::string("--cpus: ") + key + "=" + v + " is not a number of vCPUs");
    }
    const unsigned long n = std::stoul(v);
    if (n == 0 || n > kMaxVcpus) {
      return Error::invalid(std::string("--cpus: ") + key + "=" + v + " is out of range; use 1 to " +
                            std::to_string(kMaxVcpus));
    }
    return static_cast<std::uint32_t>(n);
  };
  KEEL_TRY(config.boot_vcpus, count("boot", true));
  KEEL_TRY(config.max_vcpus, count("max", false));
  if (config.max_vcpus != 0 && config.max_vcpus < config.boot_vcpus) {
    return Error::invalid("--cpus: max=" + std::to_string(config.max_vcpus) + " is below boot=" +
                          std::to_string(config.boot_vcpus) + "; give max at least boot");
  }
  return ok_status();
}

Status apply_memory(const std::string& text, VmConfig& config) {
  KEEL_TRY(auto opts, split_options("--memory", text,
                                    {"size", "shared", "hugepages", "hotplug_method", "hotplug_size"}));
  if (opts.count("hotplug_method") != 0) {
    const std::string& method = opts["hotplug_method"];
    if (method != "virtio-mem" && method != "acpi") {
      return Error::invalid("--memory: hotplug_method=" + method +
                            " is not one Keel has; give hotplug_method=virtio-mem or acpi");
    }
    config.memory_hotplug_method =
        method == "acpi" ? MemoryHotplug::kAcpi : MemoryHotplug::kVirtioMem;
  }
  if (opts.count("hotplug_size") != 0) {
    KEEL_TRY_WRAP(auto size, parse_size(opts["hotplug_size"]), "--memory hotplug_size");
    config.memory_hotplug_size = size;
  }
  if (opts.count("size") != 0) {
    KEEL_TRY_WRAP(auto size, parse_size((opts)["size"]), "--memory");
    if (size == 0) {
      return Error::invalid("--memory: size=0 gives the guest no RAM; use e.g. size=512M");
    }
    config.memory_size = size;
  }
  for (const char* key : {"shared", "hugepages"}) {
    if (opts.count(key) == 0) {
      continue;
    }
    KEEL_TRY(auto v, parse_on_off("--memory", key, (opts)[key]));
    (std::string(key) == "shared" ? config.memory_shared : config.memory_hugepages) = v;
  }
  return ok_status();
}

// --rng [src=PATH]: a virtio-rng device; cloud-hypervisor's default source is /dev/urandom.
Status apply_rng(const std::string& text, VmConfig& config) {
  config.rng_source = "/dev/urandom";
  if (text.empty()) {
    return ok_status();
  }
  KEEL_TRY(auto opts, split_options("--rng", text, {"src"}));
  if (opts["src"].empty()) {
    return Error::invalid("--rng: src= is empty; give e.g. src=/dev/urandom");
  }
  config.rng_source = opts["src"];
  return ok_status();
}

Status apply_serial(const std::string& text, VmConfig& config) {
  if (text == "tty") {
    config.serial = SerialMode::kTty;
  } else if (text == "off" || text == "null") {
    config.serial = SerialMode::kOff;
  } else if (text.rfind("file=", 0) == 0 && text.size() > 5) {
    config.serial = SerialMode::kFile;
    config.serial_file = text.substr(5);
  } else {
    return Error::invalid("--serial: \"" + text + "\" is not tty, off or file=PATH");
  }
  return ok_status();
}

// A decimal number from 0 to `max` (no sign, nothing after it).
Result<std::uint64_t> parse_number(const std::string& flag, const std::string& key,
                                   const std::string& text, std::uint64_t max) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long value = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || text[0] == '-' || text[0] == '+' || errno != 0 ||
      value > max) {
    return Error::invalid(flag + ": " + key + "=" + text + " is not a number from 0 to " +
                          std::to_string(max));
  }
  return value;
}

Result<DeviceConfig> parse_device(const std::string& text) {
  KEEL_TRY(auto opts, split_options("--device", text,
                                    {"path", "id", "dma_mapping", "backend", "iommu", "dma_low_water"}));
  DeviceConfig device;
  device.path = (opts)["path"];
  if (device.path.empty()) {
    return Error::invalid("--device: path= is required, e.g. path=/sys/bus/pci/devices/0000:01:00.0");
  }
  while (device.path.size() > 1 && device.path.back() == '/') {
    device.path.pop_back();
  }
  device.id = opts.count("id") != 0 ? (opts)["id"] : device.path.substr(device.path.rfind('/') + 1);
  if (device.id.empty()) {
    return Error::invalid("--device: id= must not be empty");
  }
  if (opts.count("dma_mapping") != 0) {
    KEEL_TRY_WRAP(device.dma_mapping, vfio::parse_mapping_mode((opts)["dma_mapping"]),
                  "--device: dma_mapping");
  }
  if (opts.count("backend") != 0) {
    KEEL_TRY_WRAP(device.backend, vfio::parse_backend_choice((opts)["backend"]), "--device: backend");
  }
  if (opts.count("iommu") != 0) {
    const std::string& iommu = (opts)["iommu"];
    if (iommu == "on") {
      device.iommu = true;
    } else if (iommu != "off") {
      return Error::invalid("--device: iommu=" + iommu + " is not on or off");
    }
  }
  if (opts.count("dma_low_water") != 0) {
    KEEL_TRY(const auto entries,
             parse_number("--device", "dma_low_water", opts["dma_low_water"], 0xffffffffULL));
    device.dma_low_water = static_cast<std::uint32_t>(entries);
  }
  Status checked = check_device(device);
  if (!checked.ok()) {
    return checked.error().wrap("--device");
  }
  return device;
}

Result<std::uint16_t> parse_u16(const std::string& flag, const std::string& key,
                                const std::string& text) {
  KEEL_TRY(const auto value, parse_number(flag, key, text, 0xffff));
  return static_cast<std::uint16_t>(value);
}

// --disk path=FILE[,readonly=on][,direct=on][,num_queues=N][,queue_size=N][,id=NAME]
Result<DiskConfig> parse_disk(const std::string& text, std::size_t index) {
  KEEL_TRY(auto opts, split_options("--disk", text,
                                    {"path", "readonly", "direct", "num_queues", "queue_size", "id"}));
  DiskConfig disk;
  disk.path = opts["path"];
  disk.id = opts.count("id") != 0 ? opts["id"] : default_disk_id(index);
  for (const char* key : {"readonly", "direct"}) {
    if (opts.count(key) != 0) {
      KEEL_TRY(auto v, parse_on_off("--disk", key, opts[key]));
      (std::string(key) == "readonly" ? disk.readonly : disk.direct) = v;
    }
  }
  if (opts.count("num_queues") != 0) {
    KEEL_TRY(disk.num_queues, parse_u16("--disk", "num_queues", opts["num_queues"]));
  }
  if (opts.count("queue_size") != 0) {
    KEEL_TRY(disk.queue_size, parse_u16("--disk", "queue_size", opts["queue_size"]));
  }
  KEEL_TRY_STATUS_WRAP(check_disk(disk), "--disk");
  return disk;
}

// --fs tag=TAG,socket=PATH[,num_queues=N][,queue_size=N][,id=NAME]
Result<FsConfig> parse_fs(const std::string& text, std::size_t index) {
  KEEL_TRY(auto opts, split_options("--fs", text, {"tag", "socket", "num_queues", "queue_size", "id"}));
  if (opts.count("tag") == 0 || opts.count("socket") == 0) {
    return Error::invalid("--fs: give tag= and socket=, e.g. tag=myfs,socket=/run/virtiofsd.sock");
  }
  FsConfig fs;
  fs.tag = opts["tag"];
  fs.socket = opts["socket"];
  fs.id = opts.count("id") != 0 ? opts["id"] : default_fs_id(index);
  if (opts.count("num_queues") != 0) {
    KEEL_TRY(fs.num_queues, parse_u16("--fs", "num_queues", opts["num_queues"]));
  }
  if (opts.count("queue_size") != 0) {
    KEEL_TRY(fs.queue_size, parse_u16("--fs", "queue_size", opts["queue_size"]));
  }
  KEEL_TRY_STATUS_WRAP(check_fs(fs), "--fs");
  return fs;
}

// --vsock cid=N,socket=PATH[,id=NAME]
Result<VsockConfig> parse_vsock(const std::string& text) {
  KEEL_TRY(auto opts, split_options("--vsock", text, {"cid", "socket", "id"}));
  VsockConfig vsock;
  if (opts.count("cid") == 0 || opts.count("socket") == 0) {
    return Error::invalid("--vsock: give cid= and socket=, e.g. cid=3,socket=/run/keel.vsock");
  }
  KEEL_TRY(vsock.cid, parse_number("--vsock", "cid", opts["cid"], 0xffffffffULL));
  vsock.socket = opts["socket"];
  if (opts.count("id") != 0) {
    vsock.id = opts["id"];
  }
  KEEL_TRY_STATUS_WRAP(check_vsock(vsock), "--vsock");
  return vsock;
}

// --net tap=NAME|fd=N[,mac=..][,ip=..,mask=..][,num_queues=2][,queue_size=N][,id=NAME]
Result<NetConfig> parse_net(const std::string& text, std::size_t index) {
  KEEL_TRY(auto opts, split_options("--net", text,
                                    {"tap", "fd", "mac", "ip", "mask", "num_queues", "queue_size",
                                     "id"}));
  NetConfig net;
  net.tap = opts["tap"];
  net.mac = opts["mac"];
  net.ip = opts["ip"];
  net.mask = opts["mask"];
  net.id = opts.count("id") != 0 ? opts["id"] : default_net_id(index);
  if (opts.count("fd") != 0) {
    KEEL_TRY(auto fd, parse_u16("--net", "fd", opts["fd"]));
    if (fd < 3) {
      return Error::invalid("--net: fd=" + opts["fd"] +
                            " is standard input, output or error; give the fd of an open TAP");
    }
    net.fd = fd;
  }
  if (opts.count("num_queues") != 0) {
    KEEL_TRY(net.num_queues, parse_u16("--net", "num_queues", opts["num_queues"]));
  }
  if (opts.count("queue_size") != 0) {
    KEEL_TRY(net.queue_size, parse_u16("--net", "queue_size", opts["queue_size"]));
  }
  KEEL_TRY_STATUS_WRAP(check_net(net), "--net");
  return net;
}

}  // namespace

Result<CliRequest> parse_command_line(const std::vector<std::string>& args) {
  CliRequest request;
  VmConfig& config = request.config;
  CLI::App app{"keel: a KVM virtual machine monitor with DMA-budget-aware VFIO passthrough"};
  app.set_version_flag("--version", std::string("keel ") + kVersion);
  std::string cpus, memory, serial, kernel, initramfs, cmdline;
  app.add_option("--kernel", kernel, "Guest kernel: a bzImage, or an ELF vmlinux with a PVH note");
  app.add_option("--initramfs", initramfs, "Initramfs image loaded for the kernel");
  app.add_option("--cmdline", cmdline, "Kernel command line (default \"console=ttyS0\")");
  app.add_option("--cpus", cpus,
                 "boot=N[,max=M]: number of vCPUs (default 1); up to M by vm.resize "
                 "(needs --api-socket)");
  app.add_option("--memory", memory,
                 "size=SIZE[,shared=on][,hugepages=on][,hotplug_method=virtio-mem|acpi,hotplug_size=SIZE]: "
                 "guest RAM (default size=512M); hotplug_size: memory vm.resize plugs later");
  app.add_option("--serial", serial, "tty|file=PATH|off: where the guest's COM1 goes (default tty)");
  std::string rng;
  app.add_option("--rng", rng, "[src=PATH]: a virtio-rng device fed from PATH (default /dev/urandom)")
      ->expected(0, 1);
  std::vector<std::string> devices;
  app.add_option("--device", devices,
                 "path=/sys/bus/pci/devices/DDDD:BB:DD.F[,id=NAME][,dma_mapping=auto|eager|lazy]"
                 "[,backend=auto|type1|iommufd][,iommu=on][,dma_low_water=N]: pass a host PCI "
                 "function through with VFIO (repeatable); backend picks the kernel interface "
                 "(auto: iommufd where the host has it); iommu=on puts it behind the virtual "
                 "IOMMU, which lazy mapping needs; dma_low_water keeps N DMA entries free when "
                 "mapping lazily (type1: iommufd counts no entries)")
      ->take_all()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  std::vector<std::string> disks;
  app.add_option("--disk", disks,
                 "path=FILE[,readonly=on][,direct=on][,num_queues=N][,queue_size=N][,id=NAME]: "
                 "a virtio-blk disk over a raw image file (repeatable); the image is locked, so "
                 "two VMs cannot write it")
      ->take_all()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  std::vector<std::string> nets;
  app.add_option("--net", nets,
                 "tap=NAME|fd=N[,mac=MAC][,ip=IP,mask=MASK][,queue_size=N][,id=NAME]: a "
                 "virtio-net link over a TAP (repeatable); keel creates the TAP when it is "
                 "missing, and gives its host side ip/mask when given")
      ->take_all()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  std::vector<std::string> shares;
  app.add_option("--fs", shares,
                 "tag=TAG,socket=PATH[,num_queues=N][,queue_size=N][,id=NAME]: a virtio-fs "
                 "share served by a vhost-user back end listening on PATH, e.g. virtiofsd "
                 "(repeatable; needs --memory shared=on); the guest mounts it with "
                 "mount -t virtiofs TAG DIR")
      ->take_all()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  std::string vsock;
  app.add_option("--vsock", vsock,
                 "cid=N,socket=PATH[,id=NAME]: a virtio-vsock device; the host connects to "
                 "the Unix socket PATH and writes \"CONNECT <port>\\n\", the guest's connections "
                 "to CID 2 port P reach PATH_P");
  app.add_flag("--no-reboot", config.exit_on_reboot,
               "Exit when the guest reboots instead of restarting it");
  std::string api_socket;
  app.add_option("--api-socket", api_socket,
                 "path=PATH: serve the REST API on this Unix socket (mode 0600)");
  app.add_option("--event-monitor", request.event_monitor,
                 "path=FILE|fd=N: one JSON object per line for each VMM, VM and DMA-budget event");
  std::string seccomp = "true";
  app.add_option("--seccomp", seccomp,
                 "true|log|false: per-thread system call filters (default true; log only "
                 "reports calls outside the lists, to the kernel's audit log)");
  app.add_flag("-v", request.verbosity, "More log output (-v info, -vv debug); quiet by default");

  // "--kernel=" with nothing after the '=' would take the next argument as its value.
  for (const std::string& arg : args) {
    if (arg.size() > 3 && arg.rfind("--", 0) == 0 && arg.back() == '=' &&
        arg.find('=') == arg.size() - 1) {
      return Error::invalid(arg.substr(0, arg.size() - 1) + ": the value after '=' is empty");
    }
  }
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  std::ostringstream out, err;
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp& e) {
    request.exit_now = true;
    request.exit_code = app.exit(e);
    return request;
  } catch (const CLI::CallForVersion& e) {
    request.exit_now = true;
    request.exit_code = app.exit(e);
    return request;
  } catch (const CLI::ParseError& e) {
    return Error::invalid(e.what());
  }

  KEEL_TRY(auto seccomp_mode, parse_seccomp_mode(seccomp));
  request.seccomp = seccomp_mode;
  if (!cpus.empty()) {
    KEEL_TRY_STATUS(apply_cpus(cpus, config));
  }
  if (!memory.empty()) {
    KEEL_TRY_STATUS(apply_memory(memory, config));
  }
  if (!serial.empty()) {
    KEEL_TRY_STATUS(apply_serial(serial, config));
  }
  if (app.count("--rng") != 0) {
    KEEL_TRY_STATUS(apply_rng(rng, config));
  }
  for (const std::string& text : devices) {
    KEEL_TRY(auto device, parse_device(text));
    for (const DeviceConfig& other : config.devices) {
      if (other.path == device.path) {
        return Error::invalid("--device: " + device.path + " is given twice");
      }
      if (other.id == device.id) {
        return Error::invalid("--device: id \"" + device.id + "\" is used twice");
      }
    }
    config.devices.push_back(std::move(device));
  }
  for (const std::string& text : disks) {
    KEEL_TRY(auto disk, parse_disk(text, config.disks.size()));
    config.disks.push_back(std::move(disk));
  }
  for (const std::string& text : nets) {
    KEEL_TRY(auto net, parse_net(text, config.nets.size()));
    config.nets.push_back(std::move(net));
  }
  for (const std::string& text : shares) {
    KEEL_TRY(auto fs, parse_fs(text, config.fs.size()));
    config.fs.push_back(std::move(fs));
  }
  if (app.count("--vsock") != 0) {
    KEEL_TRY(config.vsock, parse_vsock(vsock));
  }
  for (const char* name : {"--kernel", "--initramfs", "--api-socket", "--event-monitor"}) {
    if (app.count(name) != 0 && app[name]->as<std::string>().empty()) {
      return Error::invalid(std::string(name) + ": the value is empty");
    }
  }
  if (!api_socket.empty()) {
    request.api_socket = api_socket.rfind("path=", 0) == 0 ? api_socket.substr(5) : api_socket;
    if (request.api_socket.empty()) {
      return Error::invalid("--api-socket: path= is empty");
    }
    if (request.api_socket.size() >= sizeof(sockaddr_un::sun_path)) {
      return Error::invalid("--api-socket: the path is " + std::to_string(request.api_socket.size()) +
                            " bytes; a Unix socket path takes at most " +
                            std::to_string(sizeof(sockaddr_un::sun_path) - 1) +
                            " (use a shorter directory)");
    }
  }
  if (possible_vcpus(config) > config.boot_vcpus && request.api_socket.empty()) {
    return Error::invalid("--cpus: max=" + std::to_string(config.max_vcpus) +
                          " above boot needs --api-socket: only vm.resize plugs vCPUs");
  }
  if (kernel.empty()) {
    if (!initramfs.empty() || !cmdline.empty()) {
      return Error::invalid("--initramfs and --cmdline need --kernel");
    }
    if (request.api_socket.empty()) {
      return Error::invalid("no payload: give --kernel PATH, or --api-socket path=PATH to wait for vm.create (see keel --help)");
    }
    request.has_payload = false;
    return request;
  }
  config.kernel = kernel;
  if (!initramfs.empty()) {
    config.initramfs = initramfs;
  }
  if (!cmdline.empty()) {
    config.cmdline = cmdline;
  }
  // The rules every configuration follows, checked here so that a bad one is a usage error.
  KEEL_TRY_STATUS(check_vm(config));
  return request;
}

}  // namespace keel::vmm
