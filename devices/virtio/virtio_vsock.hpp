#pragma once

#include <linux/virtio_vsock.h>
#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "base/event_fd.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "devices/virtio/virtio_device.hpp"

namespace keel::virtio {

// virtio-vsock (virtio 1.2 §5.10, device type 19) in cloud-hypervisor's hybrid form: the guest's
// stream sockets meet Unix stream sockets on the host.
//  - host to guest: a program connects to the Unix socket PATH, writes "CONNECT <port>\n"; the
//    device asks the guest for a connection to its port <port> and, once the guest accepts,
//    answers "OK <host port>\n"; from then on the Unix connection carries the stream.
//  - guest to host: a guest connecting to CID 2 port P reaches the Unix socket PATH_P.
// Flow control is the protocol's credit: the device takes at most kBufAlloc unforwarded bytes
// per connection from the guest (it tells the guest how far it forwarded), and reads from a
// host socket only as much as the guest said it has room for. Nothing is buffered without
// bound; a guest that sends past its credit, or names a connection that does not exist, gets
// a reset for that connection and nothing else.
//
// Queues: receive (0) is fed from outside -- its worker waits on one epoll fd holding the
// listener, the connections and a wake-up the transmit side signals when it has an answer for
// the guest; transmit (1) takes the guest's packets; the event queue (2) is never used (it
// only carries a migration's transport reset).
class VirtioVsock final : public VirtioDevice {
 public:
  static constexpr std::uint16_t kRxQueue = 0, kTxQueue = 1, kEventQueue = 2;
  static constexpr std::uint16_t kQueueSize = 256;
  static constexpr std::uint64_t kHostCid = 2;
  // The unforwarded bytes the device holds for one connection at most (its receive window).
  static constexpr std::uint32_t kBufAlloc = 128 * 1024;
  // The most connections at once; more are refused (host: closed; guest: reset).
  static constexpr std::size_t kMaxConnections = 256;
  // Of which host programs that have not yet sent their CONNECT line, at most.
  static constexpr std::size_t kMaxAwaiting = 32;
  // A packet's payload at most (Linux sends up to 64 KiB).
  static constexpr std::uint32_t kMaxPayload = 64 * 1024;
  // Host ports the device gives host-initiated connections: from here up.
  static constexpr std::uint32_t kFirstHostPort = 1U << 30;

  // Listens on `socket_path` (a stale socket there, one nobody listens on, is replaced).
  static Result<std::unique_ptr<VirtioVsock>> create(std::uint64_t guest_cid,
                                                     std::string socket_path);
  ~VirtioVsock() override;  // closes every connection and removes the socket

  std::uint32_t device_type() const override;
  std::uint64_t device_features() const override;
  std::uint16_t num_queues() const override { return 3; }
  std::uint16_t queue_max_size(std::uint16_t) const override { return kQueueSize; }
  void read_config(std::uint64_t offset, std::span<std::uint8_t> data) const override;
  void write_config(std::uint64_t, std::span<const std::uint8_t>) override {}
  bool consumes(std::uint16_t queue) const override { return queue <= kTxQueue; }
  bool uses_workers() const override { return true; }
  std::uint32_t max_request_bytes() const override {
    return sizeof(virtio_vsock_hdr) + kMaxPayload;
  }
  int queue_source(std::uint16_t queue) const override;
  bool has_input(std::uint16_t queue) override;
  std::uint32_t serve(std::uint16_t queue, const Chain& chain,
                      const memory::GuestMemory& memory) override;
  void reset() override;
  // rx_bytes / tx_bytes (to and from the guest), rx_packets / tx_packets, connections made
  // each way, refused ones, resets sent, malformed packets.
  std::map<std::string, std::uint64_t> counters() const override;

  std::uint64_t guest_cid() const { return cid_; }
  const std::string& socket_path() const { return path_; }

