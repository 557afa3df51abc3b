#pragma once

#include <linux/virtio_blk.h>
#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "devices/virtio/disk_image.hpp"
#include "devices/virtio/virtio_device.hpp"

namespace keel::virtio {

// virtio-blk (virtio 1.2 §5.2, device type 2) over a raw image file: reads, writes, flush,
// get-id, and on a writable image discard and write-zeroes (hole punching; UNSUPP where the
// host's file system cannot). Each queue is served on its own worker thread, in place in guest
// memory (preadv/pwritev on the guest's buffers, no copy). A request is checked before any byte
// moves: a header it carries whole, a status byte at its end, data a whole number of sectors
// and inside the image, at most kMaxRequestBytes; anything else gets IOERR (or UNSUPP for an
// unknown type) and touches nothing. A read-only image refuses writes, discards and
// write-zeroes with IOERR.
class VirtioBlk final : public VirtioDevice {
 public:
  static constexpr std::uint64_t kSector = 512;
  static constexpr std::uint32_t kMaxRequestBytes = 32U << 20;
  static constexpr std::uint16_t kMaxQueues = 16;
  static constexpr std::uint16_t kDefaultQueueSize = 128;
  static constexpr std::uint32_t kMaxDiscardSectors = 0x7fffffff / kSector;

  struct Options {
    std::uint16_t num_queues = 1;
    std::uint16_t queue_size = kDefaultQueueSize;  // a power of two, 2 to 32768
  };
  static Result<std::unique_ptr<VirtioBlk>> create(DiskImage image, const Options& options);

  std::uint32_t device_type() const override;
  std::uint64_t device_features() const override;
  std::uint16_t num_queues() const override { return options_.num_queues; }
  std::uint16_t queue_max_size(std::uint16_t) const override { return options_.queue_size; }
  void read_config(std::uint64_t offset, std::span<std::uint8_t> data) const override;
  void write_config(std::uint64_t, std::span<const std::uint8_t>) override {}
  bool consumes(std::uint16_t) const override { return true; }
  bool uses_workers() const override { return true; }
  // The transport passes any size; serve() answers IOERR past kMaxRequestBytes of data.
  std::uint32_t max_request_bytes() const override { return 0xffffffffU; }
  std::uint32_t serve(std::uint16_t queue, const Chain& chain,
                      const memory::GuestMemory& memory) override;
  void reset() override {}

  const DiskImage& image() const { return image_; }
  // cloud-hypervisor's names: read_bytes, write_bytes, read_ops, write_ops; and Keel's:
  // flush_ops, discard_ops, write_zeroes_ops, io_errors (requests answered IOERR), unsupported.
  std::map<std::string, std::uint64_t> counters() const override;

 private:
  VirtioBlk(DiskImage image, const Options& options);
  // The request's answer and the bytes it wrote before the status byte.
  struct Outcome {
    std::uint8_t status;
    std::uint32_t written = 0;
  };
  Outcome execute(const virtio_blk_outhdr& header, const Chain& chain,
                  const memory::GuestMemory& memory);
  Outcome discard_or_zero(std::uint32_t type, const Chain& chain,
                          const memory::GuestMemory& memory);
  Outcome io_error();

  DiskImage image_;
  Options options_;
  std::uint64_t capacity_;  // sectors
  virtio_blk_config config_{};
  std::atomic<std::uint64_t> read_bytes_{0}, write_bytes_{0}, read_ops_{0}, write_ops_{0},
      flush_ops_{0}, discard_ops_{0}, write_zeroes_ops_{0}, io_errors_{0}, unsupported_{0};
};

}  // namespace keel::virtio
