#pragma once

#include <linux/vfio.h>

#include <climits>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "devices/vfio/device_fd.hpp"
#include "devices/vfio/iommu_info.hpp"
#include "devices/vfio/vfio_sys.hpp"

// A scriptable fake of the VFIO kernel interface for unit tests. It models what Keel relies on:
// a type1v2 container with a dma_entry_limit (avail drops on MAP, rises on UNMAP), the checks of
// vfio_dma_do_map in the kernel's order (EEXIST, ENOSPC, EINVAL outside the IOVA ranges, ENOMEM
// over a memlock budget), UNMAP_ALL, type1v2's refusal to split, GET_INFO capability chains laid
// out as Linux 6.1 does (MIGRATION, DMA_AVAIL, IOVA_RANGE; misaligned after DMA_AVAIL) with the
// argsz-growth protocol, groups with viability, and devices with regions (seeded with bytes: a
// config space, BAR registers) and IRQs, whose VFIO_DEVICE_SET_IRQS follows vfio-pci's rules (one
// interrupt type at a time; INTx unmask only while INTx is on). Any ioctl can fail with a chosen
// errno on its Nth call, and reads or writes of a region can be made to fail. Every fd it hands
// out is a real memfd, so UniqueFd can close it and pread/pwrite/mmap on a device fd work on real
// memory (a BAR's mmap and its pread see the same bytes).
namespace keel::vfio::testing {

struct FakeRegion {
  std::uint32_t index = 0;
  std::uint32_t flags = 0;  // VFIO_REGION_INFO_FLAG_*
  std::uint64_t size = 0;
  std::optional<std::vector<SparseMmapArea>> sparse;
  bool msix_mappable = false;
  // What the region holds when the device fd is opened (the rest reads as zeros).
  std::vector<std::uint8_t> contents = {};
};

struct FakeIrq {
  std::uint32_t index = 0;
  std::uint32_t flags = 0;
  std::uint32_t count = 0;
};

struct FakeDevice {
  std::string bdf;
  std::uint32_t flags = 0;  // VFIO_DEVICE_FLAGS_*; PCI by default (set in add_group)
  std::vector<FakeRegion> regions;
  std::vector<FakeIrq> irqs;
};

// One VFIO_DEVICE_SET_IRQS as the fake kernel saw it, and what it answered (0 or an errno).
struct FakeIrqSet {
  std::string bdf;
  std::uint32_t index = 0;
  std::uint32_t flags = 0;  // VFIO_IRQ_SET_DATA_* | VFIO_IRQ_SET_ACTION_*
  std::uint32_t start = 0;
  std::uint32_t count = 0;
  std::vector<std::int32_t> fds;  // with DATA_EVENTFD
  int error = 0;
};

// What the fake kernel is like. Change it before the objects under test open anything.
struct FakeKernelConfig {
  int api_version = VFIO_API_VERSION;
  bool type1v2 = true;
  bool unmap_all = true;                  // the VFIO_UNMAP_ALL extension
  std::uint32_t dma_entry_limit = 65535;  // copied by each container when it is opened
  bool report_dma_avail = true;           // false: Linux < 5.10
  bool report_migration = true;
  bool report_iova_ranges = true;
  bool unlimited = false;  // DMA_AVAIL reads UINT32_MAX and MAP never hits ENOSPC
  std::vector<IovaRange> iova_ranges = {{0x0, 0xfedfffff}, {0xfef00000, 0x7fffffffff}};
  std::uint64_t iova_pgsizes = 0x40201000;     // 4 KiB, 2 MiB, 1 GiB
  std::optional<std::uint64_t> memlock_bytes;  // pinned-bytes budget; unset: unlimited
  // Extra argsz growth rounds of GET_INFO: each call that did not fit makes the next reply 16
  // bytes bigger (an unknown capability appended), up to this many times. INT_MAX: forever.
  int info_growth_rounds = 0;
  // A raw GET_INFO reply served instead of the model (argsz protocol still applies).
  std::optional<std::vector<std::uint8_t>> info_blob;
};

// A held mapping of the fake container.
struct FakeMapping {
  std::uint64_t size = 0;
  std::uint64_t vaddr = 0;
  std::uint32_t flags = 0;  // VFIO_DMA_MAP_FLAG_READ | _WRITE
};

class FakeVfioSys final : public VfioSys {
 public:
  explicit FakeVfioSys(FakeKernelConfig config = {});
  ~FakeVfioSys() override;

  FakeKernelConfig& config() { return config_; }

  // A group /dev/vfio/<number> with its devices.
  void add_group(std::uint32_t number, std::vector<FakeDevice> devices, bool viable = true);
  // The nth call (1-based, counted since the fake was made) of `request` fails with `err`.
  void inject(unsigned long request, int nth, int err);
  // open(path) fails with `err` (every time).
  void inject_open(const std::string& path, int err);
  // Every pread (or pwrite) of a device fd inside region `index` fails with `err`; 0 heals.
  void fail_region_reads(std::uint32_t index, int err) { read_faults_[index] = err; }
  void fail_region_writes(std::uint32_t index, int err) { write_faults_[index] = err; }
  // Another user of the newest container takes `n` entries: avail drops, Keel's table does not.
  void take_entries(std::uint32_t n);

