#pragma once

#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "base/event_fd.hpp"
#include "base/result.hpp"
#include "devices/bus.hpp"
#include "devices/acpi_slots.hpp"
#include "devices/pci/acpi_hotplug.hpp"
#include "devices/pci/platform.hpp"
#include "devices/power_button.hpp"
#include "devices/power_event.hpp"
#include "devices/serial.hpp"
#include "devices/virtio/vhost_user.hpp"
#include "devices/virtio/virtio_device.hpp"
#include "devices/virtio/virtio_mem.hpp"
#include "devices/virtio/virtio_pci.hpp"
#include "memory/guest_memory.hpp"
#include "vmm/boot/boot_info.hpp"
#include "vmm/event_monitor.hpp"
#include "vmm/kvm.hpp"
#include "vmm/kvm_interrupt_router.hpp"
#include "vmm/kvm_io_events.hpp"
#include "vmm/kvm_memory_slots.hpp"
#include "vmm/passthrough.hpp"
#include "vmm/vcpu.hpp"
#include "vmm/virtual_iommu.hpp"
#include "vmm/vm_config.hpp"

namespace keel::vmm {

// One boot of one guest: guest RAM, the KVM VM, the buses and devices, the loaded payload and
// the vCPUs. A reboot builds a fresh Vm, so nothing of the previous boot leaks into the next.
class Vm {
 public:
  using SerialOutput = devices::Serial::Output;

  // `seccomp`: the filter each vCPU thread installs before it first enters the guest.
  // `events`: where the VM reports what happens inside it (a lazy container reaching its
  // low-water mark); may be empty.
  // `acpi_events`: the guest is given the ACPI Generic Event Device with hot-plug slots and a
  // power button (only an API can plug into them or press it; a guest without them boots
  // faster: Linux registers and evaluates 31 slots at boot).
  // `connect_fs`: the vhost-user connection of a virtio-fs share (the VMM keeps them across
  // boots); empty: a new connection each time.
  using FsConnector = std::function<Result<std::shared_ptr<virtio::VhostUser>>(const FsConfig&)>;
  static Result<std::unique_ptr<Vm>> create(const Kvm& kvm, const VmConfig& config,
                                            SerialOutput serial_output,
                                            SeccompMode seccomp = SeccompMode::kOff,
                                            EventSink events = {}, bool acpi_events = true,
                                            FsConnector connect_fs = {});
  ~Vm();
  Vm(const Vm&) = delete;
  Vm& operator=(const Vm&) = delete;

  // Starts the vCPUs. The VM then runs until power_event_fd() fires.
  Status start();
  // Readable once the guest powered off, reset, or a vCPU failed; see outcome().
  int exit_event_fd() const { return exit_event_.fd(); }

  enum class Outcome { kRunning, kPowerOff, kReset, kError };
  Outcome outcome() const;
  // The first fatal vCPU error, when outcome() is kError.
  std::optional<Error> error() const;
  // Stops and joins every vCPU thread. Idempotent.
  void stop();

  // Presses the ACPI power button: the guest decides what follows (Linux's user space
  // usually powers off). kNotSupported when the VM was made without acpi_events.
  Status press_power_button();
  // vCPU hot-plug (the VMM thread, the guest running or paused): brings the vCPUs the guest
  // has to `count`, from boot_vcpus to max_vcpus. New vCPUs start (waiting for the guest's
  // INIT/SIPI) and are announced; surplus ones, the highest first, are asked back and stop when
  // the guest has ejected them (hotplug_event_fd(), finish_ejects()). kNotSupported for a VM
  // made without spare vCPUs.
  Status set_vcpus(std::uint32_t count);
  // What set_vcpus(count) would refuse, without doing anything: no hot-plug (kNotSupported),
  // out of range (kInvalid), a vCPU asked back not yet ejected (kRetry).
  Status check_vcpus(std::uint32_t count) const;
  // The vCPUs the guest has or was given (those asked back count until ejected).
  std::uint32_t vcpu_count() const;
  // A non-maskable interrupt on every vCPU (the guest's NMI handlers run; Linux logs an NMI it
  // cannot attribute and carries on, or panics with unknown_nmi_panic).
  void inject_nmi();