 private:
  using Key = std::pair<std::uint32_t, std::uint32_t>;  // host port, guest port
  enum class State {
    kAwaitingConnect,  // a host program connected; its "CONNECT <port>\n" line is coming
    kConnecting,       // the guest was asked; its answer is coming
    kEstablished,
  };
  struct Connection {
    UniqueFd fd;
    State state = State::kAwaitingConnect;
    Key key{};
    std::string line;  // the CONNECT line so far
    // Guest to host: bytes the socket did not take yet, and how many were forwarded.
    std::vector<std::uint8_t> pending;
    std::size_t pending_at = 0;  // how much of `pending` went already
    std::uint32_t received = 0, forwarded = 0, forwarded_told = 0;
    bool credit_update_queued = false;
    // Host to guest: the guest's window, and what was sent into it.
    std::uint32_t peer_buf_alloc = 0, peer_fwd_cnt = 0, sent = 0;
    bool host_eof = false;         // the host program will send nothing more
    bool host_shut_write = false;  // its write side shut: the guest sends nothing more
    bool guest_done_sending = false, guest_done_receiving = false;
    int registered = -1;  // epoll events registered; -1 for none
    bool queued = false;  // in readable_
  };

  VirtioVsock(std::uint64_t cid, std::string path, UniqueFd listener, UniqueFd epoll,
              EventFd wake);

  // All below run under mutex_.
  void poll_events();
  void accept_connections();
  void read_connect_line(Connection& c);
  void on_guest_packet(const virtio_vsock_hdr& h, const Chain& chain,
                       const memory::GuestMemory& memory);
  void connect_to_host(const virtio_vsock_hdr& h);
  void forward_to_host(Connection& c, const Chain& chain, std::uint32_t length,
                       const memory::GuestMemory& memory);
  bool flush(Connection& c);  // false: the host side is gone
  // The guest's room for more bytes of `c` (0 when it reports more than it was sent).
  static std::uint32_t credit(const Connection& c) {
    const std::uint32_t in_flight = c.sent - c.peer_fwd_cnt;
    return in_flight >= c.peer_buf_alloc ? 0 : c.peer_buf_alloc - in_flight;
  }
  bool can_read(const Connection& c) const;
  // After forwarding: shuts the host's write side when the guest is done sending, resets the
  // connection when the guest is done both ways; false when it is gone.
  bool settle(Connection& c);
  void rearm(Connection& c);
  // False when the guest has left too many unread (the packet is dropped and counted).
  bool queue_packet(const Key& key, std::uint16_t op, std::uint32_t flags = 0);
  void queue_reply_reset(const virtio_vsock_hdr& to);
  void reset_connection(Connection& c);  // tells the guest, closes the host side
  void close_connection(Connection& c);  // closes the host side, forgets it
  void maybe_credit_update(Connection& c);
  Connection* find(const Key& key);
  std::uint32_t write_packet(virtio_vsock_hdr h, const Chain& chain,
                             const memory::GuestMemory& memory);
  std::uint32_t send_data(Connection& c, const Chain& chain, const memory::GuestMemory& memory);

  const std::uint64_t cid_;
  const std::string path_;
  UniqueFd listener_, epoll_;
  EventFd wake_;

  std::pair<dev_t, ino_t> inode_{};  // the socket file made, removed at the end if still ours

  mutable std::mutex mutex_;
  std::map<int, Connection> by_fd_;  // every connection, by its host fd
  std::map<Key, int> by_key_;        // those the guest knows of
  std::deque<virtio_vsock_hdr> control_;  // headers waiting for the guest's receive buffers
  std::deque<int> readable_;  // connections with bytes (or an end) for the guest, in turn
  bool listening_ = true;     // the listener is in the epoll set (not after running out of fds)
  unsigned warnings_ = 0;
  std::uint32_t next_port_ = kFirstHostPort;
  std::uint64_t rx_bytes_ = 0, rx_packets_ = 0, tx_bytes_ = 0, tx_packets_ = 0,
                host_connections_ = 0, guest_connections_ = 0, refused_ = 0, resets_ = 0,
                malformed_ = 0, control_dropped_ = 0;
};

}  // namespace keel::virtio
