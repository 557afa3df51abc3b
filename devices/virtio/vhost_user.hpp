#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "memory/guest_memory.hpp"

namespace keel::virtio {

// The front end of a vhost-user connection (QEMU's docs/interop/vhost-user.rst): another
// process (the back end, e.g. virtiofsd) serves a device's virtqueues in guest memory it maps
// from the memfds Keel sends; Keel keeps the device's PCI transport and configuration space.
// Driver notifications reach the back end through a kick eventfd per queue, its interrupts come
// back through a call eventfd per queue.
//
// Works with both of Debian's virtiofsd back ends: QEMU's C one (bookworm), which starts a ring
// at SET_VRING_KICK, and the Rust one (trixie), which waits for SET_VRING_ENABLE -- Keel sends
// both. With REPLY_ACK the back end confirms every message, so that a refusal (a memory table
// it cannot map) is an error here rather than a silent dead queue. A back end that does not
// answer a message within kReplyTimeoutMs is an error (the connection is closed), never a
// wedged VMM thread.
class VhostUser {
 public:
  static constexpr int kReplyTimeoutMs = 5000;
  static constexpr std::uint64_t kProtocolFeatures = 1ULL << 30;  // VHOST_USER_F_PROTOCOL_FEATURES
  static constexpr std::size_t kMaxRegions = 8;  // the back ends' VHOST_MEMORY_BASELINE_NREGIONS

  // Connects to the back end's Unix socket and says hello: GET_FEATURES, the protocol features,
  // SET_OWNER. `what` names it in every error ("fs myfs").
  static Result<VhostUser> connect(const std::string& socket_path, std::string what);
  // Over an already connected socket (unit tests: one end of a socketpair).
  static Result<VhostUser> open(UniqueFd socket, std::string what);

  // False once a message failed (the connection is closed then) or the back end hung up
  // (restarted while idle): connect again.
  bool connected() const;
  // The back end's virtio feature bits (GET_FEATURES).
  std::uint64_t features() const { return features_; }
  // The most queues the back end serves (GET_QUEUE_NUM, with the MQ protocol feature); 0 when
  // it does not say.
  std::uint64_t max_queues() const { return max_queues_; }
  // SET_FEATURES: what the driver accepted (protocol features kept on when the back end has them).
  Status set_features(std::uint64_t driver_features);
  // SET_MEM_TABLE: every region of guest RAM (boot RAM and the hot-pluggable region), each by
  // its memfd; memory that is not shared (no fd) is refused.
  Status set_mem_table(const memory::GuestMemory& memory);

  // One ring handed over: its size, where its parts are in Keel's address space (the back end
  // translates them through the memory table), and the eventfds.
  struct Ring {
    std::uint32_t index = 0;
    std::uint32_t size = 0;
    std::uint64_t desc = 0, avail = 0, used = 0;  // host virtual addresses
    int kick = -1, call = -1;
  };
  // SET_VRING_NUM, _ADDR, _BASE (0), _CALL, _KICK, _ENABLE 1.
  Status start_ring(const Ring& ring);
  // SET_VRING_ENABLE 0, then GET_VRING_BASE, which stops the ring in the back end: after it the
  // back end no longer touches that ring's memory. Returns where the back end stopped.
  Result<std::uint32_t> stop_ring(std::uint32_t index);

  // Message numbers (the protocol's) for the tests.
  enum Request : std::uint32_t {
    kGetFeatures = 1,
    kSetFeatures = 2,
    kSetOwner = 3,
    kSetMemTable = 5,
    kSetVringNum = 8,
    kSetVringAddr = 9,
    kSetVringBase = 10,
    kGetVringBase = 11,
    kSetVringKick = 12,
    kSetVringCall = 13,
    kGetProtocolFeatures = 15,
    kSetProtocolFeatures = 16,
    kGetQueueNum = 17,
    kSetVringEnable = 18,
  };
  static constexpr std::uint32_t kVersion = 0x1, kReply = 0x4, kNeedReply = 0x8;
  static constexpr std::uint64_t kProtocolMq = 1ULL << 0;
  static constexpr std::uint64_t kProtocolReplyAck = 1ULL << 3;

 private:
  VhostUser(UniqueFd socket, std::string what) : socket_(std::move(socket)), what_(std::move(what)) {}
  Status hello();
  // Sends one message (its fds as SCM_RIGHTS); with `ack`, waits for the back end's REPLY_ACK
  // when that was negotiated.
  Status send(Request request, std::span<const std::uint8_t> payload, std::span<const int> fds = {},
              bool ack = true);
  // Waits for the reply to `request` and returns its payload.
  Result<std::vector<std::uint8_t>> reply(Request request);
  Result<std::uint64_t> get_u64(Request request);
  Error failed(const std::string& doing, const std::string& why) const;

  UniqueFd socket_;
  std::string what_;
  std::uint64_t features_ = 0;
  std::uint64_t max_queues_ = 0;
  bool reply_ack_ = false;
};

}  // namespace keel::virtio
