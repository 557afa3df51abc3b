#include "devices/virtio/virtio_net.hpp"

#include <linux/virtio_ids.h>
#include <poll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include <linux/if_tun.h>

#include "base/log.hpp"

namespace keel::virtio {

Result<std::unique_ptr<VirtioNet>> VirtioNet::create(Tap tap, const Options& options) {
  const std::uint32_t q = options.queue_size;
  if (!Virtqueue::valid_max_size(q)) {
    return Error::invalid("net " + tap.name() + ": queue_size=" + std::to_string(q) +
                          " is not a power of two from 2 to 32768 (e.g. 256)");
  }
  return std::unique_ptr<VirtioNet>(new VirtioNet(std::move(tap), options));
}

VirtioNet::VirtioNet(Tap tap, const Options& options) : tap_(std::move(tap)), options_(options) {
  std::memcpy(config_.mac, options_.mac.data(), 6);
  config_.status = net::kLinkUp;
  config_.max_virtqueue_pairs = 1;
}

std::uint32_t VirtioNet::device_type() const { return VIRTIO_ID_NET; }

std::uint64_t VirtioNet::device_features() const {
  return (1ULL << net::kFeatureMac) | (1ULL << net::kFeatureStatus) |
         (1ULL << net::kFeatureCsum) | (1ULL << net::kFeatureHostTso4) |
         (1ULL << net::kFeatureHostTso6) | (1ULL << net::kFeatureGuestCsum) |
         (1ULL << net::kFeatureGuestTso4) | (1ULL << net::kFeatureGuestTso6) |
         (1ULL << net::kFeatureGuestEcn);
}

void VirtioNet::driver_features(std::uint64_t features) {
  const auto has = [features](unsigned bit) { return (features & (1ULL << bit)) != 0; };
  unsigned offload = 0;
  if (has(net::kFeatureGuestCsum)) {
    // TSO needs the checksum offload with it (virtio 1.2 §5.1.3.1, and the TAP's rule too).
    offload = TUN_F_CSUM | (has(net::kFeatureGuestTso4) ? TUN_F_TSO4 : 0U) |
              (has(net::kFeatureGuestTso6) ? TUN_F_TSO6 : 0U);
    if ((offload & (TUN_F_TSO4 | TUN_F_TSO6)) != 0 && has(net::kFeatureGuestEcn)) {
      offload |= TUN_F_TSO_ECN;
    }
  }
  if (Status s = tap_.set_offload(offload); !s.ok() && offload_warnings_++ < 4) {
    log::warn("virtio-net", "the TAP refused the guest's offloads; frames come segmented",
              {{"tap", tap_.name()}, {"offload", offload}, {"error", s.error().message()}});
  }
}

void VirtioNet::reset() { (void)tap_.set_offload(0); }

void VirtioNet::read_config(std::uint64_t offset, std::span<std::uint8_t> data) const {
  read_config_of(config_, offset, data);
}

int VirtioNet::queue_source(std::uint16_t queue) const {
  return queue == kRxQueue ? tap_.fd() : -1;
}

bool VirtioNet::has_input(std::uint16_t queue) {
  if (queue != kRxQueue) {
    return true;
  }
  pollfd p{tap_.fd(), POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

std::uint32_t VirtioNet::serve(std::uint16_t queue, const Chain& chain,
                               const memory::GuestMemory& memory) {
  if (queue == kRxQueue) {
    return receive(chain, memory);
  }
  transmit(chain, memory);
  return 0;
}

std::uint32_t VirtioNet::receive(const Chain& chain, const memory::GuestMemory& memory) {
  if (chain.writable_size < Tap::kVnetHeader) {
    ++rx_dropped_;
    return 0;
  }
  std::vector<iovec> iov = Virtqueue::iovecs(memory, chain.writable, 0, chain.writable_size);
  iov.resize(std::min<std::size_t>(iov.size(), IOV_MAX - 1));
  std::uint64_t room = 0;
  for (const iovec& v : iov) {
    room += v.iov_len;
  }
  // One byte past the guest's buffers: a frame that reaches it did not fit (the TAP truncates
  // silently) and is dropped rather than handed over cut short.
  std::uint8_t past = 0;
  iov.push_back(iovec{&past, 1});
  ssize_t n = -1;
  do {
    n = ::readv(tap_.fd(), iov.data(), static_cast<int>(iov.size()));
  } while (n < 0 && errno == EINTR);
  if (n < static_cast<ssize_t>(Tap::kVnetHeader) || static_cast<std::uint64_t>(n) > room) {
    // Nothing after all (the fd is non-blocking), the TAP failed, or the frame was larger than
    // the buffers: the buffer goes back empty.
    ++rx_dropped_;
    return 0;
  }
  // virtio 1.x: without MRG_RXBUF, num_buffers is 1 (the TAP leaves those two bytes alone).
  const std::uint16_t one = 1;
  (void)Virtqueue::write(memory, chain.writable, net::kNumBuffersOffset,
                         std::span(reinterpret_cast<const std::uint8_t*>(&one), sizeof one));
  ++rx_frames_;
  rx_bytes_ += static_cast<std::uint64_t>(n) - Tap::kVnetHeader;
  return static_cast<std::uint32_t>(n);
}

void VirtioNet::transmit(const Chain& chain, const memory::GuestMemory& memory) {
  if (chain.readable_size <= Tap::kVnetHeader) {
    ++tx_dropped_;
    return;
  }
  const std::vector<iovec> iov = Virtqueue::iovecs(memory, chain.readable, 0, chain.readable_size);
  if (iov.empty() || iov.size() > IOV_MAX) {
    ++tx_dropped_;
    return;
  }
  ssize_t n = -1;
  do {
    n = ::writev(tap_.fd(), iov.data(), static_cast<int>(iov.size()));
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(chain.readable_size)) {
    ++tx_dropped_;  // the TAP refused it (a bad header, or the link is down)
    return;
  }
  ++tx_frames_;
  tx_bytes_ += chain.readable_size - Tap::kVnetHeader;
}

std::map<std::string, std::uint64_t> VirtioNet::counters() const {
  return {{"rx_bytes", rx_bytes_},     {"rx_frames", rx_frames_}, {"rx_dropped", rx_dropped_},
          {"tx_bytes", tx_bytes_},     {"tx_frames", tx_frames_}, {"tx_dropped", tx_dropped_}};
}

}  // namespace keel::virtio
