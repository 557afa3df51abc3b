#include "devices/virtio/virtio_pci.hpp"

#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_pci.h>

#include <algorithm>
#include <cstring>

#include "base/hex.hpp"
#include "base/log.hpp"

namespace keel::virtio {
namespace {

namespace L = pci_layout;

constexpr std::uint16_t kVendor = 0x1af4;
constexpr std::uint16_t kModernDeviceBase = 0x1040;
constexpr std::uint16_t kNoVector = VIRTIO_MSI_NO_VECTOR;
constexpr std::uint16_t kCommandMask = 0x0406;  // memory decode, bus master, INTx disable
constexpr std::uint16_t kStatusCapList = 0x10;
constexpr std::uint8_t kCapVendor = 0x09;
constexpr std::uint64_t kCommonSize = 0x38;  // through queue_device_hi (virtio 1.0 layout)
constexpr std::uint8_t kIsrQueue = 0x1;
static_assert(sizeof(virtio_pci_common_cfg) ==
              kCommonSize);  // through queue_device_hi (virtio 1.0 layout)

// Vendor capabilities, in order, at these config-space offsets; then MSI-X.
constexpr std::uint16_t kCapCommon = 0x40, kCapIsr = 0x50, kCapDevice = 0x60, kCapNotify = 0x70,
                        kCapPciCfg = 0x84, kCapMsixAt = 0x98;

std::uint32_t class_code(std::uint32_t type) {
  return type == VIRTIO_ID_IOMMU ? 0x088000 : 0xff0000;  // "other system peripheral" : other
}

// Guest-triggered warnings: the first few are logged, the rest only counted, so that a driver
// cannot flood the log.
bool first_few(std::uint64_t& count) { return count++ < 10; }

bool overlaps(std::uint64_t a, std::uint64_t alen, std::uint64_t b, std::uint64_t blen) {
  return a < b + blen && b < a + alen;
}

// The transport's mutex, already held by the calling thread, as condition_variable_any waits on
// it: released while waiting, held again after.
struct HeldLock {
  std::mutex& mutex;
  void lock() { mutex.lock(); }
  void unlock() { mutex.unlock(); }
};

std::uint64_t load(std::span<const std::uint8_t> bytes) {
  std::uint64_t v = 0;
  std::memcpy(&v, bytes.data(), std::min<std::size_t>(bytes.size(), 8));
  return v;
}

// Forwards BAR 0 accesses from the MMIO bus to the device, while it exists.
class BarWindow : public devices::BusDevice {
 public:
  explicit BarWindow(std::weak_ptr<VirtioPciDevice> device) : device_(std::move(device)) {}
  void read(std::uint64_t offset, std::span<std::uint8_t> data) override {
    if (auto d = device_.lock()) {
      d->bar_read(offset, data);
    } else {
      std::fill(data.begin(), data.end(), 0xff);
    }
  }
  void write(std::uint64_t offset, std::span<const std::uint8_t> data) override {
    if (auto d = device_.lock()) {
      d->bar_write(offset, data);
    }
  }

