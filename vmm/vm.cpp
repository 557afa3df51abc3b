#include "vmm/vm.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/hex.hpp"
#include "base/log.hpp"
#include "base/sole_owner.hpp"
#include "base/size.hpp"
#include "devices/acpi_pm.hpp"
#include "devices/i8042.hpp"
#include "devices/virtio/virtio_blk.hpp"
#include "devices/virtio/virtio_net.hpp"
#include "devices/virtio/virtio_fs.hpp"
#include "devices/virtio/virtio_rng.hpp"
#include "devices/virtio/virtio_vsock.hpp"
#include "memory/layout.hpp"
#include "vmm/boot/acpi.hpp"
#include "vmm/boot/cpu_state.hpp"
#include "vmm/boot/payload.hpp"
#include "vmm/cpuid.hpp"
#include "vmm/irq_line.hpp"
#include "vmm/reset_vector.hpp"

namespace keel::vmm {
namespace {

namespace layout = keel::memory::layout;

// Intel VMX needs a TSS (3 pages) and an identity-map page below 4 GiB, outside RAM and MMIO.
constexpr std::uint64_t kIdentityMapAddr = 0xfffb'c000;
constexpr std::uint64_t kTssAddr = 0xfffb'd000;

// MSR indices (arch/x86/include/asm/msr-index.h).
constexpr std::uint32_t kMsrIa32Tsc = 0x10;
constexpr std::uint32_t kMsrSysenterCs = 0x174;
constexpr std::uint32_t kMsrSysenterEsp = 0x175;
constexpr std::uint32_t kMsrSysenterEip = 0x176;
constexpr std::uint32_t kMsrMiscEnable = 0x1a0;
constexpr std::uint32_t kMsrMtrrDefType = 0x2ff;
constexpr std::uint32_t kMsrStar = 0xc000'0081;
constexpr std::uint32_t kMsrLstar = 0xc000'0082;
constexpr std::uint32_t kMsrCstar = 0xc000'0083;
constexpr std::uint32_t kMsrSyscallMask = 0xc000'0084;
constexpr std::uint32_t kMsrKernelGsBase = 0xc000'0102;
constexpr std::uint64_t kMiscEnableFastString = 1;
constexpr std::uint64_t kMtrrEnableWriteBack = (1U << 11) | 6;

// Local APIC LVT registers and delivery modes, for LINT0 = ExtINT and LINT1 = NMI as a BIOS sets.
constexpr std::size_t kApicLvtLint0 = 0x350;
constexpr std::size_t kApicLvtLint1 = 0x360;
constexpr std::uint32_t kApicDeliveryExtInt = 7U << 8;
constexpr std::uint32_t kApicDeliveryNmi = 4U << 8;

std::vector<kvm_msr_entry> boot_msrs() {
  std::vector<kvm_msr_entry> msrs;
  auto add = [&](std::uint32_t index, std::uint64_t data) {
    kvm_msr_entry e{};
    e.index = index;
    e.data = data;
    msrs.push_back(e);
  };
  add(kMsrSysenterCs, 0);
  add(kMsrSysenterEsp, 0);
  add(kMsrSysenterEip, 0);
  add(kMsrStar, 0);
  add(kMsrCstar, 0);
  add(kMsrKernelGsBase, 0);
  add(kMsrSyscallMask, 0);
  add(kMsrLstar, 0);
  add(kMsrIa32Tsc, 0);
  add(kMsrMiscEnable, kMiscEnableFastString);
  add(kMsrMtrrDefType, kMtrrEnableWriteBack);
  return msrs;
}

void set_lvt(kvm_lapic_state& state, std::size_t reg, std::uint32_t delivery) {
  std::uint32_t value = 0;
  std::memcpy(&value, state.regs + reg, sizeof value);
  value = (value & ~0x700U) | delivery;
  std::memcpy(state.regs + reg, &value, sizeof value);
}

}  // namespace

// Guest RAM takes the first KVM memory slots, one per region; devices' slots follow.
Vm::Vm(memory::GuestMemory memory, KvmVm kvm_vm, EventFd exit_event, EventFd hotplug_event,
       SeccompMode seccomp, bool acpi_events)
    : memory_(std::move(memory)),
      kvm_vm_(std::move(kvm_vm)),
      exit_event_(std::move(exit_event)),
      memory_slots_(kvm_vm_, static_cast<std::uint32_t>(memory_.regions().size() +
                                                        (memory_.hotplug_region() ? 1 : 0))),
      seccomp_(seccomp),
      acpi_events_(acpi_events),
      hotplug_event_(std::move(hotplug_event)) {}

Vm::~Vm() {
  stop();
  // The virtual IOMMU goes first (it maps through the passthrough containers); then the
  // passthrough devices leave the buses and their containers unmap guest RAM, while the buses
  // and the memory they refer to still exist.
  viommu_.reset();
  passthrough_.reset();
  for (const VirtioFunction& v : virtio_) {
    (void)segment(v.segment).unplug(v.slot);  // its own segment's slot
  }
  mem_ = nullptr;
  mem_transport_.reset();  // the last reference goes with virtio_, while the platforms exist
  virtio_.clear();
  segments_.clear();
  platform_.reset();
}

pci::Platform& Vm::segment(std::uint16_t segment) {
  return segment == 0 ? *platform_ : *segments_.at(segment - 1);
}

const std::vector<Passthrough::Passed>& Vm::passthrough_devices() const {
  static const std::vector<Passthrough::Passed> kNone;
  return passthrough_ ? passthrough_->devices() : kNone;
}

std::vector<vfio::DmaReport> Vm::dma_reports() const {
  if (!passthrough_) {
    return {};
  }
  // Live numbers when the kernel answers; the last known ones (and the error logged) if not.
  auto fresh = passthrough_->refresh_dma_reports();
  if (!fresh.ok()) {
    log::warn("vm", "DMA_AVAIL re-read failed", {{"error", fresh.error().message()}});
    return passthrough_->dma_reports();
  }
  return std::move(fresh).value();
}

Result<std::unique_ptr<Vm>> Vm::create(const Kvm& kvm, const VmConfig& config,
                                       SerialOutput serial_output, SeccompMode seccomp,
                                       EventSink events, bool acpi_events,
                                       FsConnector connect_fs) {
  if (possible_vcpus(config) > config.boot_vcpus && !acpi_events) {
    return Error::not_supported(
        "cpus.max_vcpus " + std::to_string(config.max_vcpus) + " above boot_vcpus " +
        std::to_string(config.boot_vcpus) +
        " needs the API: only vm.resize adds vCPUs (keel --api-socket), so leave max_vcpus out");
  }
  KEEL_TRY(auto memory,
           memory::GuestMemory::create(
               config.memory_size, memory::Backing{config.memory_shared, config.memory_hugepages},
               config.memory_hotplug_size));
  KEEL_TRY(auto kvm_vm, kvm.create_vm());
  KEEL_TRY(auto exit_event, EventFd::create(EFD_NONBLOCK));
  KEEL_TRY(auto hotplug_event, EventFd::create(EFD_NONBLOCK));
  std::unique_ptr<Vm> vm(new Vm(std::move(memory), std::move(kvm_vm), std::move(exit_event),
                                std::move(hotplug_event), seccomp, acpi_events));
  vm->connect_fs_ = std::move(connect_fs);

  KEEL_TRY_STATUS(vm->kvm_vm_.set_x86_private_pages(kTssAddr, kIdentityMapAddr));
  KEEL_TRY_STATUS(vm->kvm_vm_.create_irqchip());
  KEEL_TRY_STATUS(vm->kvm_vm_.create_pit());
  std::uint32_t slot = 0;
  for (const memory::RamRegion& region : vm->memory_.regions()) {
    KEEL_TRY_STATUS(vm->kvm_vm_.set_memory_region(slot++, region.gpa(), region.size(), region.host()));
  }
  // The hot-pluggable region is one slot from the start; virtio-mem decides which blocks of it
  // the guest may use.
  if (const memory::RamRegion* region = vm->memory_.hotplug_region()) {
    KEEL_TRY_STATUS(vm->kvm_vm_.set_memory_region(slot++, region->gpa(), region->size(), region->host()));
  }
  KEEL_TRY_STATUS(vm->setup_devices(std::move(serial_output), config.pci_segments));
  const bool cpu_hotplug = acpi_events && vcpu_hotplug(config);
  if (cpu_hotplug) {
    vm->cpu_hotplug_ = std::make_shared<devices::AcpiSlots>(
        config.boot_vcpus, possible_vcpus(config), 1, vm->ged_irq_,
        [self = vm.get()](std::uint32_t id) { self->on_cpu_eject(id); });
    KEEL_TRY_STATUS(vm->pio_.insert(vm->cpu_hotplug_, layout::kCpuHotplugPort,
                                    vm->cpu_hotplug_->size()));
  }
  // A VM that can grow has its passthrough from the start (memory plugged later is mapped there).
  if (!config.devices.empty() || vm->memory_.hotplug_region() != nullptr) {
    KEEL_TRY(auto passthrough,
             Passthrough::create(config.devices, vm->memory_, vm->kvm_vm_, *vm->platform_));
    vm->passthrough_ = std::move(passthrough);
    if (events) {
      vm->passthrough_->watch_low_water(events);
    }
    if (!vm->passthrough_->viommu_endpoints().empty()) {
      KEEL_TRY(auto viommu, VirtualIommu::create(*vm->passthrough_, vm->memory_, *vm->platform_));
      vm->viommu_ = std::move(viommu);
    }
  }

  Vm* self = vm.get();
  const memory::RamRegion* hotplug_region = vm->memory_.hotplug_region();
  std::unique_ptr<virtio::VirtioMem> mem;
  if (config.memory_hotplug_method == MemoryHotplug::kVirtioMem) {
    KEEL_TRY(mem, virtio::VirtioMem::create(
                      vm->memory_, [self](std::uint64_t gpa, std::uint64_t size, bool plug) {
                        return plug ? self->passthrough_->ram_plugged(gpa, size)
                                    : self->passthrough_->ram_unplugged(gpa, size);
                      }));
  } else if (hotplug_region != nullptr && acpi_events) {
    // ACPI memory hot-plug: the region as DIMMs the GED announces (none plugged at boot).
    vm->dimm_size_ = acpi_memory_slot_size(hotplug_region->size(), vm->memory_.ram_size());
    vm->dimms_ = std::make_shared<devices::AcpiSlots>(
        0,
        static_cast<std::uint32_t>((hotplug_region->size() + vm->dimm_size_ - 1) /
                                   vm->dimm_size_),
        0, vm->ged_irq_, nullptr);
    KEEL_TRY_STATUS(vm->pio_.insert(vm->dimms_, layout::kMemoryHotplugPort,
                                    vm->dimms_->size()));
  }
  if (mem) {
    vm->mem_ = mem.get();
    KEEL_TRY_STATUS(vm->add_virtio("_mem", std::move(mem)));
    vm->mem_transport_ = vm->virtio_.back().transport;
  }
  if (config.rng_source) {
    KEEL_TRY_WRAP(auto rng, virtio::VirtioRng::open(*config.rng_source), "--rng");
    KEEL_TRY_STATUS(vm->add_virtio("_rng", std::move(rng)));
  }
  for (const DiskConfig& disk : config.disks) {
    KEEL_TRY_STATUS(vm->add_disk(disk));
  }
  for (const NetConfig& net : config.nets) {
    KEEL_TRY_STATUS(vm->add_net(net));
  }
  for (const FsConfig& fs : config.fs) {
    KEEL_TRY_STATUS(vm->add_fs(fs));
  }
  if (config.vsock) {
    KEEL_TRY_STATUS(vm->add_vsock(*config.vsock));
  }

  // Keel's i8042 only has the reset line: tell the guest there is no keyboard controller, so
  // Linux does not spend a second probing one.
  boot::AcpiConfig acpi{
      .num_cpus = config.boot_vcpus,
      .max_cpus = possible_vcpus(config),
      .cpu_hotplug = cpu_hotplug,
      .com1 = true,
      .i8042 = false,
      .acpi_events = acpi_events,
      .pci_segments = config.pci_segments};
  if (vm->dimms_) {
    acpi.memory_slots = boot::MemorySlots{hotplug_region->gpa(), vm->dimm_size_,
                                          vm->dimms_->count(), hotplug_region->size()};
  }
  if (vm->viommu_) {
    acpi.viot = vm->viommu_->viot();
  }
  KEEL_TRY_WRAP(auto rsdp, boot::write_acpi_tables(vm->memory_, acpi), "ACPI tables");
  KEEL_TRY_STATUS(write_reset_vector(vm->memory_));
  KEEL_TRY(auto boot_info,
           boot::load_payload(
               vm->memory_, boot::Payload{config.kernel, config.initramfs, config.cmdline}, rsdp));
  KEEL_TRY_STATUS(vm->setup_vcpus(kvm, config, boot_info, seccomp));
  std::string ram;
  for (const memory::RamRegion& r : vm->memory_.regions()) {
    ram += (ram.empty() ? "" : ",") + hex(r.gpa()) + "-" + hex(r.end() - 1);
  }
  const std::uint64_t mmio64 = layout::mmio64_start(vm->memory_.top());
  log::info("vm", "created",
            {{"vcpus", config.boot_vcpus},
             {"memory", format_size(config.memory_size)},
             {"ram", ram},
             {"mmio32", hex(layout::kMmio32Start) + "-" + hex(layout::kMmio32Start + layout::kMmio32Size - 1)},
             {"mmio64", hex(mmio64) + "-" + hex(mmio64 + layout::kMmio64Size - 1)},
             {"ecam", hex(layout::kEcamStart) + "-" + hex(layout::kEcamStart + layout::kEcamSize - 1)}});
  return vm;
}

Status Vm::setup_devices(SerialOutput serial_output, std::uint16_t pci_segments) {
  KEEL_TRY(auto com1_irq, IrqfdLine::create(kvm_vm_, layout::kCom1Irq));
  serial_ = std::make_shared<devices::Serial>(std::move(com1_irq), std::move(serial_output));
  KEEL_TRY_STATUS(pio_.insert(serial_, layout::kCom1Port, 8));

  auto power = [this](devices::PowerEvent event) { on_power(event); };
  KEEL_TRY_STATUS(pio_.insert(std::make_shared<devices::I8042>(power), layout::kI8042Port,
                              devices::I8042::kSize));
  KEEL_TRY_STATUS(pio_.insert(std::make_shared<devices::AcpiPm>(power), layout::kAcpiPmPort,
                              layout::kAcpiPmSize));
  KEEL_TRY(ged_irq_, IrqfdLine::create(kvm_vm_, layout::kGedIrq));
  hotplug_ = std::make_shared<pci::AcpiHotplug>(ged_irq_,
                                                [this](std::uint8_t slot) { on_eject(slot); });
  KEEL_TRY_STATUS(pio_.insert(hotplug_, layout::kPciHotplugPort, layout::kPciHotplugSize));
  power_button_ = std::make_shared<devices::PowerButton>(ged_irq_);
  KEEL_TRY_STATUS(
      pio_.insert(power_button_, layout::kPowerButtonPort, layout::kPowerButtonSize));

  for (std::uint16_t segment = 1; segment < pci_segments; ++segment) {
    KEEL_TRY(auto platform,
             pci::Platform::create(
                 pio_, mmio_, router_, memory_slots_,
                 pci::Platform::BarWindows::above_ram(memory_.top(), segment, pci_segments),
                 &io_events_, segment));
    segments_.push_back(std::move(platform));
  }
  KEEL_TRY(platform_, pci::Platform::create(pio_, mmio_, router_, memory_slots_,
                                            pci::Platform::BarWindows::above_ram(
                                                memory_.top(), 0, pci_segments),
                                            &io_events_));
  return ok_status();
}

Result<std::uint8_t> Vm::add_virtio(std::string id, std::unique_ptr<virtio::VirtioDevice> device,
                                    std::uint16_t segment) {
  const std::uint32_t type = device->device_type();
  if (segment > segments_.size()) {
    return Error::invalid("device " + id + ": pci_segment " + std::to_string(segment) +
                          " is not one of the VM's " + std::to_string(segments_.size() + 1) +
                          " (platform.num_pci_segments)");
  }
  pci::Platform& platform = this->segment(segment);
  KEEL_TRY(const std::uint8_t slot, platform.free_slot());
  const SeccompMode seccomp = seccomp_;
  KEEL_TRY(auto transport,
           virtio::VirtioPciDevice::create(std::move(device), memory_, platform, [seccomp] {
             return install_seccomp_filter(ThreadKind::kDeviceIo, seccomp);
           }));
  KEEL_TRY_STATUS(platform.plug(slot, transport));
  log::info("vm", "virtio device",
            {{"id", id}, {"type", type}, {"guest_bdf", pci::guest_bdf(slot, segment)}});
  virtio_.push_back(VirtioFunction{std::move(id), slot, std::move(transport), segment});
  return slot;
}

Result<std::uint8_t> Vm::add_disk(const DiskConfig& disk) {
  const std::string where = "disk " + disk.id;
  KEEL_TRY_WRAP(auto image, virtio::DiskImage::open({disk.path, disk.readonly, disk.direct}),
                where);
  KEEL_TRY_WRAP(auto blk,
                virtio::VirtioBlk::create(std::move(image), {disk.num_queues, disk.queue_size}),
                where);
  return add_virtio(disk.id, std::move(blk));
}

Result<std::uint8_t> Vm::add_net(const NetConfig& net) {
  const std::string where = "net " + net.id;
  Result<virtio::Tap> tap = Error::invalid("no TAP");
  if (net.fd >= 0) {
    // Each boot takes its own copy: a reboot builds the VM again from the same fd.
    UniqueFd copy(::fcntl(net.fd, F_DUPFD_CLOEXEC, 3));
    if (!copy) {
      return Error::opening_user_path("fd=" + std::to_string(net.fd)).wrap(where);
    }
    tap = virtio::Tap::adopt(std::move(copy));
  } else {
    tap = virtio::Tap::open(net.tap.empty() ? "keeltap%d" : net.tap);
  }
  if (!tap.ok()) {
    return tap.error().wrap(where);
  }
  if (!net.ip.empty()) {
    KEEL_TRY_STATUS_WRAP(tap->set_host_address(net.ip, net.mask), where);
  }
  const auto mac = net.mac.empty() ? virtio::random_mac() : *virtio::parse_mac(net.mac);
  KEEL_TRY_WRAP(auto dev, virtio::VirtioNet::create(std::move(tap).value(), {mac, net.queue_size}),
                where);
  log::info("vm", "network link", {{"id", net.id}, {"tap", dev->tap().name()},
                                   {"mac", virtio::format_mac(mac)}});
  return add_virtio(net.id, std::move(dev));
}

Result<std::uint8_t> Vm::add_vsock(const VsockConfig& vsock) {
  const std::string where = "vsock " + vsock.id;
  KEEL_TRY_WRAP(auto dev, virtio::VirtioVsock::create(vsock.cid, vsock.socket), where);
  log::info("vm", "vsock", {{"id", vsock.id}, {"cid", vsock.cid}, {"socket", vsock.socket}});
  return add_virtio(vsock.id, std::move(dev));
}

Result<std::uint8_t> Vm::add_fs(const FsConfig& fs) {
  const std::string where = "fs " + fs.id;
  std::shared_ptr<virtio::VhostUser> backend;
  if (connect_fs_) {
    KEEL_TRY(backend, connect_fs_(fs));
  } else {
    KEEL_TRY(auto fresh, virtio::VhostUser::connect(fs.socket, where));
    backend = std::make_shared<virtio::VhostUser>(std::move(fresh));
  }
  KEEL_TRY_WRAP(auto dev,
                virtio::VirtioFs::create(std::move(backend),
                                         {fs.tag, fs.num_queues, fs.queue_size}),
                where);
  log::info("vm", "virtio-fs", {{"id", fs.id}, {"tag", fs.tag}, {"socket", fs.socket}});
  return add_virtio(fs.id, std::move(dev), fs.pci_segment);
}

// ---- hot-plug ----

Result<std::uint8_t> Vm::announce(Result<std::uint8_t> slot) {
  if (slot.ok()) {
    hotplug_->announce(*slot);
  }
  return slot;
}

Result<std::uint8_t> Vm::hot_add_device(const DeviceConfig& device) {
  if (!passthrough_) {
    KEEL_TRY(passthrough_, Passthrough::create({}, memory_, kvm_vm_, *platform_));
  }
  return announce(passthrough_->hot_add(device));
}

Result<std::uint8_t> Vm::hot_add_disk(const DiskConfig& disk) { return announce(add_disk(disk)); }

Result<std::uint8_t> Vm::hot_add_net(const NetConfig& net) { return announce(add_net(net)); }

Result<std::uint8_t> Vm::hot_add_fs(const FsConfig& fs) {
  if (fs.pci_segment != 0) {
    return Error::not_supported("fs " + fs.id + ": pci_segment " + std::to_string(fs.pci_segment) +
                                " has no hot-plug slots (only segment 0 does); add it before "
                                "vm.boot, or on segment 0");
  }
  return announce(add_fs(fs));
}

Result<std::uint8_t> Vm::hot_add_vsock(const VsockConfig& vsock) {
  return announce(add_vsock(vsock));
}

Status Vm::request_eject(const std::string& id) {
  std::optional<std::uint8_t> slot;
  const auto v = std::find_if(virtio_.begin(), virtio_.end(),
                              [&id](const VirtioFunction& f) { return f.id == id; });
  const auto& passed = passthrough_devices();
  if (v != virtio_.end()) {
    if (v->transport == mem_transport_) {
      return Error::not_supported("device " + id +
                                  " holds the VM's hot-plugged memory; shrink it with vm.resize");
    }
    if (v->segment != 0) {
      return Error::not_supported("device " + id + " is on PCI segment " +
                                  std::to_string(v->segment) +
                                  ", which has no hot-plug slots; it leaves when the VM does");
    }
    slot = v->slot;
  } else if (std::any_of(passed.begin(), passed.end(),
                         [&id](const Passthrough::Passed& p) { return p.id == id; })) {
    KEEL_TRY(slot, passthrough_->removable_slot(id));
  } else {
    return Error::not_found("no device with id " + id);
  }
  log::info("vm", "asking the guest to eject", {{"id", id}, {"guest_bdf", pci::guest_bdf(*slot)}});
  hotplug_->request_eject(*slot);
  return ok_status();
}

Status Vm::request_hotplugged_memory(std::uint64_t size) {
  if (dimms_) {
    return plug_memory_slots(size);
  }
  if (mem_ == nullptr) {
    return Error::invalid("the VM has no hot-pluggable memory: give it --memory "
                          "hotplug_method=virtio-mem,hotplug_size=SIZE (memory.hotplug_size)");
  }
  KEEL_TRY_STATUS(mem_->request(size));
  mem_transport_->change_config([](virtio::VirtioDevice&) { return 0; });
  return ok_status();
}

// ACPI memory hot-plug: DIMMs are plugged whole, in order, each mapped in every eager VFIO
// container before the guest hears of it; none is taken back (as with cloud-hypervisor).
Status Vm::plug_memory_slots(std::uint64_t size) {
  const memory::RamRegion& region = *memory_.hotplug_region();
  // Whole DIMMs, rounded up (the last DIMM may be shorter); never fewer than the guest has.
  const std::uint32_t want = static_cast<std::uint32_t>(
      std::min<std::uint64_t>((size + dimm_size_ - 1) / dimm_size_, dimms_->count()));
  for (std::uint32_t slot = dimms_->enabled_count(); slot < want; ++slot) {
    const std::uint64_t gpa = region.gpa() + slot * dimm_size_;
    const std::uint64_t length = std::min(dimm_size_, region.end() - gpa);
    if (passthrough_) {
      Status mapped = passthrough_->ram_plugged(gpa, length);
      if (!mapped.ok()) {
        return mapped.error().wrap("DIMM " + std::to_string(slot) + " at " + hex(gpa) + " (" +
                                   format_size(hotplugged_memory()) + " stays plugged)");
      }
    }
    dimms_->plug(slot);
    log::info("vm", "memory plugged",
              {{"dimm", slot}, {"gpa", hex(gpa)}, {"size", format_size(length)}});
  }
  return ok_status();
}

std::uint64_t Vm::hotplugged_memory() const {
  if (dimms_) {
    return std::min(dimms_->enabled_count() * dimm_size_, memory_.hotplug_region()->size());
  }
  return mem_ ? mem_->plugged_size() : 0;
}

std::uint64_t Vm::requested_hotplugged_memory() const {
  if (dimms_) {
    return hotplugged_memory();
  }
  return mem_ ? mem_->requested_size() : 0;
}

std::uint64_t Vm::hotplug_region_size() const {
  if (dimms_) {
    return memory_.hotplug_region()->size();
  }
  return mem_ ? mem_->region_size() : 0;
}

std::uint64_t Vm::hotplug_granule() const {
  return dimms_ ? memory::GuestMemory::kHotplugAlign : virtio::VirtioMem::kBlockSize;
}

Result<std::optional<std::uint64_t>> Vm::dma_headroom() {
  if (!passthrough_) {
    return std::optional<std::uint64_t>();
  }
  return passthrough_->eager_headroom();
}

void Vm::on_eject(std::uint8_t slot) {
  {
    std::lock_guard lock(ejected_mutex_);
    ejected_ |= 1U << slot;  // a mask: a guest writing B0EJ in a loop cannot grow anything
  }
  (void)hotplug_event_.signal();
}

std::vector<std::string> Vm::finish_ejects() {
  (void)hotplug_event_.consume();
  std::uint32_t slots = 0;
  std::vector<std::uint32_t> cpus;
  {
    std::lock_guard lock(ejected_mutex_);
    std::swap(slots, ejected_);
    std::swap(cpus, ejected_cpus_);
  }
  // An ejected vCPU's thread stops; KVM keeps the vCPU for a later plug.
  for (std::uint32_t id : cpus) {
    if (id < vcpus_.size() && vcpus_[id] && vcpu_online_[id]) {
      vcpus_[id]->stop();
      vcpu_online_[id] = false;
      vcpu_leaving_[id] = false;
      log::info("vm", "vCPU removed", {{"vcpu", id}});
    }
  }
  std::vector<std::string> removed;
  for (std::uint8_t slot = 1; slot < 32; ++slot) {
    if ((slots & (1U << slot)) == 0) {
      continue;
    }
    const auto v = std::find_if(virtio_.begin(), virtio_.end(), [slot](const VirtioFunction& f) {
      return f.slot == slot && f.segment == 0;  // the hot-plug slots are segment 0's
    });
    if (v != virtio_.end() && v->transport == mem_transport_) {
      log::warn("vm", "the guest ejected the virtio-mem device; it stays (its memory is the guest's)",
                {{"slot", slot}});
      continue;
    }
    if (v != virtio_.end()) {
      (void)platform_->unplug(slot);
      if (!wait_sole_owner(v->transport)) {
        log::warn("vm", "a vCPU still holds the removed device", {{"id", v->id}});
      }
      removed.push_back(v->id);
      virtio_.erase(v);  // stops its workers, takes its BAR off the bus
      log::info("vm", "virtio device removed", {{"id", removed.back()}, {"slot", slot}});
      continue;
    }
    const auto& passed = passthrough_devices();
    const auto p = std::find_if(passed.begin(), passed.end(),
                                [slot](const Passthrough::Passed& d) { return d.slot == slot; });
    if (p != passed.end()) {
      std::string id = p->id;
      // A device that shares its container, or sits behind the virtual IOMMU (whose VIOT the
      // guest read at boot), stays: its slot is not reused while the VM runs.
      if (Result<std::uint8_t> removable = passthrough_->removable_slot(id); !removable.ok()) {
        log::warn("vm", "the guest ejected a device that cannot leave while the VM runs; it stays",
                  {{"id", id}, {"why", removable.error().message()}});
        continue;
      }
      if (passthrough_->remove(slot).ok()) {
        removed.push_back(std::move(id));
      }
      continue;
    }
    log::warn("vm", "the guest ejected an empty slot", {{"slot", slot}});
  }
  return removed;
}

Status Vm::setup_vcpus(const Kvm& kvm, const VmConfig& config, const boot::BootInfo& boot_info,
                       SeccompMode seccomp) {
  KEEL_TRY(vcpu_setup_.supported_cpuid, kvm.supported_cpuid());
  KEEL_TRY(vcpu_setup_.mmap_size, kvm.vcpu_mmap_size());
  vcpu_setup_.tsc_deadline = kvm.check_extension(KVM_CAP_TSC_DEADLINE_TIMER) > 0;
  vcpu_setup_.possible = possible_vcpus(config);
  seccomp_ = seccomp;
  for (std::uint32_t id = 0; id < config.boot_vcpus; ++id) {
    KEEL_TRY(KvmVcpu vcpu, create_vcpu(id, id == 0 ? &boot_info : nullptr));
    if (id == 0) {  // the ring is the first vCPU's page; every vCPU drains it
      KEEL_TRY_STATUS(setup_coalesced_serial(kvm, vcpu, vcpu_setup_.mmap_size));
    }
    add_vcpu(id, std::move(vcpu));
  }
  return ok_status();
}

Result<KvmVcpu> Vm::create_vcpu(std::uint32_t id, const boot::BootInfo* boot_info) {
  KEEL_TRY(auto kvm_vcpu, kvm_vm_.create_vcpu(id, vcpu_setup_.mmap_size));
  KvmVcpu& v = kvm_vcpu;
  // Every vCPU counts the possible ones as cores of its package: APIC ids stay within the
  // topology when more are plugged.
  KEEL_TRY_STATUS(v.set_cpuid(cpuid_for_vcpu(
      vcpu_setup_.supported_cpuid, CpuTopology{id, vcpu_setup_.possible, vcpu_setup_.tsc_deadline})));
  KEEL_TRY_STATUS(v.set_msrs(boot_msrs()));
  kvm_fpu fpu{};
  fpu.fcw = 0x37f;
  fpu.mxcsr = 0x1f80;
  KEEL_TRY_STATUS(v.set_fpu(fpu));
  KEEL_TRY(auto lapic, v.lapic());
  set_lvt(lapic, kApicLvtLint0, kApicDeliveryExtInt);
  set_lvt(lapic, kApicLvtLint1, kApicDeliveryNmi);
  KEEL_TRY_STATUS(v.set_lapic(lapic));
  if (boot_info != nullptr) {
    // The boot CPU starts at the payload's entry; the others wait for INIT/SIPI from it.
    KEEL_TRY(auto sregs, v.sregs());
    boot::setup_boot_sregs(*boot_info, sregs);
    KEEL_TRY_STATUS(v.set_sregs(sregs));
    KEEL_TRY_STATUS(v.set_regs(boot::boot_regs(*boot_info)));
  }
  return kvm_vcpu;
}

void Vm::add_vcpu(std::uint32_t id, KvmVcpu kvm_vcpu) {
  if (vcpus_.size() <= id) {
    vcpus_.resize(id + 1);
    vcpu_online_.resize(id + 1, false);
    vcpu_leaving_.resize(id + 1, false);
  }
  vcpus_[id] = std::make_unique<Vcpu>(
      id, std::move(kvm_vcpu), pio_, mmio_, [this](devices::PowerEvent e) { on_power(e); },
      [this](const Error& e) { on_error(e); }, seccomp_, coalesced_.get());
  vcpu_online_[id] = true;
}

Status Vm::check_vcpus(std::uint32_t count) const {
  if (!cpu_hotplug_) {
    return Error::not_supported(
        "desired_vcpus " + std::to_string(count) + ": the VM was created without vCPU hot-plug; "
        "give cpus.max_vcpus at vm.create (keel --cpus boot=N,max=M with --api-socket) to resize");
  }
  if (count == 0 || count > vcpu_setup_.possible) {
    return Error::invalid("desired_vcpus " + std::to_string(count) + " is outside 1 to " +
                          std::to_string(vcpu_setup_.possible) + " (cpus.max_vcpus)");
  }
  const std::uint32_t have = vcpu_count();
  // As cloud-hypervisor: while the guest has not ejected a vCPU it was asked back, a resize
  // waits (a vCPU asked back cannot be kept: the guest may be letting it go right now).
  for (std::size_t id = 0; id < vcpus_.size() && have != count; ++id) {
    if (vcpu_leaving_[id]) {
      return Error::retry("desired_vcpus " + std::to_string(count) + ": the guest has not yet "
                          "ejected vCPU " + std::to_string(id) + ", asked back by an earlier "
                          "resize; try again once it has");
    }
  }
  return ok_status();
}

Status Vm::set_vcpus(std::uint32_t count) {
  KEEL_TRY_STATUS(check_vcpus(count));
  std::uint32_t have = vcpu_count();
  // Growing: the lowest free ids first.
  for (std::uint32_t id = 1; id < vcpu_setup_.possible && have < count; ++id) {
    if (id < vcpus_.size() && vcpu_online_[id]) {
      continue;
    }
    if (id < vcpus_.size() && vcpus_[id]) {
      vcpu_online_[id] = true;  // ejected earlier: KVM keeps it, the guest resets it (INIT)
    } else {
      KEEL_TRY(KvmVcpu vcpu, create_vcpu(id, nullptr));
      add_vcpu(id, std::move(vcpu));
    }
    if (running_) {
      vcpus_[id]->start();
    }
    cpu_hotplug_->plug(id);
    log::info("vm", "vCPU plugged", {{"vcpu", id}});
    ++have;
  }
  // Shrinking: the highest first; each leaves when the guest has ejected it.
  for (std::uint32_t id = static_cast<std::uint32_t>(vcpus_.size()); id-- > 1 && have > count;) {
    if (!vcpu_online_[id] || vcpu_leaving_[id]) {
      continue;
    }
    vcpu_leaving_[id] = true;
    cpu_hotplug_->request_unplug(id);
    log::info("vm", "vCPU eject requested", {{"vcpu", id}});
    --have;
  }
  return ok_status();
}

std::uint32_t Vm::vcpu_count() const {
  std::uint32_t n = 0;
  for (std::size_t id = 0; id < vcpus_.size(); ++id) {
    n += vcpu_online_[id] && !vcpu_leaving_[id] ? 1 : 0;
  }
  return n;
}

void Vm::on_cpu_eject(std::uint32_t id) {
  {
    std::lock_guard lock(ejected_mutex_);
    if (std::find(ejected_cpus_.begin(), ejected_cpus_.end(), id) == ejected_cpus_.end()) {
      ejected_cpus_.push_back(id);  // at most one entry per vCPU: a guest cannot grow it
    }
  }
  (void)hotplug_event_.signal();
}

// Every byte of the guest's serial console costs two exits, a status read and the data write;
// under nested virtualisation that is most of a verbose boot. While the guest polls the
// transmitter (as Linux's console does) the data write has no effect it can see before its
// next access to the port, so KVM may keep it in the coalesced ring instead of exiting: the
// status read that comes next exits, and the vCPU replays the ring before it answers it.
Status Vm::setup_coalesced_serial(const Kvm& kvm, const KvmVcpu& vcpu0, std::size_t mmap_size) {
  const int ring_page = kvm.check_extension(KVM_CAP_COALESCED_MMIO);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  if (kvm.check_extension(KVM_CAP_COALESCED_PIO) <= 0 || ring_page <= 0 ||
      static_cast<std::size_t>(ring_page + 1) * static_cast<std::size_t>(page_size) > mmap_size) {
    log::debug("vm", "no coalesced port I/O; every serial byte exits");
    return ok_status();
  }
  auto page = vcpu0.map_page(static_cast<std::size_t>(ring_page));
  if (!page.ok()) {
    log::warn("vm", "coalesced ring not mapped; every serial byte exits", {{"error", page.error().message()}});
    return ok_status();
  }
  coalesced_ = std::make_unique<CoalescedRing>(
      std::move(page).value(), [this](std::uint16_t port, std::span<const std::uint8_t> bytes) {
        if (port == layout::kCom1Port) {
          serial_->write_data(bytes);
        }
      });
  // A zone KVM failed to remove only delays the guest's THRE interrupt until the next drain
  // (the VMM drains at least every 100 ms): slower, never wedged.
  serial_->on_transmit_polled([this](bool polled) {
    if (Status s = kvm_vm_.coalesce_pio(layout::kCom1Port, 1, polled); !s.ok()) {
      log::warn("vm", "COM1 coalescing not changed", {{"polled", polled}, {"error", s.error().message()}});
    }
  });
  return ok_status();
}

Status Vm::start() {
  for (std::size_t id = 0; id < vcpus_.size(); ++id) {
    if (vcpu_online_[id]) {
      vcpus_[id]->start();
    }
  }
  running_ = true;
  return ok_status();
}

void Vm::stop() {
  running_ = false;
  for (auto& vcpu : vcpus_) {
    if (vcpu) {
      vcpu->stop();
    }
  }
  flush_console();  // the last bytes a vCPU wrote before it stopped
}

Status Vm::press_power_button() {
  if (!acpi_events_) {
    return Error::not_supported(
        "this VM has no power button: keel gives the guest one only with --api-socket");
  }
  power_button_->press();
  return ok_status();
}

void Vm::inject_nmi() {
  for (std::size_t id = 0; id < vcpus_.size(); ++id) {
    if (vcpu_online_[id]) {
      vcpus_[id]->inject_nmi();
    }
  }
}

void Vm::flush_console() {
  if (coalesced_) {
    coalesced_->drain();
  }
  if (serial_) {
    serial_->flush();
  }
}

void Vm::on_power(devices::PowerEvent event) {
  {
    std::lock_guard lock(outcome_mutex_);
    if (outcome_ != Outcome::kRunning) {
      return;
    }
    outcome_ = event == devices::PowerEvent::kPowerOff ? Outcome::kPowerOff : Outcome::kReset;
  }
  log::info("vm", event == devices::PowerEvent::kPowerOff ? "guest powered off" : "guest reset");
  (void)exit_event_.signal();
}

void Vm::on_error(const Error& error) {
  {
    std::lock_guard lock(outcome_mutex_);
    if (outcome_ != Outcome::kRunning) {
      return;
    }
    outcome_ = Outcome::kError;
    error_ = error;
  }
  (void)exit_event_.signal();
}

Vm::Outcome Vm::outcome() const {
  std::lock_guard lock(outcome_mutex_);
  return outcome_;
}

std::optional<Error> Vm::error() const {
  std::lock_guard lock(outcome_mutex_);
  return error_;
}

}  // namespace keel::vmm
