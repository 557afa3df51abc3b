#include "tests/unit/vfio/fake_vfio_sys.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>

namespace keel::vfio::testing {
namespace {

constexpr std::uint16_t kPadCapId = 0x7ff0;  // an id no kernel uses: must be skipped
constexpr std::uint64_t kPage = 4096;

template <typename T>
void put(std::vector<std::uint8_t>& buf, std::size_t offset, const T& value) {
  if (buf.size() < offset + sizeof(T)) {
    buf.resize(offset + sizeof(T));
  }
  std::memcpy(buf.data() + offset, &value, sizeof(T));
}

// Appends one capability (header + body bytes) and links the previous one to it.
void add_cap(std::vector<std::uint8_t>& buf, std::size_t& prev_next_field, std::uint16_t id,
             std::uint16_t version, const std::vector<std::uint8_t>& body) {
  const auto offset = static_cast<std::uint32_t>(buf.size());
  if (prev_next_field != 0) {
    put(buf, prev_next_field, offset);
  }
  vfio_info_cap_header header{id, version, 0};
  put(buf, offset, header);
  buf.insert(buf.end(), body.begin(), body.end());
  prev_next_field = offset + offsetof(vfio_info_cap_header, next);
}

template <typename T>
std::vector<std::uint8_t> bytes_of(const T& value) {
  std::vector<std::uint8_t> out(sizeof(T));
  std::memcpy(out.data(), &value, sizeof(T));
  return out;
}

// The argsz protocol of every VFIO info ioctl: a caller whose buffer is too small gets the fixed
// header with argsz raised, CAPS set and cap_offset 0; otherwise the whole reply.
template <typename Head>
void reply_with(const std::vector<std::uint8_t>& full, void* arg, std::uint32_t caps_flag) {
  std::uint32_t argsz = 0;
  std::memcpy(&argsz, arg, sizeof(argsz));
  if (argsz < full.size()) {
    Head head{};
    std::memcpy(&head, full.data(), std::min(sizeof(head), full.size()));
    head.argsz = static_cast<std::uint32_t>(full.size());
    head.flags |= caps_flag;
    head.cap_offset = 0;
    std::memcpy(arg, &head, std::min<std::size_t>(sizeof(head), argsz));
    return;
  }
  std::memcpy(arg, full.data(), full.size());
  std::memcpy(arg, &argsz, sizeof(argsz));  // the kernel leaves argsz as the caller sent it
}

}  // namespace

FakeVfioSys::FakeVfioSys(FakeKernelConfig config) : config_(std::move(config)) {}

FakeVfioSys::~FakeVfioSys() = default;

void FakeVfioSys::add_group(std::uint32_t number, std::vector<FakeDevice> devices, bool viable) {
  for (auto& device : devices) {
    if (device.flags == 0) {
      device.flags = VFIO_DEVICE_FLAGS_PCI;
    }
  }
  groups_[number] = GroupState{std::move(devices), viable, -1};
}

void FakeVfioSys::inject(unsigned long request, int nth, int err) {
  injections_.push_back({request, nth, err});
}

void FakeVfioSys::inject_open(const std::string& path, int err) { open_faults_[path] = err; }

void FakeVfioSys::take_entries(std::uint32_t n) { containers_.back().taken += n; }

int FakeVfioSys::calls(unsigned long request) const {
  auto it = calls_.find(request);
  return it == calls_.end() ? 0 : it->second;
}

std::uint32_t FakeVfioSys::avail_of(const ContainerState& c) const {
  const std::uint64_t used = c.mappings.size() + c.taken;
  return used >= c.limit ? 0 : static_cast<std::uint32_t>(c.limit - used);
}

std::uint32_t FakeVfioSys::avail() const { return avail_of(containers_.back()); }

const std::map<std::uint64_t, FakeMapping>& FakeVfioSys::mappings() const {
  return containers_.back().mappings;
}

std::uint64_t FakeVfioSys::pinned_bytes() const {
  std::uint64_t total = 0;
  for (const auto& [iova, mapping] : containers_.back().mappings) {
    total += mapping.size;
  }
  return total;
}

int FakeVfioSys::unmap_all_calls() const { return containers_.back().unmap_all_calls; }

bool FakeVfioSys::iommu_set() const { return containers_.back().iommu_set; }

int FakeVfioSys::group_container(std::uint32_t number) const {
  auto it = groups_.find(number);
  return it == groups_.end() ? -1 : it->second.container;
}

Result<int> FakeVfioSys::new_fd(const std::string& name, Node node, std::uint64_t size) {
  const int fd = ::memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) {
    return Error::from_errno("fake: memfd_create " + name);
  }
  if (size != 0 && ::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    Error error = Error::from_errno("fake: ftruncate " + name);
    ::close(fd);
    return error;
  }
  nodes_[fd] = std::move(node);
  return fd;
}

