#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "base/result.hpp"
#include "devices/virtio/virtio_device.hpp"

namespace keel::virtio {

// virtio-mem (virtio 1.2 §5.15, device type 24) over the guest's hot-pluggable region
// (GuestMemory::hotplug_region): the VMM sets the size it wants plugged (request) and says so
// with a configuration change; the guest's driver plugs or unplugs 2 MiB blocks until it has
// it. Each plug or unplug goes through `on_change` first (the VM maps or unmaps it for DMA): a
// refusal there is BUSY (the guest keeps what it had and retries after a backoff; a plug beyond
// the requested size is NACK). Unplugged blocks' host memory is given back. Requests are
// answered at once, on the notifying vCPU thread.
class VirtioMem final : public VirtioDevice {
 public:
  static constexpr std::uint64_t kBlockSize = std::uint64_t{2} << 20;
  static constexpr std::uint16_t kQueueSize = 128;
  // gpa, size, plug (true) or unplug (false).
  using ChangeHandler = std::function<Status(std::uint64_t, std::uint64_t, bool)>;

  // Null when the memory has no hot-pluggable region.
  static Result<std::unique_ptr<VirtioMem>> create(const memory::GuestMemory& memory,
                                                   ChangeHandler on_change);

  // The size the guest should have plugged (a multiple of kBlockSize, at most region_size()).
  // The caller tells the guest (a configuration change).
  Status request(std::uint64_t size);
  std::uint64_t requested_size() const;
  std::uint64_t plugged_size() const;
  std::uint64_t region_size() const { return region_size_; }

  std::uint32_t device_type() const override;
  std::uint64_t device_features() const override;
  std::uint16_t num_queues() const override { return 1; }
  std::uint16_t queue_max_size(std::uint16_t) const override { return kQueueSize; }
  void read_config(std::uint64_t offset, std::span<std::uint8_t> data) const override;
  void write_config(std::uint64_t, std::span<const std::uint8_t>) override {}
  bool consumes(std::uint16_t queue) const override { return queue == 0; }
  std::uint32_t serve(std::uint16_t queue, const Chain& chain,
                      const memory::GuestMemory& memory) override;
  // The plugged state outlives a driver reset (a new driver asks with STATE or UNPLUG_ALL).
  void reset() override {}
  // plug_requests, unplug_requests, unplug_all_requests, state_requests, nacks, busy, errors,
  // plugged_bytes, requested_bytes.
  std::map<std::string, std::uint64_t> counters() const override;

  // One request's bytes in, the response's bytes out (exposed for tests and the fuzzer).
  std::size_t handle(std::span<const std::uint8_t> request, std::span<std::uint8_t> response);

 private:
  VirtioMem(const memory::GuestMemory& memory, std::uint64_t addr, std::uint64_t size,
            ChangeHandler on_change)
      : memory_(memory),
        addr_(addr),
        region_size_(size),
        plugged_(size / kBlockSize, false),
        on_change_(std::move(on_change)) {}

  std::uint16_t plug(std::uint64_t addr, std::uint64_t blocks);
  std::uint16_t unplug(std::uint64_t addr, std::uint64_t blocks);
  std::uint16_t unplug_all();
  // The handler said no to `what` of [addr, addr + size): logged (the first few), answered BUSY.
  std::uint16_t refused(const char* what, std::uint64_t addr, std::uint64_t size, const Error& why);
  // Whether [addr, addr + blocks) is aligned and inside the region; sets `first` to its first
  // block.
  bool valid_range(std::uint64_t addr, std::uint64_t blocks, std::uint64_t* first) const;
  std::uint64_t count_plugged(std::uint64_t first, std::uint64_t blocks) const;

  const memory::GuestMemory& memory_;
  const std::uint64_t addr_;
  const std::uint64_t region_size_;
  mutable std::mutex mutex_;
  std::vector<bool> plugged_;  // per block
  std::uint64_t plugged_size_ = 0;
  std::uint64_t requested_size_ = 0;
  ChangeHandler on_change_;
  std::uint64_t plug_requests_ = 0, unplug_requests_ = 0, unplug_all_requests_ = 0,
                state_requests_ = 0, nacks_ = 0, busy_ = 0, errors_ = 0;
  static constexpr std::uint64_t kLoggedRefusals = 10;
  std::uint64_t refusals_ = 0;
};

}  // namespace keel::virtio