  // Bytes from the host's terminal for the guest's COM1.
  void serial_input(std::span<const std::uint8_t> bytes) { serial_->enqueue_input(bytes); }
  // Passes on the console output still waiting: bytes in KVM's coalesced ring, a partial line.
  void flush_console();

  const memory::GuestMemory& memory() const { return memory_; }
  // The DMA negotiation of each passthrough container, re-read from the kernel (empty without
  // --device).
  std::vector<vfio::DmaReport> dma_reports() const;
  // The passthrough devices, empty without --device.
  const std::vector<Passthrough::Passed>& passthrough_devices() const;
  // The virtual IOMMU, if a device is behind it (iommu=on).
  const VirtualIommu* viommu() const { return viommu_.get(); }
  pci::Platform& pci() { return *platform_; }
  // The virtio functions on the PCI root (rng, disks, ...), by the id vm.info shows.
  struct VirtioFunction {
    std::string id;
    std::uint8_t slot;
    std::shared_ptr<virtio::VirtioPciDevice> transport;
    std::uint16_t segment = 0;  // its PCI segment (only segment 0 has hot-plug slots)
  };
  const std::vector<VirtioFunction>& virtio_functions() const { return virtio_; }

  // Hot-plug (the VMM thread, the guest running or paused): each builds the device, puts it in a
  // free slot and tells the guest (ACPI PCI hot-plug); returns the slot. A failure leaves the
  // VM as it was.
  Result<std::uint8_t> hot_add_device(const DeviceConfig& device);
  Result<std::uint8_t> hot_add_disk(const DiskConfig& disk);
  Result<std::uint8_t> hot_add_net(const NetConfig& net);
  Result<std::uint8_t> hot_add_vsock(const VsockConfig& vsock);
  Result<std::uint8_t> hot_add_fs(const FsConfig& fs);
  // Asks the guest to eject device `id`. The device goes when the guest has let it go:
  // hotplug_event_fd() becomes readable and finish_ejects() removes it.
  Status request_eject(const std::string& id);
  int hotplug_event_fd() const { return hotplug_event_.fd(); }
  // Memory hot-plug (virtio-mem), for a VM with a hot-pluggable region: asks the guest to have
  // `size` bytes of it plugged (a multiple of 2 MiB) and tells it so.
  Status request_hotplugged_memory(std::uint64_t size);
  // What is plugged now and what was asked (0 and 0 without a region).
  std::uint64_t hotplugged_memory() const;
  std::uint64_t requested_hotplugged_memory() const;
  std::uint64_t hotplug_region_size() const;
  // The step hot-plugged memory moves in: a DIMM with ACPI memory hot-plug, a virtio-mem block.
  std::uint64_t hotplug_granule() const;
  // How many more DMA entries every eagerly mapped container can take (nullopt: none maps
  // eagerly, or none counts).
  Result<std::optional<std::uint64_t>> dma_headroom();
  // Removes every device the guest ejected since the last call; returns their ids.
  std::vector<std::string> finish_ejects();

 private:
  Vm(memory::GuestMemory memory, KvmVm kvm_vm, EventFd exit_event, EventFd hotplug_event,
     SeccompMode seccomp, bool acpi_events);
  Status setup_devices(SerialOutput serial_output, std::uint16_t pci_segments);
  // Puts a virtio device on the PCI platform, in the next free slot, and returns the slot. A
  // device that uses worker threads gets them with the device-I/O seccomp filter.
  Result<std::uint8_t> add_virtio(std::string id, std::unique_ptr<virtio::VirtioDevice> device,
                                  std::uint16_t segment = 0);
  Result<std::uint8_t> add_disk(const DiskConfig& disk);
  Result<std::uint8_t> add_net(const NetConfig& net);
  Result<std::uint8_t> add_vsock(const VsockConfig& vsock);
  Result<std::uint8_t> add_fs(const FsConfig& fs);
  // Tells the guest of a device just added; passes the result on.
  Result<std::uint8_t> announce(Result<std::uint8_t> slot);
  Status plug_memory_slots(std::uint64_t size);
  // The guest's _EJ0 wrote `slot` (a vCPU thread): recorded for finish_ejects().
  void on_eject(std::uint8_t slot);
  // COM1's data register coalesced while the guest polls it (when KVM can), drained by the vCPUs.
  Status setup_coalesced_serial(const Kvm& kvm, const KvmVcpu& vcpu0, std::size_t mmap_size);
  Status setup_vcpus(const Kvm& kvm, const VmConfig& config, const boot::BootInfo& boot_info,
                     SeccompMode seccomp);
  // Makes KVM vCPU `id`: CPUID, MSRs, FPU, LAPIC, and with `boot_info` the boot CPU's registers.
  Result<KvmVcpu> create_vcpu(std::uint32_t id, const boot::BootInfo* boot_info);
  // Gives KVM vCPU `id` its thread (not started), online.
  void add_vcpu(std::uint32_t id, KvmVcpu kvm_vcpu);
  // The guest's _EJ0 let vCPU `id` go (a vCPU thread): recorded for finish_ejects().
  void on_cpu_eject(std::uint32_t id);
  void on_power(devices::PowerEvent event);
  void on_error(const Error& error);