Result<UniqueFd> FakeVfioSys::open(const std::string& path) {
  if (auto fault = open_faults_.find(path); fault != open_faults_.end()) {
    return Error::from_errno(fault->second, "open " + path);
  }
  if (path == "/dev/vfio/vfio") {
    ContainerState state;
    state.limit = config_.dma_entry_limit;
    containers_.push_back(state);
    auto fd = new_fd("fake-container",
                     Node{Kind::kContainer, static_cast<int>(containers_.size()) - 1, 0, {}}, 0);
    if (!fd) {
      return fd.error();
    }
    return UniqueFd(*fd);
  }
  const std::string prefix = "/dev/vfio/";
  if (path.rfind(prefix, 0) == 0) {
    const std::string number = path.substr(prefix.size());
    if (!number.empty() && number.find_first_not_of("0123456789") == std::string::npos) {
      const auto group = static_cast<std::uint32_t>(std::stoul(number));
      if (groups_.count(group) != 0) {
        auto fd = new_fd("fake-group", Node{Kind::kGroup, -1, group, {}}, 0);
        if (!fd) {
          return fd.error();
        }
        return UniqueFd(*fd);
      }
    }
  }
  return Error::from_errno(ENOENT, "open " + path);
}

Result<int> FakeVfioSys::ioctl(int fd, unsigned long request, void* arg, const std::string& what) {
  const int nth = ++calls_[request];
  for (const auto& injection : injections_) {
    if (injection.request == request && injection.nth == nth) {
      return Error::from_errno(injection.err, what);
    }
  }
  auto node = nodes_.find(fd);
  if (node == nodes_.end() || ::fcntl(fd, F_GETFD) < 0) {
    return Error::from_errno(EBADF, what);
  }
  switch (node->second.kind) {
    case Kind::kContainer:
      return container_ioctl(containers_[static_cast<std::size_t>(node->second.container)], request,
                             arg, what);
    case Kind::kGroup:
      return group_ioctl(node->second.group, request, arg, what);
    case Kind::kDevice:
      return device_ioctl(node->second, request, arg, what);
  }
  return Error::from_errno(ENOTTY, what);
}

Result<int> FakeVfioSys::container_ioctl(ContainerState& c, unsigned long request, void* arg,
                                         const std::string& what) {
  const auto value = reinterpret_cast<std::uintptr_t>(arg);
  switch (request) {
    case VFIO_GET_API_VERSION:
      return config_.api_version;
    case VFIO_CHECK_EXTENSION:
      if (value == VFIO_TYPE1v2_IOMMU) {
        return config_.type1v2 ? 1 : 0;
      }
      if (value == VFIO_UNMAP_ALL) {
        return config_.unmap_all ? 1 : 0;
      }
      return value == VFIO_TYPE1_IOMMU ? 1 : 0;
    case VFIO_SET_IOMMU:
      if (value != VFIO_TYPE1v2_IOMMU || !config_.type1v2 || c.groups == 0 || c.iommu_set) {
        return Error::from_errno(EINVAL, what);
      }
      c.iommu_set = true;
      return 0;
    case VFIO_IOMMU_GET_INFO:
      if (!c.iommu_set) {
        return Error::from_errno(EINVAL, what);
      }
      return get_info(c, arg);
    case VFIO_IOMMU_MAP_DMA:
      return map_dma(c, arg, what);
    case VFIO_IOMMU_UNMAP_DMA:
      return unmap_dma(c, arg, what);
    default:
      return Error::from_errno(ENOTTY, what);
  }
}