  // Observations (of the newest container unless said otherwise).
  int calls(unsigned long request) const;
  // Every ioctl request made so far and how many times.
  const std::map<unsigned long, int>& all_calls() const { return calls_; }
  std::uint32_t avail() const;  // the live value (limit - mapped - taken)
  const std::map<std::uint64_t, FakeMapping>& mappings() const;
  std::uint64_t pinned_bytes() const;
  int unmap_all_calls() const;
  int containers_opened() const { return static_cast<int>(containers_.size()); }
  bool iommu_set() const;
  // The container a group is attached to (index in open order), or -1.
  int group_container(std::uint32_t number) const;
  // Every VFIO_DEVICE_SET_IRQS that reached a device, in order.
  const std::vector<FakeIrqSet>& irq_sets() const { return irq_sets_; }
  // The interrupt type vfio-pci has on for the open device `bdf` (a VFIO_PCI_*_IRQ_INDEX), or -1.
  int active_irq(const std::string& bdf) const;
  // The bytes of region `index` of the open device `bdf`, as the device sees them; and a way to
  // change them behind Keel's back (device registers changing on their own).
  std::vector<std::uint8_t> region_bytes(const std::string& bdf, std::uint32_t index,
                                         std::uint64_t offset, std::size_t size) const;
  void set_region_bytes(const std::string& bdf, std::uint32_t index, std::uint64_t offset,
                        const std::vector<std::uint8_t>& bytes);

  // VfioSys
  Result<UniqueFd> open(const std::string& path) override;
  Result<int> ioctl(int fd, unsigned long request, void* arg, const std::string& what) override;
  Status pread(int fd, void* buf, std::size_t size, off_t offset, const std::string& what) override;
  Status pwrite(int fd, const void* buf, std::size_t size, off_t offset,
                const std::string& what) override;
  Result<Mapping> mmap(int fd, std::size_t size, int prot, off_t offset,
                       const std::string& what) override;

  // Where region `index` of a fake device lives in its fd.
  static std::uint64_t region_offset(std::uint32_t index) { return std::uint64_t{index} << 28; }

 private:
  struct ContainerState {
    std::uint32_t limit = 0;
    bool iommu_set = false;
    int groups = 0;
    std::map<std::uint64_t, FakeMapping> mappings;
    std::uint32_t taken = 0;
    int short_streak = 0;
    int unmap_all_calls = 0;
  };
  struct GroupState {
    std::vector<FakeDevice> devices;
    bool viable = true;
    int container = -1;
  };
  enum class Kind { kContainer, kGroup, kDevice };
  struct Node {
    Kind kind;
    int container = -1;         // kContainer
    std::uint32_t group = 0;    // kGroup, kDevice
    std::string bdf;            // kDevice
    int irq_type = -1;          // kDevice: the VFIO_PCI_*_IRQ_INDEX that is on, -1 for none
    std::uint32_t vectors = 0;  // kDevice: MSI/MSI-X vectors enabled with it
  };
  struct Injection {
    unsigned long request;
    int nth;
    int err;
  };

  Result<int> new_fd(const std::string& name, Node node, std::uint64_t size);
  Result<int> container_ioctl(ContainerState& c, unsigned long request, void* arg,
                              const std::string& what);
  Result<int> group_ioctl(std::uint32_t number, unsigned long request, void* arg,
                          const std::string& what);
  Result<int> device_ioctl(Node& node, unsigned long request, void* arg, const std::string& what);
  Result<int> set_irqs(Node& node, const FakeDevice& device, void* arg, const std::string& what);
  static int set_irqs_state(Node& node, const FakeIrqSet& set);
  int open_device_fd(const std::string& bdf) const;
  int region_fault(off_t offset, std::size_t size, bool write) const;
  Result<int> get_info(ContainerState& c, void* arg);
  Result<int> map_dma(ContainerState& c, void* arg, const std::string& what);
  Result<int> unmap_dma(ContainerState& c, void* arg, const std::string& what);
  std::uint32_t avail_of(const ContainerState& c) const;
  const FakeDevice* find_device(const Node& node) const;

  FakeKernelConfig config_;
  std::map<std::uint32_t, GroupState> groups_;
  std::vector<ContainerState> containers_;
  std::map<int, Node> nodes_;
  std::map<unsigned long, int> calls_;
  std::vector<Injection> injections_;
  std::map<std::string, int> open_faults_;
  std::map<std::uint32_t, int> read_faults_, write_faults_;
  std::vector<FakeIrqSet> irq_sets_;
};

}  // namespace keel::vfio::testing