  memory::GuestMemory memory_;
  KvmVm kvm_vm_;
  EventFd exit_event_;
  devices::Bus pio_{"port I/O"};
  devices::Bus mmio_{"MMIO"};
  KvmInterruptRouter router_{kvm_vm_};
  KvmMemorySlots memory_slots_;
  KvmIoEvents io_events_{kvm_vm_};
  std::unique_ptr<pci::Platform> platform_;  // segment 0
  std::vector<std::unique_ptr<pci::Platform>> segments_;  // segments 1, 2, ... (virtio only)
  // PCI segment `segment`'s platform (0: platform_); it exists.
  pci::Platform& segment(std::uint16_t segment);
  std::shared_ptr<devices::Serial> serial_;
  std::unique_ptr<Passthrough> passthrough_;  // VFIO devices; null without --device
  std::unique_ptr<VirtualIommu> viommu_;      // null unless a device has iommu=on
  std::vector<VirtioFunction> virtio_;
  virtio::VirtioMem* mem_ = nullptr;  // owned by its transport, one of virtio_; null: none
  std::shared_ptr<virtio::VirtioPciDevice> mem_transport_;
  SeccompMode seccomp_;
  FsConnector connect_fs_;
  bool acpi_events_;  // the guest was told of the GED, its slots and the power button
  // The Generic Event Device's line, which the PCI slots, the power button and the vCPU
  // registers raise.
  std::shared_ptr<devices::InterruptLine> ged_irq_;
  std::shared_ptr<pci::AcpiHotplug> hotplug_;
  std::shared_ptr<devices::PowerButton> power_button_;
  std::shared_ptr<devices::AcpiSlots> cpu_hotplug_;  // null without spare vCPUs
  // ACPI memory hot-plug: a slot per DIMM of the hot-pluggable region; null without.
  std::shared_ptr<devices::AcpiSlots> dimms_;
  std::uint64_t dimm_size_ = 0;
  EventFd hotplug_event_;
  std::mutex ejected_mutex_;
  std::uint32_t ejected_ = 0;  // slots the guest ejected, by bit
  std::vector<std::uint32_t> ejected_cpus_;  // vCPUs the guest ejected (ejected_mutex_)

  mutable std::mutex outcome_mutex_;
  Outcome outcome_ = Outcome::kRunning;
  std::optional<Error> error_;

  // Last: vCPU threads stop before the devices and memory they use are destroyed.
  std::unique_ptr<CoalescedRing> coalesced_;  // before the vCPUs that drain it
  // What creating a vCPU after boot needs (create_vcpu), fixed when the VM is made.
  struct VcpuSetup {
    std::vector<kvm_cpuid_entry2> supported_cpuid;
    std::size_t mmap_size = 0;
    bool tsc_deadline = false;
    std::uint32_t possible = 1;  // every vCPU's CPUID counts this many cores
  };
  VcpuSetup vcpu_setup_;
  bool running_ = false;  // start() ran and stop() has not (the VMM thread)
  // By vCPU id: created (KVM cannot destroy a vCPU: an ejected one waits here to come back),
  // online (should run), asked back (an eject was requested).
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  std::vector<bool> vcpu_online_;
  std::vector<bool> vcpu_leaving_;
};

}  // namespace keel::vmm