Result<int> FakeVfioSys::get_info(ContainerState& c, void* arg) {
  std::vector<std::uint8_t> full;
  if (config_.info_blob) {
    full = *config_.info_blob;
  } else {
    vfio_iommu_type1_info head{};
    head.flags = VFIO_IOMMU_INFO_PGSIZES;
    head.iova_pgsizes = config_.iova_pgsizes;
    put(full, 0, head);
    std::size_t prev_next = 0;
    if (config_.report_migration) {
      vfio_iommu_type1_info_cap_migration migration{};
      migration.flags = 0;
      migration.pgsize_bitmap = 0x1000;
      migration.max_dirty_bitmap_size = 256ULL << 20;
      auto body = bytes_of(migration);
      body.erase(body.begin(), body.begin() + sizeof(vfio_info_cap_header));
      add_cap(full, prev_next, VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, 1, body);
    }
    if (config_.report_dma_avail) {
      const std::uint32_t avail = config_.unlimited ? 0xffffffffU : avail_of(c);
      add_cap(full, prev_next, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 1, bytes_of(avail));
    }
    if (config_.report_iova_ranges) {
      std::vector<std::uint8_t> body;
      const auto count = static_cast<std::uint32_t>(config_.iova_ranges.size());
      put(body, 0, count);
      put(body, 4, std::uint32_t{0});
      for (const auto& range : config_.iova_ranges) {
        vfio_iova_range raw{range.start, range.last};
        put(body, body.size(), raw);
      }
      add_cap(full, prev_next, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1, body);
    }
    const int pads = std::min(c.short_streak, config_.info_growth_rounds);
    for (int i = 0; i < pads; ++i) {
      add_cap(full, prev_next, kPadCapId, 1, std::vector<std::uint8_t>(8, 0xa5));
    }
    if (prev_next != 0) {
      vfio_iommu_type1_info fixed{};
      std::memcpy(&fixed, full.data(), sizeof(fixed));
      fixed.flags |= VFIO_IOMMU_INFO_CAPS;
      fixed.cap_offset = sizeof(vfio_iommu_type1_info);
      std::memcpy(full.data(), &fixed, sizeof(fixed));
    }
  }
  std::uint32_t argsz = 0;
  std::memcpy(&argsz, arg, sizeof(argsz));
  if (argsz < sizeof(std::uint32_t) * 4) {
    return Error::from_errno(EINVAL, "VFIO_IOMMU_GET_INFO");
  }
  c.short_streak = argsz < full.size() ? c.short_streak + 1 : 0;
  reply_with<vfio_iommu_type1_info>(full, arg, VFIO_IOMMU_INFO_CAPS);
  return 0;
}