 private:
  std::weak_ptr<VirtioPciDevice> device_;
};

}  // namespace

Result<std::shared_ptr<VirtioPciDevice>> VirtioPciDevice::create(
    std::unique_ptr<VirtioDevice> device, const memory::GuestMemory& memory,
    pci::Platform& platform, const QueueWorker::ThreadStart& thread_start) {
  if (device->num_queues() == 0 || device->num_queues() > 64) {
    return Error::invalid("virtio device with " + std::to_string(device->num_queues()) +
                          " queues; the transport takes 1 to 64");
  }
  KEEL_TRY(const std::uint64_t bar, platform.bars().allocate(L::kBarSize, pci::BarSpace::kMmio64));
  std::shared_ptr<VirtioPciDevice> d(new VirtioPciDevice(std::move(device), memory, platform, bar));
  const bool external = d->device_->external();
  if (d->device_->uses_workers() || external) {
    for (std::uint16_t q = 0; q < d->queues_.size(); ++q) {
      if (!d->device_->consumes(q)) {
        continue;
      }
      const std::string name = "virtio" + std::to_string(d->device_->device_type()) + "-q" +
                               std::to_string(q);
      if (external) {
        KEEL_TRY(auto kick, EventFd::create(EFD_NONBLOCK));
        d->queues_[q].kick = std::make_unique<EventFd>(std::move(kick));
        KEEL_TRY(d->queues_[q].worker,
                 QueueWorker::start(name, [raw = d.get(), q] { return raw->external_interrupt(q); },
                                    thread_start));
        continue;
      }
      KEEL_TRY(d->queues_[q].worker,
               QueueWorker::start(name, [raw = d.get(), q] { return raw->serve_queue(q); },
                                  thread_start, d->device_->queue_source(q)));
    }
  }
  return d;
}

VirtioPciDevice::VirtioPciDevice(std::unique_ptr<VirtioDevice> device,
                                 const memory::GuestMemory& memory, pci::Platform& platform,
                                 std::uint64_t bar_address)
    : device_(std::move(device)),
      memory_(memory),
      platform_(platform),
      bar_address_(bar_address),
      msix_(platform.router(), static_cast<std::uint16_t>(device_->num_queues() + 1)) {
  for (std::uint16_t q = 0; q < device_->num_queues(); ++q) {
    queues_.push_back(Queue{
        Virtqueue(memory_, device_->queue_max_size(q), device_->max_request_bytes()), kNoVector,
        nullptr, false, nullptr});
  }
  build_config_space();
}

VirtioPciDevice::~VirtioPciDevice() {
  if (registered_) {
    io_events(*registered_, false);
    (void)platform_.mmio().remove(*registered_);
  }
  for (Queue& q : queues_) {
    q.worker.reset();  // joins: a batch being served is returned first
  }
  platform_.bars().release(bar_address_, L::kBarSize, pci::BarSpace::kMmio64);
}

void VirtioPciDevice::build_config_space() {
  const std::uint32_t type = device_->device_type();
  config_.set_identity(kVendor, static_cast<std::uint16_t>(kModernDeviceBase + type),
                       class_code(type), 1);
  config_.set16(pci::kSubsystemVendorId, kVendor);
  config_.set16(pci::kSubsystemId, 0x40);
  config_.set16(pci::kStatus, kStatusCapList);
  config_.set_writable16(pci::kCommand, kCommandMask);
  // BAR 0: 64-bit memory, not prefetchable; BAR 1 its upper half.
  config_.set32(pci::kBar0, static_cast<std::uint32_t>(bar_address_) | 0x4);
  config_.set32(pci::kBar0 + 4, static_cast<std::uint32_t>(bar_address_ >> 32));
  config_.set_writable32(pci::kBar0, static_cast<std::uint32_t>(~(L::kBarSize - 1)) & ~0xfU);
  config_.set_writable32(pci::kBar0 + 4, 0xffffffff);
  config_.set8(pci::kCapabilitiesPointer, kCapCommon);
  config_.set8(pci::kInterruptPin, 0);
  config_.set_writable8(pci::kInterruptLine, 0xff);

  auto vendor_cap = [this](std::uint16_t at, std::uint8_t next, std::uint8_t len,
                           std::uint8_t cfg_type, std::uint32_t offset, std::uint32_t length) {
    config_.set8(at, kCapVendor);
    config_.set8(at + 1, next);
    config_.set8(at + 2, len);
    config_.set8(at + 3, cfg_type);
    config_.set8(at + 4, 0);  // BAR 0
    config_.set32(at + 8, offset);
    config_.set32(at + 12, length);
  };
  vendor_cap(kCapCommon, kCapIsr, 16, VIRTIO_PCI_CAP_COMMON_CFG, L::kCommon, 0x1000);
  vendor_cap(kCapIsr, kCapDevice, 16, VIRTIO_PCI_CAP_ISR_CFG, L::kIsr, 4);
  vendor_cap(kCapDevice, kCapNotify, 16, VIRTIO_PCI_CAP_DEVICE_CFG, L::kDevice, 0x1000);
  vendor_cap(kCapNotify, kCapPciCfg, 20, VIRTIO_PCI_CAP_NOTIFY_CFG, L::kNotify,
             static_cast<std::uint32_t>(L::kNotifyMultiplier * queues_.size()));
  config_.set32(kCapNotify + 16, L::kNotifyMultiplier);
  // The PCI configuration access capability: bar, offset and length are the driver's to set;
  // its data dword is a window into the BAR (pci_cfg_access).
  vendor_cap(kCapPciCfg, kCapMsixAt, 20, VIRTIO_PCI_CAP_PCI_CFG, 0, 0);
  config_.set_writable8(kCapPciCfg + 4, 0xff);
  config_.set_writable32(kCapPciCfg + 8, 0xffffffff);
  config_.set_writable32(kCapPciCfg + 12, 0xffffffff);
  pci_cfg_cap_ = kCapPciCfg;

  msix_cap_ = kCapMsixAt;
  config_.set8(msix_cap_, pci::kCapIdMsix);
  config_.set8(msix_cap_ + 1, 0);
  config_.set16(msix_cap_ + 2, static_cast<std::uint16_t>(msix_.size() - 1));
  config_.set_writable16(msix_cap_ + 2, pci::kMsixEnable | pci::kMsixFunctionMask);
  config_.set32(msix_cap_ + 4, static_cast<std::uint32_t>(L::kMsixTable));  // BIR 0
  config_.set32(msix_cap_ + 8, static_cast<std::uint32_t>(L::kMsixPba));
}

// ---- configuration space ----

void VirtioPciDevice::read_config(std::uint16_t offset, std::span<std::uint8_t> data) {
  std::lock_guard lock(mutex_);
  if (overlaps(offset, data.size(), pci_cfg_cap_ + 16, 4)) {
    std::fill(data.begin(), data.end(), 0);
    pci_cfg_access(false, data);
    return;
  }
  config_.read(offset, data);
}

void VirtioPciDevice::write_config(std::uint16_t offset, std::span<const std::uint8_t> data) {
  std::lock_guard lock(mutex_);
  if (overlaps(offset, data.size(), pci_cfg_cap_ + 16, 4)) {
    std::vector<std::uint8_t> copy(data.begin(), data.end());
    pci_cfg_access(true, copy);
    return;
  }
  config_.write(offset, data);
  if (overlaps(offset, data.size(), pci::kCommand, 2) ||
      overlaps(offset, data.size(), pci::kBar0, 8)) {
    update_bar();
  }
  if (overlaps(offset, data.size(), msix_cap_ + 2, 2)) {
    msix_changed(msix_.set_control(config_.get16(msix_cap_ + 2)));
  }
}

void VirtioPciDevice::pci_cfg_access(bool write, std::span<std::uint8_t> data) {
  const std::uint8_t bar = config_.get8(pci_cfg_cap_ + 4);
  const std::uint32_t offset = config_.get32(pci_cfg_cap_ + 8);
  const std::uint32_t length = config_.get32(pci_cfg_cap_ + 12);
  if (bar != 0 || (length != 1 && length != 2 && length != 4) || offset > L::kBarSize - length) {
    ++ignored_accesses_;
    return;
  }
  const std::size_t n = std::min<std::size_t>(length, data.size());
  if (write) {
    bar_access(offset, {}, data.first(n));
  } else {
    bar_access(offset, data.first(n), {});
  }
}

void VirtioPciDevice::update_bar() {
  const std::uint64_t address = (static_cast<std::uint64_t>(config_.get32(pci::kBar0 + 4)) << 32) |
                                (config_.get32(pci::kBar0) & ~0xfULL);
  const bool decode = (config_.get16(pci::kCommand) & 0x2) != 0;
  const std::optional<std::uint64_t> wanted =
      decode && address != 0 ? std::optional(address) : std::nullopt;
  if (wanted == registered_) {
    return;
  }
  if (registered_) {
    io_events(*registered_, false);
    (void)platform_.mmio().remove(*registered_);
    registered_.reset();
  }
  if (wanted) {
    Status s =
        platform_.mmio().insert(std::make_shared<BarWindow>(weak_from_this()), *wanted, L::kBarSize);
    if (s.ok()) {
      registered_ = wanted;
      io_events(*wanted, true);
    } else if (first_few(guest_warnings_)) {
      log::warn("virtio", "BAR 0 not mapped: the guest placed it over something else",
                {{"address", hex(*wanted)}, {"error", s.error().message()}});
    }
  }
}

// A worker's queue notify address signals its eventfd inside the kernel while BAR 0 is decoded
// there. Without (a notification then reaches notify(), which signals the worker).
void VirtioPciDevice::io_events(std::uint64_t bar, bool add) {
  devices::IoEvents* events = platform_.io_events();
  if (events == nullptr) {
    return;
  }
  for (std::uint16_t q = 0; q < queues_.size(); ++q) {
    const int fd = notify_fd(queues_[q]);
    if (fd < 0) {
      continue;
    }
    const std::uint64_t gpa = bar + L::kNotify + std::uint64_t{L::kNotifyMultiplier} * q;
    Status s = add ? events->add(gpa, fd) : events->remove(gpa, fd);
    if (!s.ok() && first_few(guest_warnings_)) {
      log::warn("virtio", "queue notifications will exit to keel: no ioeventfd",
                {{"device_type", device_->device_type()},
                 {"queue", q},
                 {"address", hex(gpa)},
                 {"error", s.error().message()}});
    }
  }
}

int VirtioPciDevice::notify_fd(const Queue& q) const {
  if (q.kick) {
    return q.kick->fd();
  }
  return q.worker ? q.worker->kick_fd() : -1;
}

// ---- BAR 0 ----

void VirtioPciDevice::bar_read(std::uint64_t offset, std::span<std::uint8_t> data) {
  std::lock_guard lock(mutex_);
  std::fill(data.begin(), data.end(), 0);
  bar_access(offset, data, {});
}

void VirtioPciDevice::bar_write(std::uint64_t offset, std::span<const std::uint8_t> data) {
  std::lock_guard lock(mutex_);
  bar_access(offset, {}, data);
}

void VirtioPciDevice::bar_access(std::uint64_t offset, std::span<std::uint8_t> read_into,
                                 std::span<const std::uint8_t> write_from) {
  const bool write = !write_from.empty();
  const std::size_t size = write ? write_from.size() : read_into.size();
  if (size == 0 || offset >= L::kBarSize || size > L::kBarSize - offset) {
    ++ignored_accesses_;
    return;
  }
  const std::uint64_t region = offset & ~0xfffULL;
  const std::uint64_t at = offset - region;
  if (at + size > 0x1000) {  // across two regions: no register is like that
    ++ignored_accesses_;
    return;
  }
  switch (region) {
    case L::kCommon:
      write ? common_write(at, write_from) : common_read(at, read_into);
      break;
    case L::kIsr:
      if (!write && at == 0) {
        read_into[0] = isr_;
        isr_ = 0;
      }
      break;
    case L::kDevice:
      write ? device_->write_config(at, write_from) : device_->read_config(at, read_into);
      break;
    case L::kNotify:
      if (write && at % L::kNotifyMultiplier == 0) {
        notify(static_cast<std::uint16_t>(at / L::kNotifyMultiplier));
      }
      break;
    case L::kMsixTable:
      if (write) {
        msix_changed(msix_.write_table(at, write_from));
      } else {
        (void)msix_.read_table(at, read_into);  // what the table does not take reads zero
      }
      break;
    case L::kMsixPba:
      if (!write) {
        msix_.read_pba(at, read_into);
      }
      break;
    default:
      ++ignored_accesses_;
      break;
  }
}

// ---- common configuration ----

void VirtioPciDevice::common_read(std::uint64_t offset, std::span<std::uint8_t> data) {
  if (offset + data.size() > kCommonSize) {
    return;  // zeros
  }
  const std::uint64_t features = offered_features();
  virtio_pci_common_cfg c{};
  c.device_feature_select = device_feature_select_;
  c.device_feature = device_feature_select_ < 2
                         ? static_cast<std::uint32_t>(features >> (32 * device_feature_select_))
                         : 0;
  c.guest_feature_select = driver_feature_select_;
  c.guest_feature =
      driver_feature_select_ < 2
          ? static_cast<std::uint32_t>(driver_features_ >> (32 * driver_feature_select_))
          : 0;
  c.msix_config = msix_config_;
  c.num_queues = static_cast<std::uint16_t>(queues_.size());
  c.device_status = status_;
  c.config_generation = config_generation_;
  c.queue_select = queue_select_;
  if (queue_select_ < queues_.size()) {
    const Queue& q = queues_[queue_select_];
    c.queue_size = q.ring.size();
    c.queue_msix_vector = q.vector;
    c.queue_enable = q.ring.enabled() ? 1 : 0;
    c.queue_notify_off = queue_select_;
    c.queue_desc_lo = static_cast<std::uint32_t>(q.ring.desc);
    c.queue_desc_hi = static_cast<std::uint32_t>(q.ring.desc >> 32);
    c.queue_avail_lo = static_cast<std::uint32_t>(q.ring.avail);
    c.queue_avail_hi = static_cast<std::uint32_t>(q.ring.avail >> 32);
    c.queue_used_lo = static_cast<std::uint32_t>(q.ring.used);
    c.queue_used_hi = static_cast<std::uint32_t>(q.ring.used >> 32);
  }
  std::memcpy(data.data(), reinterpret_cast<const std::uint8_t*>(&c) + offset, data.size());
}

void VirtioPciDevice::common_write(std::uint64_t offset, std::span<const std::uint8_t> data) {
  if (offset + data.size() > kCommonSize) {
    ++ignored_accesses_;
    return;
  }
  // Each field the write touches takes its new value from the written bytes over the current
  // ones; read-only fields are not listed, so writes to them do nothing.
  std::uint8_t image[kCommonSize];
  common_read(0, image);
  std::memcpy(image + offset, data.data(), data.size());
  auto touched = [&](std::uint64_t field, std::uint64_t size) {
    return overlaps(offset, data.size(), field, size);
  };
  auto u16_at = [&](std::uint64_t at) { return static_cast<std::uint16_t>(load({image + at, 2})); };
  auto u32_at = [&](std::uint64_t at) { return static_cast<std::uint32_t>(load({image + at, 4})); };
  auto valid_vector = [&](std::uint16_t v) {
    return v < msix_.size() ? v : kNoVector;  // out of range reads back NO_VECTOR
  };
  using C = virtio_pci_common_cfg;
  if (touched(offsetof(C, device_feature_select), 4)) {
    device_feature_select_ = u32_at(offsetof(C, device_feature_select));
  }
  if (touched(offsetof(C, guest_feature_select), 4)) {
    driver_feature_select_ = u32_at(offsetof(C, guest_feature_select));
  }
  if (touched(offsetof(C, guest_feature), 4) && driver_feature_select_ < 2 &&
      (status_ & VIRTIO_CONFIG_S_FEATURES_OK) == 0) {
    const unsigned shift = 32 * driver_feature_select_;
    driver_features_ = (driver_features_ & ~(0xffffffffULL << shift)) |
                       (static_cast<std::uint64_t>(u32_at(offsetof(C, guest_feature))) << shift);
  }
  if (touched(offsetof(C, msix_config), 2)) {
    msix_config_ = valid_vector(u16_at(offsetof(C, msix_config)));
  }
  if (touched(offsetof(C, queue_select), 2)) {
    queue_select_ = u16_at(offsetof(C, queue_select));
  }
  if (queue_select_ < queues_.size()) {
    Queue& q = queues_[queue_select_];
    if (touched(offsetof(C, queue_msix_vector), 2)) {
      q.vector = valid_vector(u16_at(offsetof(C, queue_msix_vector)));
    }
    if (!q.ring.enabled()) {  // ring fields are fixed once the queue runs
      if (touched(offsetof(C, queue_size), 2)) {
        const std::uint16_t size = u16_at(offsetof(C, queue_size));
        if (size != 0 && (size & (size - 1)) == 0 && size <= q.ring.max_size()) {
          q.ring.set_size(size);
        }
      }
      auto address = [&](std::uint64_t lo) { return load({image + lo, 8}); };
      if (touched(offsetof(C, queue_desc_lo), 8)) {
        q.ring.desc = address(offsetof(C, queue_desc_lo));
      }
      if (touched(offsetof(C, queue_avail_lo), 8)) {
        q.ring.avail = address(offsetof(C, queue_avail_lo));
      }
      if (touched(offsetof(C, queue_used_lo), 8)) {
        q.ring.used = address(offsetof(C, queue_used_lo));
      }
      if (touched(offsetof(C, queue_enable), 2) && u16_at(offsetof(C, queue_enable)) == 1) {
        Status s = q.ring.enable();
        if (!s.ok() && first_few(guest_warnings_)) {
          log::warn("virtio", "queue not enabled",
                    {{"device_type", device_->device_type()},
                     {"queue", queue_select_},
                     {"error", s.error().message()},
                     {"fix", "the driver must place its rings in guest RAM, aligned"}});
        }
      }
    }
  }
  if (touched(offsetof(C, device_status), 1)) {
    set_status(image[offsetof(C, device_status)]);
  }
}

std::uint64_t VirtioPciDevice::offered_features() const {
  // Event indexes only where queue workers serve: they take a ring until it is empty (which is
  // when the device asks for the next notification); the inline path stops at a bound.
  // Indirect descriptor tables everywhere: one ring entry for a request of many buffers (a
  // network link's 17-page receive buffers, a disk's scattered I/O).
  if (device_->external()) {
    return device_->device_features() | (1ULL << VIRTIO_F_VERSION_1);  // the back end's rings
  }
  return device_->device_features() | (1ULL << VIRTIO_F_VERSION_1) |
         (1ULL << Virtqueue::kFeatureIndirect) |
         (device_->uses_workers() ? 1ULL << Virtqueue::kFeatureEventIdx : 0);
}

void VirtioPciDevice::set_status(std::uint8_t status) {
  if (status == 0) {
    reset_device();
    return;
  }
  if ((status & VIRTIO_CONFIG_S_FEATURES_OK) != 0 && (status_ & VIRTIO_CONFIG_S_FEATURES_OK) == 0) {
    const std::uint64_t offered = offered_features();
    if ((driver_features_ & ~offered) != 0 ||
        (driver_features_ & (1ULL << VIRTIO_F_VERSION_1)) == 0) {
      if (first_few(guest_warnings_)) {
        log::warn("virtio", "features refused",
                  {{"device_type", device_->device_type()},
                   {"driver_features", hex(driver_features_)},
                   {"offered", hex(offered)}});
      }
      status &= static_cast<std::uint8_t>(~VIRTIO_CONFIG_S_FEATURES_OK);
    } else {
      device_->driver_features(driver_features_);
      for (Queue& q : queues_) {
        q.ring.set_event_idx((driver_features_ & (1ULL << Virtqueue::kFeatureEventIdx)) != 0);
      }
    }
  }
  const bool starting = (status & VIRTIO_CONFIG_S_DRIVER_OK) != 0 &&
                        (status_ & VIRTIO_CONFIG_S_DRIVER_OK) == 0;
  status_ = static_cast<std::uint8_t>(status | (status_ & VIRTIO_CONFIG_S_NEEDS_RESET));
  if (starting && device_->external()) {
    if ((status_ & VIRTIO_CONFIG_S_FEATURES_OK) != 0) {
      start_external();
    } else {
      needs_reset("DRIVER_OK without FEATURES_OK");
    }
  } else if (starting) {
    // Workers stop watching their sources while the driver is not ready; look again now.
    for (Queue& q : queues_) {
      if (q.worker) {
        q.worker->kick();
      }
    }
  }
}

void VirtioPciDevice::reset_device() {
  // Requests a worker is serving finish first: after the reset, no request may write to guest
  // memory the driver has taken back.
  // Workers take no new batch meanwhile (a guest adding requests from another vCPU cannot
  // starve the reset); the batches in flight are finished and returned.
  resetting_ = true;
  HeldLock held{mutex_};
  idle_.wait(held, [this] {
    return std::none_of(queues_.begin(), queues_.end(), [](const Queue& q) { return q.serving; });
  });
  resetting_ = false;
  device_->reset();
  for (Queue& q : queues_) {
    q.ring.reset();
    q.vector = kNoVector;
  }
  device_feature_select_ = driver_feature_select_ = 0;
  driver_features_ = 0;
  status_ = 0;
  isr_ = 0;
  msix_config_ = kNoVector;
  queue_select_ = 0;
  ++resets_;
}

void VirtioPciDevice::start_external() {
  std::vector<ExternalQueue> handed;
  for (std::uint16_t i = 0; i < queues_.size(); ++i) {
    const Queue& q = queues_[i];
    if (q.ring.enabled() && q.kick && q.worker) {
      handed.push_back(ExternalQueue{i, q.ring.size(), q.ring.desc, q.ring.avail, q.ring.used,
                                     q.kick->fd(), q.worker->kick_fd()});
    }
  }
  Status s = device_->start_external(handed, memory_);
  if (!s.ok()) {
    needs_reset(s.error().message());
  }
}

void VirtioPciDevice::needs_reset(const std::string& why) {
  if ((status_ & VIRTIO_CONFIG_S_NEEDS_RESET) == 0 && first_few(guest_warnings_)) {
    log::warn("virtio", "device needs reset",
              {{"device_type", device_->device_type()}, {"why", why}});
  }
  status_ |= VIRTIO_CONFIG_S_NEEDS_RESET;
  ++needs_reset_;
  isr_ |= VIRTIO_PCI_ISR_CONFIG;
  signal(msix_config_);
}

void VirtioPciDevice::config_changed() {
  ++config_generation_;
  if ((status_ & VIRTIO_CONFIG_S_DRIVER_OK) == 0) {
    return;  // the driver reads the configuration when it starts
  }
  isr_ |= VIRTIO_PCI_ISR_CONFIG;
  signal(msix_config_);
}

// ---- requests ----

bool VirtioPciDevice::takes_requests(std::uint16_t queue) const {
  return !resetting_ && queue < queues_.size() && (status_ & VIRTIO_CONFIG_S_DRIVER_OK) != 0 &&
         (status_ & VIRTIO_CONFIG_S_NEEDS_RESET) == 0 && device_->consumes(queue);
}

void VirtioPciDevice::refused(std::uint16_t queue, const Popped& popped) {
  ++chains_refused_;
  if (first_few(guest_warnings_)) {
    log::warn("virtio", "malformed request refused",
              {{"device_type", device_->device_type()}, {"queue", queue}, {"why", popped.error}});
  }
}

void VirtioPciDevice::notify(std::uint16_t queue) {
  ++notifications_;
  if (!takes_requests(queue)) {
    return;
  }
  Queue& q = queues_[queue];
  if (q.kick) {
    (void)q.kick->signal();  // the back end's (the notification did not stay in the kernel)
    return;
  }
  if (q.worker) {
    q.worker->kick();
    return;
  }
  bool used = false;
  // Bounded: a driver adding requests as fast as they are answered gets its next batch on its
  // next notification.
  for (std::uint32_t n = 0; n < 4U * q.ring.size(); ++n) {
    Popped p = q.ring.pop();
    if (p.kind == Popped::Kind::kNone) {
      break;
    }
    if (p.kind == Popped::Kind::kBroken) {
      needs_reset(p.error);
      return;
    }
    std::uint32_t length = 0;
    if (p.kind == Popped::Kind::kBad) {
      refused(queue, p);
    } else {
      length = device_->serve(queue, p.chain, memory_);
      ++chains_handled_;
    }
    if (!q.ring.push_used(p.chain.head, length).ok()) {
      needs_reset("used ring unwritable");
      return;
    }
    used = true;
  }
  if (used && q.ring.wants_interrupt()) {
    isr_ |= kIsrQueue;
    signal(q.vector);
  }
}

bool VirtioPciDevice::serve_queue(std::uint16_t queue) {
  const bool sourced = device_->queue_source(queue) >= 0;
  for (;;) {
    std::vector<Popped> batch;
    {
      std::lock_guard lock(mutex_);
      if (!takes_requests(queue)) {
        // Input cannot be delivered before DRIVER_OK (or after a break): watching a readable
        // source now would spin. set_status kicks the worker when the driver is ready.
        return false;
      }
      Queue& q = queues_[queue];
      const std::size_t most = sourced ? 1 : q.ring.size();
      // Chains in flight never share descriptors, so a batch holds at most a ring's worth; a
      // driver naming one long chain in every slot gets no more than that either.
      std::size_t descriptors = 0;
      while (batch.size() < most && descriptors < q.ring.size()) {
        if (sourced && !device_->has_input(queue)) {
          return true;  // nothing to deliver: wait for input
        }
        Popped p = q.ring.pop();
        if (p.kind == Popped::Kind::kNone) {
          break;
        }
        if (p.kind == Popped::Kind::kBroken) {
          needs_reset(p.error);
          return false;
        }
        if (p.kind == Popped::Kind::kBad) {
          refused(queue, p);
        }
        descriptors += std::max<std::size_t>(1, p.chain.readable.size() + p.chain.writable.size());
        batch.push_back(std::move(p));
      }
      if (batch.empty()) {
        return false;  // input waits for buffers: only the driver's next kick can help
      }
      q.serving = true;
    }
    std::vector<std::uint32_t> lengths(batch.size(), 0);
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (batch[i].kind == Popped::Kind::kChain) {
        lengths[i] = device_->serve(queue, batch[i].chain, memory_);
      }
    }
    std::lock_guard lock(mutex_);
    Queue& q = queues_[queue];
    q.serving = false;
    idle_.notify_all();
    bool returned = true;
    for (std::size_t i = 0; i < batch.size() && returned; ++i) {
      chains_handled_ += batch[i].kind == Popped::Kind::kChain ? 1 : 0;
      returned = q.ring.push_used(batch[i].chain.head, lengths[i]).ok();
    }
    if (!returned) {
      needs_reset("used ring unwritable");
      return false;
    }
    if (q.ring.wants_interrupt()) {
      isr_ |= kIsrQueue;
      signal(q.vector);
    }
  }
}

