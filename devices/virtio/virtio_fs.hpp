#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "devices/virtio/vhost_user.hpp"
#include "devices/virtio/virtio_device.hpp"

namespace keel::virtio {

// virtio-fs (virtio 1.2 §5.11, device type 26) whose FUSE requests a vhost-user back end
// serves -- Debian's virtiofsd, sharing a host directory -- as cloud-hypervisor's --fs and
// Kata Containers' shared rootfs. Keel gives the guest the PCI function and the configuration
// (the mount tag, the number of request queues); the queues (the high-priority one, then the
// request queues) are the back end's, over guest memory it maps (shared memory only).
//
// The connection outlives the device: the VMM keeps it across reboots (QEMU 7.2's virtiofsd
// serves one front end and exits when it goes), and the device stops its rings in the back end
// when it goes, so the back end touches no memory of a VM that is gone.
class VirtioFs final : public VirtioDevice {
 public:
  struct Options {
    std::string tag;                     // what the guest mounts: mount -t virtiofs TAG DIR
    std::uint16_t request_queues = 1;
    std::uint16_t queue_size = 1024;     // largest the driver may choose (a power of two)
  };
  static constexpr std::size_t kTagSize = 36;  // bytes, not NUL-terminated when full

  // Takes a connected back end (VhostUser::connect). The tag is 1 to kTagSize bytes.
  static Result<std::unique_ptr<VirtioFs>> create(std::shared_ptr<VhostUser> backend,
                                                  Options options);
  ~VirtioFs() override;
  VirtioFs(const VirtioFs&) = delete;
  VirtioFs& operator=(const VirtioFs&) = delete;

  std::uint32_t device_type() const override;
  // The back end's ring features (indirect descriptors, event index): virtio-fs's own
  // notification feature needs a queue Keel does not give.
  std::uint64_t device_features() const override;
  std::uint16_t num_queues() const override {
    return static_cast<std::uint16_t>(1 + options_.request_queues);
  }
  std::uint16_t queue_max_size(std::uint16_t) const override { return options_.queue_size; }
  void read_config(std::uint64_t offset, std::span<std::uint8_t> data) const override;
  void write_config(std::uint64_t, std::span<const std::uint8_t>) override {}
  bool consumes(std::uint16_t queue) const override { return queue < num_queues(); }
  std::uint32_t serve(std::uint16_t, const Chain&, const memory::GuestMemory&) override {
    return 0;  // never called: the back end serves every queue
  }
  bool external() const override { return true; }
  void driver_features(std::uint64_t features) override;
  Status start_external(std::span<const ExternalQueue> queues,
                        const memory::GuestMemory& memory) override;
  void reset() override;
  // started (queues handed over), stops, backend_errors.
  std::map<std::string, std::uint64_t> counters() const override;

 private:
  VirtioFs(std::shared_ptr<VhostUser> backend, Options options)
      : backend_(std::move(backend)), options_(std::move(options)) {}

  // Stops every ring the back end has (GET_VRING_BASE): it no longer touches their memory.
  void stop_rings();

  std::shared_ptr<VhostUser> backend_;
  Options options_;
  std::uint64_t driver_features_ = 0;
  std::vector<std::uint16_t> running_;  // queues the back end has now
  std::uint64_t started_ = 0, stops_ = 0, backend_errors_ = 0;
};

}  // namespace keel::virtio
