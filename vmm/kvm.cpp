#include "vmm/kvm.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>

#include "base/hex.hpp"
#include "vmm/kvm_abi.hpp"

namespace keel::vmm {
namespace {

constexpr int kKvmApiVersion = 12;

class KernelKvmSys final : public KvmSys {
 public:
  int ioctl(int fd, unsigned long request, std::uintptr_t arg) override {
    return ::ioctl(fd, request, arg);
  }
};

// ioctl through the seam, with pointer or integer arguments as ioctl(2) takes them.
template <typename T>
int kvm_ioctl(KvmSys& sys, int fd, unsigned long request, T arg) {
  if constexpr (std::is_pointer_v<T>) {
    return sys.ioctl(fd, request, reinterpret_cast<std::uintptr_t>(arg));
  } else {
    return sys.ioctl(fd, request, static_cast<std::uintptr_t>(arg));
  }
}

// A count header followed by `count` entries, laid out as the kernel expects (see kvm_abi.hpp).
template <typename Entry>
class CountedBuffer {
 public:
  explicit CountedBuffer(std::uint32_t count)
      : bytes_(sizeof(abi::CountHeader) + count * sizeof(Entry), 0) {
    header()->count = count;
  }
  explicit CountedBuffer(const std::vector<Entry>& entries)
      : CountedBuffer(static_cast<std::uint32_t>(entries.size())) {
    std::memcpy(bytes_.data() + sizeof(abi::CountHeader), entries.data(), entries.size() * sizeof(Entry));
  }
  void* data() { return bytes_.data(); }
  // The entries the kernel filled in (its count may be lower than the capacity).
  std::vector<Entry> entries() const {
    abi::CountHeader h{};
    std::memcpy(&h, bytes_.data(), sizeof h);
    std::vector<Entry> out(h.count);
    std::memcpy(out.data(), bytes_.data() + sizeof(abi::CountHeader), h.count * sizeof(Entry));
    return out;
  }