bool VirtioPciDevice::external_interrupt(std::uint16_t queue) {
  std::lock_guard lock(mutex_);
  if ((status_ & VIRTIO_CONFIG_S_DRIVER_OK) != 0) {
    isr_ |= kIsrQueue;
    signal(queues_[queue].vector);
  }
  return false;
}

// ---- MSI-X ----

void VirtioPciDevice::msix_changed(const pci::MsixTable::Change& change) {
  if (!change.accepted) {
    ++ignored_accesses_;
  }
  if (!change.routing.ok() && first_few(guest_warnings_)) {
    log::warn("virtio", "MSI-X vector not routed",
              {{"device_type", device_->device_type()}, {"error", change.routing.error().message()}});
  }
}

void VirtioPciDevice::signal(std::uint16_t vector) {
  auto raised = msix_.raise(vector);
  if (!raised.ok()) {
    if (first_few(guest_warnings_)) {
      log::warn("virtio", "interrupt not delivered",
                {{"device_type", device_->device_type()},
                 {"vector", vector},
                 {"error", raised.error().message()}});
    }
  } else if (*raised == pci::MsixTable::Raised::kPending) {
    ++pending_;
  } else if (*raised == pci::MsixTable::Raised::kDelivered) {
    ++interrupts_;
  }
}

std::map<std::string, std::uint64_t> VirtioPciDevice::counters() const {
  std::lock_guard lock(mutex_);
  return {{"notifications", notifications_},   {"chains_handled", chains_handled_},
          {"chains_refused", chains_refused_}, {"interrupts", interrupts_},
          {"interrupts_pending", pending_},    {"resets", resets_},
          {"needs_reset", needs_reset_},       {"ignored_accesses", ignored_accesses_},
          {"guest_warnings", guest_warnings_}};
}

std::uint8_t VirtioPciDevice::device_status() const {
  std::lock_guard lock(mutex_);
  return status_;
}

}  // namespace keel::virtio