Result<int> FakeVfioSys::map_dma(ContainerState& c, void* arg, const std::string& what) {
  vfio_iommu_type1_dma_map map{};
  std::memcpy(&map, arg, sizeof(map));
  const std::uint32_t prot = map.flags & (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
  if (!c.iommu_set || map.argsz < sizeof(map) || prot == 0 || map.size == 0 || map.iova % kPage != 0 ||
      map.size % kPage != 0 || map.vaddr % kPage != 0 || map.iova + map.size - 1 < map.iova) {
    return Error::from_errno(EINVAL, what);
  }
  const std::uint64_t last = map.iova + map.size - 1;
  // vfio_dma_do_map's order: overlap, entries, IOVA ranges, pinning.
  for (const auto& [iova, held] : c.mappings) {
    if (iova <= last && map.iova <= iova + held.size - 1) {
      return Error::from_errno(EEXIST, what);
    }
  }
  if (!config_.unlimited && avail_of(c) == 0) {
    return Error::from_errno(ENOSPC, what);
  }
  if (config_.report_iova_ranges) {
    const bool inside =
        std::any_of(config_.iova_ranges.begin(), config_.iova_ranges.end(),
                    [&](const IovaRange& r) { return r.start <= map.iova && last <= r.last; });
    if (!inside) {
      return Error::from_errno(EINVAL, what);
    }
  }
  std::uint64_t pinned = 0;
  for (const auto& [iova, held] : c.mappings) {
    pinned += held.size;
  }
  if (config_.memlock_bytes && pinned + map.size > *config_.memlock_bytes) {
    return Error::from_errno(ENOMEM, what);
  }
  c.mappings[map.iova] = FakeMapping{map.size, map.vaddr, prot};
  return 0;
}

Result<int> FakeVfioSys::unmap_dma(ContainerState& c, void* arg, const std::string& what) {
  vfio_iommu_type1_dma_unmap unmap{};
  std::memcpy(&unmap, arg, sizeof(unmap));
  if (!c.iommu_set || unmap.argsz < sizeof(unmap)) {
    return Error::from_errno(EINVAL, what);
  }
  std::uint64_t unmapped = 0;
  if ((unmap.flags & VFIO_DMA_UNMAP_FLAG_ALL) != 0) {
    if (!config_.unmap_all || unmap.iova != 0 || unmap.size != 0) {
      return Error::from_errno(EINVAL, what);
    }
    ++c.unmap_all_calls;
    for (const auto& [iova, held] : c.mappings) {
      unmapped += held.size;
    }
    c.mappings.clear();
  } else {
    if (unmap.flags != 0 || unmap.size == 0 || unmap.iova % kPage != 0 || unmap.size % kPage != 0) {
      return Error::from_errno(EINVAL, what);
    }
    const std::uint64_t start = unmap.iova;
    const std::uint64_t end = unmap.iova + unmap.size;  // exclusive
    // Type1v2 never splits: a mapping that straddles either end is EINVAL.
    for (const auto& [iova, held] : c.mappings) {
      const std::uint64_t held_end = iova + held.size;
      if ((iova < start && held_end > start) || (iova < end && held_end > end)) {
        return Error::from_errno(EINVAL, what);
      }
    }
    for (auto it = c.mappings.begin(); it != c.mappings.end();) {
      if (it->first >= start && it->first + it->second.size <= end) {
        unmapped += it->second.size;
        it = c.mappings.erase(it);
      } else {
        ++it;
      }
    }
  }
  unmap.size = unmapped;
  std::memcpy(arg, &unmap, sizeof(unmap));
  return 0;
}

Result<int> FakeVfioSys::group_ioctl(std::uint32_t number, unsigned long request, void* arg,
                                     const std::string& what) {
  GroupState& group = groups_.at(number);
  switch (request) {
    case VFIO_GROUP_GET_STATUS: {
      vfio_group_status status{};
      std::memcpy(&status, arg, sizeof(status));
      status.flags = (group.viable ? VFIO_GROUP_FLAGS_VIABLE : 0U) |
                     (group.container >= 0 ? VFIO_GROUP_FLAGS_CONTAINER_SET : 0U);
      std::memcpy(arg, &status, sizeof(status));
      return 0;
    }
    case VFIO_GROUP_SET_CONTAINER: {
      int container_fd = -1;
      std::memcpy(&container_fd, arg, sizeof(container_fd));
      auto node = nodes_.find(container_fd);
      if (node == nodes_.end() || node->second.kind != Kind::kContainer) {
        return Error::from_errno(EBADF, what);
      }
      if (!group.viable) {
        return Error::from_errno(EPERM, what);
      }
      if (group.container >= 0) {
        return Error::from_errno(EINVAL, what);
      }
      group.container = node->second.container;
      ++containers_[static_cast<std::size_t>(group.container)].groups;
      return 0;
    }
    case VFIO_GROUP_UNSET_CONTAINER: {
      if (group.container < 0) {
        return Error::from_errno(EINVAL, what);
      }
      ContainerState& c = containers_[static_cast<std::size_t>(group.container)];
      group.container = -1;
      if (--c.groups == 0) {
        // The last group out releases the IOMMU, and with it every mapping.
        c.iommu_set = false;
        c.mappings.clear();
      }
      return 0;
    }
    case VFIO_GROUP_GET_DEVICE_FD: {
      const std::string name(static_cast<const char*>(arg));
      if (group.container < 0 ||
          !containers_[static_cast<std::size_t>(group.container)].iommu_set) {
        return Error::from_errno(EINVAL, what);
      }
      auto device = std::find_if(group.devices.begin(), group.devices.end(),
                                 [&](const FakeDevice& d) { return d.bdf == name; });
      if (device == group.devices.end()) {
        return Error::from_errno(ENODEV, what);
      }
      std::uint32_t max_index = 0;
      for (const auto& region : device->regions) {
        max_index = std::max(max_index, region.index);
      }
      auto fd = new_fd("fake-device", Node{Kind::kDevice, -1, number, name, -1, 0},
                       region_offset(max_index + 1));
      if (!fd) {
        return fd.error();
      }
      for (const auto& region : device->regions) {
        const auto size = std::min<std::size_t>(region.contents.size(), region.size);
        if (size != 0 && ::pwrite(*fd, region.contents.data(), size,
                                  static_cast<off_t>(region_offset(region.index))) !=
                             static_cast<ssize_t>(size)) {
          Error error = Error::from_errno("fake: seeding region " + std::to_string(region.index));
          ::close(*fd);
          return error;
        }
      }
      return fd;
    }
    default:
      return Error::from_errno(ENOTTY, what);
  }
}

const FakeDevice* FakeVfioSys::find_device(const Node& node) const {
  const GroupState& group = groups_.at(node.group);
  for (const auto& device : group.devices) {
    if (device.bdf == node.bdf) {
      return &device;
    }
  }
  return nullptr;
}

Result<int> FakeVfioSys::device_ioctl(Node& node, unsigned long request, void* arg,
                                      const std::string& what) {
  const FakeDevice* device = find_device(node);
  if (device == nullptr) {
    return Error::from_errno(ENODEV, what);
  }
  switch (request) {
    case VFIO_DEVICE_GET_INFO: {
      vfio_device_info info{};
      std::memcpy(&info, arg, sizeof(info));
      if (info.argsz < sizeof(info)) {
        return Error::from_errno(EINVAL, what);
      }
      info.flags = device->flags;
      std::uint32_t regions = 0;
      for (const auto& region : device->regions) {
        regions = std::max(regions, region.index + 1);
      }
      info.num_regions = regions;
      info.num_irqs = static_cast<std::uint32_t>(device->irqs.size());
      std::memcpy(arg, &info, sizeof(info));
      return 0;
    }
    case VFIO_DEVICE_GET_REGION_INFO: {
      vfio_region_info head{};
      std::memcpy(&head, arg, sizeof(head));
      auto region = std::find_if(device->regions.begin(), device->regions.end(),
                                 [&](const FakeRegion& r) { return r.index == head.index; });
      if (head.argsz < sizeof(head) || region == device->regions.end()) {
        return Error::from_errno(EINVAL, what);
      }
      std::vector<std::uint8_t> full;
      vfio_region_info out{};
      out.flags = region->flags;
      out.index = region->index;
      out.size = region->size;
      out.offset = region_offset(region->index);
      put(full, 0, out);
      std::size_t prev_next = 0;
      if (region->sparse) {
        std::vector<std::uint8_t> body;
        put(body, 0, static_cast<std::uint32_t>(region->sparse->size()));
        put(body, 4, std::uint32_t{0});
        for (const auto& area : *region->sparse) {
          vfio_region_sparse_mmap_area raw{area.offset, area.size};
          put(body, body.size(), raw);
        }
        add_cap(full, prev_next, VFIO_REGION_INFO_CAP_SPARSE_MMAP, 1, body);
      }
      if (region->msix_mappable) {
        add_cap(full, prev_next, VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, 1, {});
      }
      if (prev_next != 0) {
        out.flags |= VFIO_REGION_INFO_FLAG_CAPS;
        out.cap_offset = sizeof(vfio_region_info);
        put(full, 0, out);
      }
      reply_with<vfio_region_info>(full, arg, VFIO_REGION_INFO_FLAG_CAPS);
      return 0;
    }
    case VFIO_DEVICE_GET_IRQ_INFO: {
      vfio_irq_info info{};
      std::memcpy(&info, arg, sizeof(info));
      if (info.argsz < sizeof(info) || info.index >= device->irqs.size()) {
        return Error::from_errno(EINVAL, what);
      }
      info.flags = device->irqs[info.index].flags;
      info.count = device->irqs[info.index].count;
      std::memcpy(arg, &info, sizeof(info));
      return 0;
    }
    case VFIO_DEVICE_SET_IRQS:
      return set_irqs(node, *device, arg, what);
    default:
      return Error::from_errno(ENOTTY, what);
  }
}

// vfio_set_irqs_validate_and_prepare, then vfio_pci_set_irqs_ioctl's state machine.
Result<int> FakeVfioSys::set_irqs(Node& node, const FakeDevice& device, void* arg,
                                  const std::string& what) {
  vfio_irq_set head{};
  std::memcpy(&head, arg, sizeof(head));
  const std::uint32_t data_type = head.flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
  const std::uint32_t action = head.flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
  const auto one_bit = [](std::uint32_t v) { return v != 0 && (v & (v - 1)) == 0; };
  if (head.argsz < sizeof(head) || head.index >= device.irqs.size() ||
      (head.flags & ~(VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK)) != 0 ||
      !one_bit(data_type) || !one_bit(action)) {
    return Error::from_errno(EINVAL, what);
  }
  const std::uint32_t max = device.irqs[head.index].count;
  if ((max == 0 && head.count != 0) || head.start >= max || head.count > max - head.start) {
    return Error::from_errno(EINVAL, what);
  }
  FakeIrqSet set{node.bdf, head.index, head.flags, head.start, head.count, {}, 0};
  if (data_type == VFIO_IRQ_SET_DATA_EVENTFD) {
    if (head.argsz < sizeof(head) + head.count * sizeof(std::int32_t)) {
      return Error::from_errno(EINVAL, what);
    }
    set.fds.resize(head.count);
    std::memcpy(set.fds.data(), static_cast<const std::uint8_t*>(arg) + sizeof(head),
                head.count * sizeof(std::int32_t));
    for (std::int32_t fd : set.fds) {
      if (fd < -1 || (fd >= 0 && ::fcntl(fd, F_GETFD) < 0)) {
        set.error = EBADF;
      }
    }
  }
  if (set.error == 0) {
    set.error = set_irqs_state(node, set);
  }
  irq_sets_.push_back(set);
  if (set.error != 0) {
    return Error::from_errno(set.error, what);
  }
  return 0;
}

// What vfio-pci does with a validated SET_IRQS: 0 or the errno it answers.
int FakeVfioSys::set_irqs_state(Node& node, const FakeIrqSet& set) {
  const std::uint32_t data_type = set.flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
  const std::uint32_t action = set.flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
  const int index = static_cast<int>(set.index);
  const bool disable = set.count == 0 && data_type == VFIO_IRQ_SET_DATA_NONE;
  if (index == VFIO_PCI_INTX_IRQ_INDEX) {
    if (action == VFIO_IRQ_SET_ACTION_TRIGGER) {
      if (node.irq_type == index && disable) {
        node.irq_type = -1;
        return 0;
      }
      if ((node.irq_type != index && node.irq_type != -1) || set.start != 0 || set.count != 1) {
        return EINVAL;
      }
      if (data_type == VFIO_IRQ_SET_DATA_EVENTFD && set.fds[0] >= 0) {
        node.irq_type = index;
      }
      return 0;
    }
    // MASK / UNMASK (with or without a resample eventfd) need INTx on.
    return node.irq_type == index && set.start == 0 && set.count == 1 ? 0 : EINVAL;
  }
  if (index == VFIO_PCI_MSI_IRQ_INDEX || index == VFIO_PCI_MSIX_IRQ_INDEX) {
    if (action != VFIO_IRQ_SET_ACTION_TRIGGER) {
      return ENOTTY;  // vfio-pci has no MSI masking
    }
    if (node.irq_type == index && disable) {
      node.irq_type = -1;
      node.vectors = 0;
      return 0;
    }
    if (node.irq_type != index && node.irq_type != -1) {
      return EINVAL;
    }
    if (data_type == VFIO_IRQ_SET_DATA_EVENTFD) {
      if (node.irq_type == index) {
        return set.start + set.count <= node.vectors ? 0 : EINVAL;
      }
      node.irq_type = index;
      node.vectors = set.start + set.count;
      return 0;
    }
    return node.irq_type == index ? 0 : EINVAL;
  }
  return EINVAL;  // ERR and REQ interrupts are not modelled
}

int FakeVfioSys::open_device_fd(const std::string& bdf) const {
  for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) {
    if (it->second.kind == Kind::kDevice && it->second.bdf == bdf &&
        ::fcntl(it->first, F_GETFD) >= 0) {
      return it->first;
    }
  }
  return -1;
}