 private:
  abi::CountHeader* header() { return reinterpret_cast<abi::CountHeader*>(bytes_.data()); }
  std::vector<std::uint8_t> bytes_;
};

struct RequiredExtension {
  long id;
  const char* name;
};
constexpr RequiredExtension kRequired[] = {
    {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
    {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
    {KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
    {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
    {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
};

}  // namespace

std::shared_ptr<KvmSys> kernel_kvm_sys() {
  static const std::shared_ptr<KvmSys> sys = std::make_shared<KernelKvmSys>();
  return sys;
}

Result<Kvm> Kvm::open(const char* path, std::shared_ptr<KvmSys> sys) {
  UniqueFd fd(::open(path, O_RDWR | O_CLOEXEC));
  if (!fd) {
    const int err = errno;
    std::string hint;
    if (err == ENOENT) {
      hint = " (is the kvm module loaded? `modprobe kvm-intel` or `modprobe kvm-amd`)";
    } else if (err == EACCES) {
      hint = " (add your user to the kvm group or run as root)";
    }
    return Error::from_errno(err, std::string("open ") + path + hint);
  }
  const int version = kvm_ioctl(*sys, fd.get(), KVM_GET_API_VERSION, 0);
  if (version != kKvmApiVersion) {
    return Error::not_supported(std::string(path) + " speaks KVM API version " +
                                          std::to_string(version) + "; Keel needs version 12");
  }
  Kvm kvm(std::move(fd), std::move(sys));
  for (const RequiredExtension& ext : kRequired) {
    if (kvm.check_extension(ext.id) <= 0) {
      return Error::not_supported(std::string("this kernel's KVM lacks ") + ext.name +
                                            ", which Keel needs; use a newer host kernel");
    }
  }
  return kvm;
}

int Kvm::check_extension(long extension) const {
  const int r = kvm_ioctl(*sys_, fd_.get(), KVM_CHECK_EXTENSION, extension);
  return r < 0 ? 0 : r;
}

Result<std::vector<kvm_cpuid_entry2>> Kvm::supported_cpuid() const {
  // Start at KVM_MAX_CPUID_ENTRIES of Linux 6.1 (256): a larger nent is EINVAL there, and newer
  // kernels answer E2BIG when they have more, so grow only then.
  for (std::uint32_t count = 256; count <= 4096; count *= 2) {
    CountedBuffer<kvm_cpuid_entry2> buf(count);
    if (kvm_ioctl(*sys_, fd_.get(), abi::kGetSupportedCpuid, buf.data()) == 0) {
      return buf.entries();
    }
    if (errno != E2BIG) {
      return Error::from_errno("KVM_GET_SUPPORTED_CPUID");
    }
  }
  return Error::from_errno(E2BIG, "KVM_GET_SUPPORTED_CPUID: more than 4096 entries");
}

Result<std::size_t> Kvm::vcpu_mmap_size() const {
  const int size = kvm_ioctl(*sys_, fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (size <= 0) {
    return Error::from_errno("KVM_GET_VCPU_MMAP_SIZE");
  }
  return static_cast<std::size_t>(size);
}

Result<KvmVm> Kvm::create_vm() const {
  // EINTR can interrupt KVM_CREATE_VM while the kernel allocates; retrying is what it asks for.
  int fd = -1;
  do {
    fd = kvm_ioctl(*sys_, fd_.get(), KVM_CREATE_VM, 0);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    return Error::from_errno("KVM_CREATE_VM");
  }
  return KvmVm(UniqueFd(fd), sys_);
}

Status KvmVm::set_x86_private_pages(std::uint64_t tss_addr, std::uint64_t identity_map_addr) {
  if (kvm_ioctl(*sys_, fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &identity_map_addr) != 0) {
    return Error::from_errno("KVM_SET_IDENTITY_MAP_ADDR " + hex(identity_map_addr));
  }
  if (kvm_ioctl(*sys_, fd_.get(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(tss_addr)) != 0) {
    return Error::from_errno("KVM_SET_TSS_ADDR " + hex(tss_addr));
  }
  return ok_status();
}

Status KvmVm::create_irqchip() {
  if (kvm_ioctl(*sys_, fd_.get(), KVM_CREATE_IRQCHIP, 0) != 0) {
    return Error::from_errno("KVM_CREATE_IRQCHIP");
  }
  return ok_status();
}

Status KvmVm::create_pit() {
  kvm_pit_config config{};
  config.flags = KVM_PIT_SPEAKER_DUMMY;
  if (kvm_ioctl(*sys_, fd_.get(), KVM_CREATE_PIT2, &config) != 0) {
    return Error::from_errno("KVM_CREATE_PIT2");
  }
  return ok_status();
}

Status KvmVm::set_memory_region(std::uint32_t slot, std::uint64_t gpa, std::uint64_t size,
                                void* host, std::uint32_t flags) {
  kvm_userspace_memory_region region{};
  region.slot = slot;
  region.flags = flags;
  region.guest_phys_addr = gpa;
  region.memory_size = size;
  region.userspace_addr = reinterpret_cast<std::uint64_t>(host);
  if (kvm_ioctl(*sys_, fd_.get(), KVM_SET_USER_MEMORY_REGION, &region) != 0) {
    return Error::from_errno("KVM_SET_USER_MEMORY_REGION slot " + std::to_string(slot) + " gpa " +
                             hex(gpa) + " size " + hex(size));
  }
  return ok_status();
}

Status KvmVm::irqfd(int eventfd, std::uint32_t gsi) {
  kvm_irqfd request{};
  request.fd = static_cast<std::uint32_t>(eventfd);
  request.gsi = gsi;
  if (kvm_ioctl(*sys_, fd_.get(), KVM_IRQFD, &request) != 0) {
    return Error::from_errno("KVM_IRQFD gsi " + std::to_string(gsi));
  }
  return ok_status();
}

Status KvmVm::ioeventfd(std::uint64_t gpa, int eventfd, bool assign) {
  kvm_ioeventfd request{};
  request.addr = gpa;
  request.len = 0;  // any size: a driver may notify with a 16- or 32-bit write
  request.fd = eventfd;
  request.flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN;
  if (kvm_ioctl(*sys_, fd_.get(), KVM_IOEVENTFD, &request) != 0) {
    return Error::from_errno(std::string("KVM_IOEVENTFD ") + (assign ? "" : "deassign ") + hex(gpa));
  }
  return ok_status();
}

Status KvmVm::remove_irqfd(int eventfd, std::uint32_t gsi) {
  kvm_irqfd request{};
  request.fd = static_cast<std::uint32_t>(eventfd);
  request.gsi = gsi;
  request.flags = KVM_IRQFD_FLAG_DEASSIGN;
  if (kvm_ioctl(*sys_, fd_.get(), KVM_IRQFD, &request) != 0) {
    return Error::from_errno("KVM_IRQFD deassign gsi " + std::to_string(gsi));
  }
  return ok_status();
}

Status KvmVm::irqfd_resample(int eventfd, int resample_fd, std::uint32_t gsi) {
  kvm_irqfd request{};
  request.fd = static_cast<std::uint32_t>(eventfd);
  request.resamplefd = static_cast<std::uint32_t>(resample_fd);
  request.gsi = gsi;
  request.flags = KVM_IRQFD_FLAG_RESAMPLE;
  if (kvm_ioctl(*sys_, fd_.get(), KVM_IRQFD, &request) != 0) {
    return Error::from_errno("KVM_IRQFD resample gsi " + std::to_string(gsi));
  }
  return ok_status();
}

Status KvmVm::set_gsi_routing(const std::vector<kvm_irq_routing_entry>& entries) {
  CountedBuffer<kvm_irq_routing_entry> buf(entries);
  if (kvm_ioctl(*sys_, fd_.get(), abi::kSetGsiRouting, buf.data()) != 0) {
    return Error::from_errno("KVM_SET_GSI_ROUTING (" + std::to_string(entries.size()) + " routes)");
  }
  return ok_status();
}

Result<UniqueFd> KvmVm::create_vfio_device() {
  kvm_create_device request{};
  request.type = KVM_DEV_TYPE_VFIO;
  if (kvm_ioctl(*sys_, fd_.get(), KVM_CREATE_DEVICE, &request) != 0) {
    return Error::from_errno("KVM_CREATE_DEVICE KVM_DEV_TYPE_VFIO");
  }
  return UniqueFd(static_cast<int>(request.fd));
}

// KVM_DEV_VFIO_FILE_ADD/DEL (Linux 6.6's names for KVM_DEV_VFIO_GROUP_ADD/DEL, same values;
// 6.1's headers have only the old ones).
Status KvmVm::set_vfio_file(int kvm_vfio_fd, int vfio_fd, bool attached) {
  std::int32_t fd = vfio_fd;
  kvm_device_attr attr{};
  attr.group = KVM_DEV_VFIO_GROUP;
  attr.attr = attached ? KVM_DEV_VFIO_GROUP_ADD : KVM_DEV_VFIO_GROUP_DEL;
  attr.addr = reinterpret_cast<std::uint64_t>(&fd);
  if (kvm_ioctl(*sys_, kvm_vfio_fd, KVM_SET_DEVICE_ATTR, &attr) != 0) {
    return Error::from_errno(attached ? "KVM_SET_DEVICE_ATTR KVM_DEV_VFIO_FILE_ADD"
                                 : "KVM_SET_DEVICE_ATTR KVM_DEV_VFIO_FILE_DEL");
  }
  return ok_status();
}

Status KvmVm::coalesce_pio(std::uint16_t port, std::uint32_t size, bool on) {
  kvm_coalesced_mmio_zone zone{};
  zone.addr = port;
  zone.size = size;
  zone.pio = 1;
  if (kvm_ioctl(*sys_, fd_.get(), on ? KVM_REGISTER_COALESCED_MMIO : KVM_UNREGISTER_COALESCED_MMIO,
                &zone) != 0) {
    return Error::from_errno(std::string(on ? "KVM_REGISTER_COALESCED_MMIO" : "KVM_UNREGISTER_COALESCED_MMIO") +
                             " port " + hex(port));
  }
  return ok_status();
}

Result<KvmVcpu> KvmVm::create_vcpu(std::uint32_t id, std::size_t mmap_size) {
  UniqueFd fd(kvm_ioctl(*sys_, fd_.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(id)));
  if (!fd) {
    return Error::from_errno("KVM_CREATE_VCPU " + std::to_string(id));
  }
  KEEL_TRY(auto run,
           Mapping::create(mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0, "kvm_run"));
  return KvmVcpu(std::move(fd), std::move(run), sys_);
}

Status KvmVcpu::run() {
  if (kvm_ioctl(*sys_, fd_.get(), KVM_RUN, 0) != 0) {
    return Error::from_errno("KVM_RUN");
  }
  return ok_status();
}

Status KvmVcpu::nmi() {
  if (kvm_ioctl(*sys_, fd_.get(), KVM_NMI, 0) != 0) {
    return Error::from_errno("KVM_NMI");
  }
  return ok_status();
}

Result<std::uint32_t> KvmVcpu::mp_state() const {
  kvm_mp_state state{};
  if (kvm_ioctl(*sys_, fd_.get(), KVM_GET_MP_STATE, &state) != 0) {
    return Error::from_errno("KVM_GET_MP_STATE");
  }
  return state.mp_state;
}

Result<Mapping> KvmVcpu::map_page(std::size_t page) const {
  const long page_size = ::sysconf(_SC_PAGESIZE);
  return Mapping::create(static_cast<std::size_t>(page_size), PROT_READ | PROT_WRITE, MAP_SHARED,
                         fd_.get(), static_cast<off_t>(page * static_cast<std::size_t>(page_size)),
                         "vCPU mmap page");
}

Result<kvm_regs> KvmVcpu::regs() const {
  kvm_regs regs{};
  if (kvm_ioctl(*sys_, fd_.get(), KVM_GET_REGS, &regs) != 0) {
    return Error::from_errno("KVM_GET_REGS");
  }
  return regs;
}

Status KvmVcpu::set_regs(const kvm_regs& regs) {
  if (kvm_ioctl(*sys_, fd_.get(), KVM_SET_REGS, &regs) != 0) {
    return Error::from_errno("KVM_SET_REGS");
  }
  return ok_status();
}

Result<kvm_sregs> KvmVcpu::sregs() const {
  kvm_sregs sregs{};
  if (kvm_ioctl(*sys_, fd_.get(), KVM_GET_SREGS, &sregs) != 0) {
    return Error::from_errno("KVM_GET_SREGS");
  }
  return sregs;
}

Status KvmVcpu::set_sregs(const kvm_sregs& sregs) {
  if (kvm_ioctl(*sys_, fd_.get(), KVM_SET_SREGS, &sregs) != 0) {
    return Error::from_errno("KVM_SET_SREGS");
  }
  return ok_status();
}

Status KvmVcpu::set_fpu(const kvm_fpu& fpu) {
  if (kvm_ioctl(*sys_, fd_.get(), KVM_SET_FPU, &fpu) != 0) {
    return Error::from_errno("KVM_SET_FPU");
  }
  return ok_status();
}

Status KvmVcpu::set_cpuid(const std::vector<kvm_cpuid_entry2>& entries) {
  CountedBuffer<kvm_cpuid_entry2> buf(entries);
  if (kvm_ioctl(*sys_, fd_.get(), abi::kSetCpuid2, buf.data()) != 0) {
    return Error::from_errno("KVM_SET_CPUID2 (" + std::to_string(entries.size()) + " entries)");
  }
  return ok_status();
}

Status KvmVcpu::set_msrs(const std::vector<kvm_msr_entry>& msrs) {
  CountedBuffer<kvm_msr_entry> buf(msrs);
  const int set = kvm_ioctl(*sys_, fd_.get(), abi::kSetMsrs, buf.data());
  if (set < 0) {
    return Error::from_errno("KVM_SET_MSRS");
  }
  if (static_cast<std::size_t>(set) != msrs.size()) {
    return Error::from_errno(EINVAL, "KVM_SET_MSRS refused MSR " + hex(msrs[static_cast<std::size_t>(set)].index));
  }
  return ok_status();
}

Result<kvm_lapic_state> KvmVcpu::lapic() const {
  kvm_lapic_state state{};
  if (kvm_ioctl(*sys_, fd_.get(), KVM_GET_LAPIC, &state) != 0) {
    return Error::from_errno("KVM_GET_LAPIC");
  }
  return state;
}

Status KvmVcpu::set_lapic(const kvm_lapic_state& state) {
  if (kvm_ioctl(*sys_, fd_.get(), KVM_SET_LAPIC, &state) != 0) {
    return Error::from_errno("KVM_SET_LAPIC");
  }
  return ok_status();
}

}  // namespace keel::vmm
