#include "devices/virtio/virtio_fs.hpp"

#include <linux/virtio_ids.h>

#include <cstring>

#include "base/log.hpp"
#include "devices/virtio/virtqueue.hpp"

namespace keel::virtio {
namespace {

struct FsConfig {
  char tag[VirtioFs::kTagSize];
  std::uint32_t num_request_queues;
};
static_assert(sizeof(FsConfig) == 40);

}  // namespace

Result<std::unique_ptr<VirtioFs>> VirtioFs::create(std::shared_ptr<VhostUser> backend,
                                                  Options options) {
  if (options.tag.empty() || options.tag.size() > kTagSize) {
    return Error::invalid("tag \"" + options.tag + "\" is " + std::to_string(options.tag.size()) +
                          " bytes; give 1 to " + std::to_string(kTagSize) + " (e.g. myfs)");
  }
  if (options.request_queues == 0) {
    return Error::invalid("num_queues=0: virtio-fs needs at least one request queue");
  }
  const std::uint64_t most = backend->max_queues();
  if (most != 0 && 1 + std::uint64_t{options.request_queues} > most) {
    return Error::invalid("num_queues=" + std::to_string(options.request_queues) +
                          ": the back end serves " + std::to_string(most) +
                          " queues, the high-priority one and " + std::to_string(most - 1) +
                          " request queue(s); give num_queues=" + std::to_string(most - 1));
  }
  if (!Virtqueue::valid_max_size(options.queue_size)) {
    return Error::invalid("queue_size=" + std::to_string(options.queue_size) +
                          " is not a power of two from 2 to 32768 (e.g. 1024)");
  }
  return std::unique_ptr<VirtioFs>(new VirtioFs(std::move(backend), std::move(options)));
}

VirtioFs::~VirtioFs() { stop_rings(); }

std::uint32_t VirtioFs::device_type() const { return VIRTIO_ID_FS; }

std::uint64_t VirtioFs::device_features() const {
  return backend_->features() &
         ((1ULL << Virtqueue::kFeatureIndirect) | (1ULL << Virtqueue::kFeatureEventIdx));
}

void VirtioFs::read_config(std::uint64_t offset, std::span<std::uint8_t> data) const {
  FsConfig c{};
  std::memcpy(c.tag, options_.tag.data(), options_.tag.size());
  c.num_request_queues = options_.request_queues;
  read_config_of(c, offset, data);
}

void VirtioFs::driver_features(std::uint64_t features) { driver_features_ = features; }

Status VirtioFs::start_external(std::span<const ExternalQueue> queues,
                                const memory::GuestMemory& memory) {
  stop_rings();  // a driver that set DRIVER_OK again without a reset: the back end's rings go first
  auto start = [&]() -> Status {
    KEEL_TRY_STATUS(backend_->set_features(driver_features_));
    KEEL_TRY_STATUS(backend_->set_mem_table(memory));
    for (const ExternalQueue& q : queues) {
      const std::uint8_t* desc = memory.translate(q.desc, 16ULL * q.size);
      const std::uint8_t* avail = memory.translate(q.avail, 6 + 2ULL * q.size);
      const std::uint8_t* used = memory.translate(q.used, 6 + 8ULL * q.size);
      if (desc == nullptr || avail == nullptr || used == nullptr) {
        return Error::invalid("queue " + std::to_string(q.index) + " is not in guest RAM");
      }
      running_.push_back(q.index);  // before: a ring half started is stopped too
      KEEL_TRY_STATUS(backend_->start_ring({q.index, q.size, reinterpret_cast<std::uintptr_t>(desc),
                                           reinterpret_cast<std::uintptr_t>(avail),
                                           reinterpret_cast<std::uintptr_t>(used), q.kick,
                                           q.call}));
    }
    return ok_status();
  };
  ++started_;
  Status s = start();
  if (!s.ok()) {
    ++backend_errors_;
  }
  return s;
}

void VirtioFs::reset() {
  stop_rings();
  driver_features_ = 0;
}

void VirtioFs::stop_rings() {
  for (const std::uint16_t q : running_) {
    auto stopped = backend_->stop_ring(q);
    if (!stopped.ok()) {
      ++backend_errors_;
      log::warn("virtio-fs", "queue not stopped", {{"queue", q}, {"error", stopped.error().message()}});
    }
  }
  stops_ += running_.empty() ? 0 : 1;
  running_.clear();
}

std::map<std::string, std::uint64_t> VirtioFs::counters() const {
  return {{"started", started_}, {"stops", stops_}, {"backend_errors", backend_errors_}};
}

}  // namespace keel::virtio