int FakeVfioSys::active_irq(const std::string& bdf) const {
  const int fd = open_device_fd(bdf);
  return fd < 0 ? -1 : nodes_.at(fd).irq_type;
}

std::vector<std::uint8_t> FakeVfioSys::region_bytes(const std::string& bdf, std::uint32_t index,
                                                    std::uint64_t offset, std::size_t size) const {
  std::vector<std::uint8_t> bytes(size, 0);
  const int fd = open_device_fd(bdf);
  if (fd < 0 ||
      ::pread(fd, bytes.data(), size, static_cast<off_t>(region_offset(index) + offset)) !=
          static_cast<ssize_t>(size)) {
    bytes.clear();
  }
  return bytes;
}

void FakeVfioSys::set_region_bytes(const std::string& bdf, std::uint32_t index,
                                   std::uint64_t offset, const std::vector<std::uint8_t>& bytes) {
  const int fd = open_device_fd(bdf);
  if (fd >= 0) {
    (void)::pwrite(fd, bytes.data(), bytes.size(),
                   static_cast<off_t>(region_offset(index) + offset));
  }
}

// The injected errno for an access of a device fd, or 0.
int FakeVfioSys::region_fault(off_t offset, std::size_t size, bool write) const {
  const auto& faults = write ? write_faults_ : read_faults_;
  const auto first = static_cast<std::uint32_t>(static_cast<std::uint64_t>(offset) >> 28);
  const auto last =
      static_cast<std::uint32_t>((static_cast<std::uint64_t>(offset) + size - 1) >> 28);
  for (std::uint32_t index = first; size != 0 && index <= last; ++index) {
    if (auto it = faults.find(index); it != faults.end() && it->second != 0) {
      return it->second;
    }
  }
  return 0;
}

Status FakeVfioSys::pread(int fd, void* buf, std::size_t size, off_t offset,
                          const std::string& what) {
  if (const int err = region_fault(offset, size, false); err != 0) {
    return Error::from_errno(err, what);
  }
  const ssize_t n = ::pread(fd, buf, size, offset);
  if (n < 0) {
    return Error::from_errno(what);
  }
  if (static_cast<std::size_t>(n) != size) {
    return Error::from_errno(EIO, what);
  }
  return ok_status();
}

Status FakeVfioSys::pwrite(int fd, const void* buf, std::size_t size, off_t offset,
                           const std::string& what) {
  if (const int err = region_fault(offset, size, true); err != 0) {
    return Error::from_errno(err, what);
  }
  const ssize_t n = ::pwrite(fd, buf, size, offset);
  if (n < 0) {
    return Error::from_errno(what);
  }
  if (static_cast<std::size_t>(n) != size) {
    return Error::from_errno(EIO, what);
  }
  return ok_status();
}

Result<Mapping> FakeVfioSys::mmap(int fd, std::size_t size, int prot, off_t offset,
                                  const std::string& what) {
  return Mapping::create(size, prot, MAP_SHARED, fd, offset, what.c_str());
}

}  // namespace keel::vfio::testing
