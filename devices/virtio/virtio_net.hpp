#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "base/result.hpp"
#include "devices/virtio/tap.hpp"
#include "devices/virtio/virtio_device.hpp"

namespace keel::virtio {

// virtio-net's layout (virtio 1.2 §5.1.4, §5.1.6); <linux/virtio_net.h> has them too, but a
// field named "class" makes it C only.
namespace net {
inline constexpr unsigned kFeatureCsum = 0, kFeatureGuestCsum = 1, kFeatureMac = 5,
                          kFeatureGuestTso4 = 7, kFeatureGuestTso6 = 8, kFeatureGuestEcn = 9,
                          kFeatureHostTso4 = 11, kFeatureHostTso6 = 12, kFeatureStatus = 16;
inline constexpr std::uint16_t kLinkUp = 1;
struct Config {
  std::uint8_t mac[6];
  std::uint16_t status;
  std::uint16_t max_virtqueue_pairs;
  std::uint16_t mtu;
} __attribute__((packed));
inline constexpr std::size_t kNumBuffersOffset = 10;  // in the 12-byte header
}  // namespace net

// virtio-net (virtio 1.2 §5.1, device type 1) over a TAP: one receive and one transmit queue,
// each served by its own worker thread. The receive queue's source is the TAP: a frame is read
// straight into the guest's next receive buffers (readv, no copy) only when one is waiting and
// the guest has given buffers; transmitted frames are written whole from the guest's buffers
// (writev). The 12-byte virtio-net header passes through unchanged (the TAP speaks it too), so
// the guest may hand checksum and segmentation work to the host (CSUM, HOST_TSO4/6), and the
// host to the guest (GUEST_CSUM, GUEST_TSO4/6, GUEST_ECN: the TAP is told what the guest
// accepted, and hands over unsegmented TCP up to 64 KiB, which Linux receives into its "big
// packet" buffers). A frame larger than the guest's buffers, or a transmit chain without a
// header, is dropped and counted.
class VirtioNet final : public VirtioDevice {
 public:
  static constexpr std::uint16_t kRxQueue = 0, kTxQueue = 1;
  static constexpr std::uint16_t kDefaultQueueSize = 256;
  // A transmit chain's header and frame (64 KiB of TSO payload and its headers).
  static constexpr std::uint32_t kMaxFrame = 65550 + Tap::kVnetHeader;

  struct Options {
    std::array<std::uint8_t, 6> mac{};
    std::uint16_t queue_size = kDefaultQueueSize;
  };
  static Result<std::unique_ptr<VirtioNet>> create(Tap tap, const Options& options);

  std::uint32_t device_type() const override;
  std::uint64_t device_features() const override;
  std::uint16_t num_queues() const override { return 2; }
  std::uint16_t queue_max_size(std::uint16_t) const override { return options_.queue_size; }
  void read_config(std::uint64_t offset, std::span<std::uint8_t> data) const override;
  void write_config(std::uint64_t, std::span<const std::uint8_t>) override {}
  bool consumes(std::uint16_t queue) const override { return queue <= kTxQueue; }
  bool uses_workers() const override { return true; }
  // A receive chain may be larger than a frame (Linux's big-packet buffers are 17 pages and a
  // header); a transmit chain past kMaxFrame is refused by the TAP and dropped.
  std::uint32_t max_request_bytes() const override { return 128 * 1024; }
  int queue_source(std::uint16_t queue) const override;
  bool has_input(std::uint16_t queue) override;
  std::uint32_t serve(std::uint16_t queue, const Chain& chain,
                      const memory::GuestMemory& memory) override;
  void driver_features(std::uint64_t features) override;
  void reset() override;

  const Tap& tap() const { return tap_; }
  // cloud-hypervisor's names: rx_bytes, rx_frames, tx_bytes, tx_frames; and Keel's: rx_dropped
  // (no room, or the TAP failed), tx_dropped (malformed chain, or the TAP refused it).
  std::map<std::string, std::uint64_t> counters() const override;

 private:
  VirtioNet(Tap tap, const Options& options);
  std::uint32_t receive(const Chain& chain, const memory::GuestMemory& memory);
  void transmit(const Chain& chain, const memory::GuestMemory& memory);

  Tap tap_;
  Options options_;
  unsigned offload_warnings_ = 0;
  net::Config config_{};
  std::atomic<std::uint64_t> rx_bytes_{0}, rx_frames_{0}, rx_dropped_{0}, tx_bytes_{0},
      tx_frames_{0}, tx_dropped_{0};
};

}  // namespace keel::virtio
