#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

#include "base/mapping.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "vmm/kvm_sys.hpp"

namespace keel::vmm {

class KvmVm;
class KvmVcpu;

// /dev/kvm: the one place that opens it and asks system-wide questions.
class Kvm {
 public:
  // open("/dev/kvm"); KVM_GET_API_VERSION must be 12; checks the extensions Keel relies on.
  // Every ioctl of this Kvm and of the VMs and vCPUs it creates goes through `sys`.
  static Result<Kvm> open(const char* path = "/dev/kvm",
                          std::shared_ptr<KvmSys> sys = kernel_kvm_sys());

  // KVM_CHECK_EXTENSION on the system fd; returns the extension's value (0 = absent).
  int check_extension(long extension) const;
  // KVM_GET_SUPPORTED_CPUID, growing the buffer on E2BIG.
  Result<std::vector<kvm_cpuid_entry2>> supported_cpuid() const;
  // KVM_GET_VCPU_MMAP_SIZE: size of the kvm_run area each vCPU maps.
  Result<std::size_t> vcpu_mmap_size() const;
  // KVM_CREATE_VM with the default machine type.
  Result<KvmVm> create_vm() const;

 private:
  Kvm(UniqueFd fd, std::shared_ptr<KvmSys> sys) : fd_(std::move(fd)), sys_(std::move(sys)) {}
  UniqueFd fd_;
  std::shared_ptr<KvmSys> sys_;
};

// A VM fd and the ioctls on it.
class KvmVm {
 public:
  KvmVm(UniqueFd fd, std::shared_ptr<KvmSys> sys) : fd_(std::move(fd)), sys_(std::move(sys)) {}
  int fd() const { return fd_.get(); }

  // KVM_SET_TSS_ADDR and KVM_SET_IDENTITY_MAP_ADDR: three plus one pages Intel VMX needs below
  // 4 GiB; they must not overlap RAM or MMIO, so they sit just under the I/O APIC.
  Status set_x86_private_pages(std::uint64_t tss_addr, std::uint64_t identity_map_addr);
  // KVM_CREATE_IRQCHIP: in-kernel PIC, I/O APIC and local APICs.
  Status create_irqchip();
  // KVM_CREATE_PIT2 with KVM_PIT_SPEAKER_DUMMY: the in-kernel i8254 (ports 0x40-0x43, 0x61).
  Status create_pit();
  // KVM_SET_USER_MEMORY_REGION for slot `slot`: guest [gpa, gpa+size) backed by `host`.
  Status set_memory_region(std::uint32_t slot, std::uint64_t gpa, std::uint64_t size, void* host,
                           std::uint32_t flags = 0);
  // KVM_IRQFD: signalling `eventfd` injects an edge on `gsi`.
  Status irqfd(int eventfd, std::uint32_t gsi);
  // KVM_IRQFD with KVM_IRQFD_FLAG_RESAMPLE: `eventfd` asserts the level-triggered `gsi`; on EOI
  // KVM deasserts it and signals `resample_fd`.
  Status irqfd_resample(int eventfd, int resample_fd, std::uint32_t gsi);
  // KVM_IRQFD with KVM_IRQFD_FLAG_DEASSIGN.
  Status remove_irqfd(int eventfd, std::uint32_t gsi);
  // KVM_IOEVENTFD (any access size, no data match): guest writes to MMIO `gpa` signal
  // `eventfd` without an exit; `assign` false removes it.
  Status ioeventfd(std::uint64_t gpa, int eventfd, bool assign);
  // KVM_SET_GSI_ROUTING: replaces the whole routing table (irqchip pins and MSI routes).
  Status set_gsi_routing(const std::vector<kvm_irq_routing_entry>& entries);
  // KVM_CREATE_DEVICE(KVM_DEV_TYPE_VFIO): the KVM-VFIO pseudo device.
  Result<UniqueFd> create_vfio_device();
  // KVM_SET_DEVICE_ATTR on the KVM-VFIO device: KVM_DEV_VFIO_FILE_ADD when `attached`, else
  // KVM_DEV_VFIO_FILE_DEL (a hot-removed device's), of a group fd (type1) or a device cdev fd
  // (iommufd).
  Status set_vfio_file(int kvm_vfio_fd, int vfio_fd, bool attached);
  // KVM_REGISTER_COALESCED_MMIO (KVM_UNREGISTER_... when `on` is false) for the ports
  // [port, port + size): the guest's writes there go to the coalesced ring without an exit.
  Status coalesce_pio(std::uint16_t port, std::uint32_t size, bool on);
  // KVM_CREATE_VCPU, then maps its kvm_run area.
  Result<KvmVcpu> create_vcpu(std::uint32_t id, std::size_t mmap_size);

 private:
  UniqueFd fd_;
  std::shared_ptr<KvmSys> sys_;
};

// A vCPU fd, its kvm_run area, and the register ioctls.
class KvmVcpu {
 public:
  KvmVcpu(UniqueFd fd, Mapping run, std::shared_ptr<KvmSys> sys)
      : fd_(std::move(fd)), run_(std::move(run)), sys_(std::move(sys)) {}
  int fd() const { return fd_.get(); }
  kvm_run* run_area() const { return reinterpret_cast<kvm_run*>(run_.data()); }

  // KVM_RUN: returns when the vCPU exits to userspace (exit reason in run_area()).
  // EINTR when a signal kicked it; EAGAIN when asked to exit before entering.
  Status run();
  // Maps page `page` of the vCPU's mmap area on its own (the coalesced ring is one of them).
  Result<Mapping> map_page(std::size_t page) const;
  Result<kvm_regs> regs() const;                      // KVM_GET_REGS
  Status set_regs(const kvm_regs& regs);              // KVM_SET_REGS
  Result<kvm_sregs> sregs() const;                    // KVM_GET_SREGS
  Status set_sregs(const kvm_sregs& sregs);           // KVM_SET_SREGS
  Status set_fpu(const kvm_fpu& fpu);                 // KVM_SET_FPU
  Status set_cpuid(const std::vector<kvm_cpuid_entry2>& entries);  // KVM_SET_CPUID2
  // KVM_SET_MSRS: all must be accepted, otherwise the error names the first refused index.
  Status set_msrs(const std::vector<kvm_msr_entry>& msrs);
  Result<kvm_lapic_state> lapic() const;              // KVM_GET_LAPIC
  Status set_lapic(const kvm_lapic_state& state);     // KVM_SET_LAPIC
  // KVM_NMI: queues a non-maskable interrupt for the vCPU. Call it from the vCPU's own thread
  // between two KVM_RUNs: another thread's call would wait until the vCPU next exits.
  Status nmi();
  Result<std::uint32_t> mp_state() const;  // KVM_GET_MP_STATE: KVM_MP_STATE_*

 private:
  UniqueFd fd_;
  Mapping run_;
  std::shared_ptr<KvmSys> sys_;
};

}  // namespace keel::vmm
