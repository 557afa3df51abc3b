#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "devices/virtio/virtio_device.hpp"

namespace keel::virtio {

// virtio-rng (virtio 1.2 §5.4, device type 4): one request queue whose device-writable buffers
// Keel fills from an entropy source on the host (cloud-hypervisor's --rng src=, /dev/urandom by
// default). A source that has nothing to give right now (a non-blocking /dev/random) answers
// with fewer bytes, never blocks the thread that serves the queue.
class VirtioRng final : public VirtioDevice {
 public:
  static constexpr std::uint16_t kQueueSize = 256;
  static constexpr const char* kDefaultSource = "/dev/urandom";

  // Opens `source`: a character device or a regular file; a FIFO, socket or directory (which
  // could block or never answer) is refused, as is a path that cannot be opened.
  static Result<std::unique_ptr<VirtioRng>> open(const std::string& source);

  std::uint32_t device_type() const override;
  std::uint64_t device_features() const override { return 0; }
  std::uint16_t num_queues() const override { return 1; }
  std::uint16_t queue_max_size(std::uint16_t) const override { return kQueueSize; }
  void read_config(std::uint64_t, std::span<std::uint8_t> data) const override;
  void write_config(std::uint64_t, std::span<const std::uint8_t>) override {}
  bool consumes(std::uint16_t queue) const override { return queue == 0; }
  std::uint32_t serve(std::uint16_t queue, const Chain& chain,
                      const memory::GuestMemory& memory) override;
  void reset() override {}
  // Fills `out` from the source; returns how many bytes it gave.
  std::size_t fill(std::span<std::uint8_t> out);

  // requests, bytes, short_reads (a source that gave less than asked).
  std::map<std::string, std::uint64_t> counters() const override;

 private:
  explicit VirtioRng(UniqueFd source) : source_(std::move(source)) {}

  UniqueFd source_;
  std::uint64_t requests_ = 0, bytes_ = 0, short_reads_ = 0;
};

}  // namespace keel::virtio
