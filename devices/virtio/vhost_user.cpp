#include "devices/virtio/vhost_user.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "base/hex.hpp"

namespace keel::virtio {
namespace {

struct Header {
  std::uint32_t request;
  std::uint32_t flags;
  std::uint32_t size;
};
static_assert(sizeof(Header) == 12);

struct VringState {
  std::uint32_t index;
  std::uint32_t num;
};
struct VringAddr {
  std::uint32_t index;
  std::uint32_t flags;
  std::uint64_t desc, used, avail, log;  // the protocol's order
};
struct MemoryRegion {
  std::uint64_t guest_phys_addr, memory_size, userspace_addr, mmap_offset;
};

template <typename T>
std::span<const std::uint8_t> bytes_of(const T& value) {
  return {reinterpret_cast<const std::uint8_t*>(&value), sizeof value};
}

constexpr std::size_t kMaxPayload = 4096;   // more than any reply Keel asks for

std::string name_of(VhostUser::Request r) {
  switch (r) {
    case VhostUser::kGetFeatures: return "GET_FEATURES";
    case VhostUser::kSetFeatures: return "SET_FEATURES";
    case VhostUser::kSetOwner: return "SET_OWNER";
    case VhostUser::kSetMemTable: return "SET_MEM_TABLE";
    case VhostUser::kSetVringNum: return "SET_VRING_NUM";
    case VhostUser::kSetVringAddr: return "SET_VRING_ADDR";
    case VhostUser::kSetVringBase: return "SET_VRING_BASE";
    case VhostUser::kGetVringBase: return "GET_VRING_BASE";
    case VhostUser::kSetVringKick: return "SET_VRING_KICK";
    case VhostUser::kSetVringCall: return "SET_VRING_CALL";
    case VhostUser::kGetProtocolFeatures: return "GET_PROTOCOL_FEATURES";
    case VhostUser::kSetProtocolFeatures: return "SET_PROTOCOL_FEATURES";
    case VhostUser::kGetQueueNum: return "GET_QUEUE_NUM";
    case VhostUser::kSetVringEnable: return "SET_VRING_ENABLE";
  }
  return "request " + std::to_string(static_cast<std::uint32_t>(r));
}

}  // namespace

Result<VhostUser> VhostUser::connect(const std::string& socket_path, std::string what) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof addr.sun_path) {
    return Error::invalid(what + ": socket=" + socket_path + " is not a Unix socket path of 1 to " +
                          std::to_string(sizeof addr.sun_path - 1) + " characters");
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    return Error::from_errno(what + ": socket");
  }
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return Error::opening_user_path(
        what + ": cannot connect to the vhost-user back end at " + socket_path +
        "; start it first (e.g. /usr/lib/qemu/virtiofsd --socket-path=" + socket_path +
        " -o source=DIR), one per device");
  }
  return open(std::move(fd), std::move(what));
}

Result<VhostUser> VhostUser::open(UniqueFd socket, std::string what) {
  VhostUser v(std::move(socket), std::move(what));
  KEEL_TRY_STATUS(v.hello());
  return v;
}

bool VhostUser::connected() const {
  if (!socket_) {
    return false;
  }
  pollfd p{socket_.get(), POLLRDHUP, 0};
  return ::poll(&p, 1, 0) == 0 || (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) == 0;
}

Status VhostUser::hello() {
  KEEL_TRY(features_, get_u64(kGetFeatures));
  if ((features_ & (1ULL << 32)) == 0) {  // VIRTIO_F_VERSION_1
    return failed("GET_FEATURES", "the back end does not offer VIRTIO_F_VERSION_1 (features " +
                                      hex(features_) + "); Keel drives virtio 1.x devices only");
  }
  if ((features_ & kProtocolFeatures) != 0) {
    KEEL_TRY(const std::uint64_t protocol, get_u64(kGetProtocolFeatures));
    const std::uint64_t wanted = protocol & (kProtocolReplyAck | kProtocolMq);
    KEEL_TRY_STATUS(send(kSetProtocolFeatures, bytes_of(wanted), {}, false));
    reply_ack_ = (wanted & kProtocolReplyAck) != 0;
    if ((wanted & kProtocolMq) != 0) {
      KEEL_TRY(max_queues_, get_u64(kGetQueueNum));
    }
  }
  return send(kSetOwner, {});
}

Status VhostUser::set_features(std::uint64_t driver_features) {
  const std::uint64_t value = driver_features | (features_ & kProtocolFeatures);
  return send(kSetFeatures, bytes_of(value));
}

Status VhostUser::set_mem_table(const memory::GuestMemory& memory) {
  std::vector<const memory::RamRegion*> regions;
  for (const memory::RamRegion& r : memory.regions()) {
    regions.push_back(&r);
  }
  if (memory.hotplug_region() != nullptr) {
    regions.push_back(memory.hotplug_region());
  }
  if (regions.size() > kMaxRegions) {
    return failed("SET_MEM_TABLE", std::to_string(regions.size()) +
                                       " memory regions; vhost-user back ends take " +
                                       std::to_string(kMaxRegions));
  }
  std::vector<std::uint8_t> payload(8 + regions.size() * sizeof(MemoryRegion), 0);
  const auto count = static_cast<std::uint32_t>(regions.size());
  std::memcpy(payload.data(), &count, 4);
  std::vector<int> fds;
  for (std::size_t i = 0; i < regions.size(); ++i) {
    const memory::RamRegion& r = *regions[i];
    if (r.fd() < 0) {
      return failed("SET_MEM_TABLE", "guest RAM at " + hex(r.gpa()) +
                                         " is not shared memory; give the VM memory shared=on "
                                         "(--memory shared=on, or \"shared\": true)");
    }
    const MemoryRegion m{r.gpa(), r.size(), reinterpret_cast<std::uintptr_t>(r.host()), 0};
    std::memcpy(payload.data() + 8 + i * sizeof m, &m, sizeof m);
    fds.push_back(r.fd());
  }
  return send(kSetMemTable, payload, fds);
}

Status VhostUser::start_ring(const Ring& ring) {
  KEEL_TRY_STATUS(send(kSetVringNum, bytes_of(VringState{ring.index, ring.size})));
  KEEL_TRY_STATUS(
      send(kSetVringAddr, bytes_of(VringAddr{ring.index, 0, ring.desc, ring.used, ring.avail, 0})));
  KEEL_TRY_STATUS(send(kSetVringBase, bytes_of(VringState{ring.index, 0})));
  const std::uint64_t index = ring.index;
  const int call[] = {ring.call};
  KEEL_TRY_STATUS(send(kSetVringCall, bytes_of(index), call));
  const int kick[] = {ring.kick};
  KEEL_TRY_STATUS(send(kSetVringKick, bytes_of(index), kick));
  if ((features_ & kProtocolFeatures) != 0) {
    KEEL_TRY_STATUS(send(kSetVringEnable, bytes_of(VringState{ring.index, 1})));
  }
  return ok_status();
}

Result<std::uint32_t> VhostUser::stop_ring(std::uint32_t index) {
  if ((features_ & kProtocolFeatures) != 0) {
    KEEL_TRY_STATUS(send(kSetVringEnable, bytes_of(VringState{index, 0})));
  }
  KEEL_TRY_STATUS(send(kGetVringBase, bytes_of(VringState{index, 0}), {}, false));
  KEEL_TRY(const auto payload, reply(kGetVringBase));
  if (payload.size() != sizeof(VringState)) {
    return failed("GET_VRING_BASE", "answer of " + std::to_string(payload.size()) + " bytes");
  }
  VringState state{};
  std::memcpy(&state, payload.data(), sizeof state);
  return state.num;
}

Status VhostUser::send(Request request, std::span<const std::uint8_t> payload,
                       std::span<const int> fds, bool ack) {
  if (!socket_) {
    return failed(name_of(request), "the connection is closed after an earlier failure");
  }
  const bool need_reply = ack && reply_ack_;
  const Header h{request, kVersion | (need_reply ? kNeedReply : 0),
                 static_cast<std::uint32_t>(payload.size())};
  iovec iov[2] = {{const_cast<Header*>(&h), sizeof h},
                  {const_cast<std::uint8_t*>(payload.data()), payload.size()}};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = payload.empty() ? 1 : 2;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxRegions)] = {};
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  const std::size_t total = sizeof h + payload.size();
  ssize_t n;
  do {
    n = ::sendmsg(socket_.get(), &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(total)) {
    const int err = n < 0 ? errno : EIO;
    socket_.reset();
    return failed(name_of(request),
                  std::string("send failed: ") + std::strerror(err) +
                      " (the back end is gone? start it again, then remove the device and add it "
                      "again, or reboot the VM)");
  }
  if (!need_reply) {
    return ok_status();
  }
  KEEL_TRY(const auto answer, reply(request));
  std::uint64_t status = 0;
  std::memcpy(&status, answer.data(), std::min<std::size_t>(answer.size(), 8));
  if (answer.size() != 8 || status != 0) {
    return failed(name_of(request), "the back end refused it (status " + std::to_string(status) +
                                        "); see its log");
  }
  return ok_status();
}

Result<std::vector<std::uint8_t>> VhostUser::reply(Request request) {
  // One deadline for the whole answer, however it arrives.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kReplyTimeoutMs);
  auto read_exactly = [this, deadline](std::uint8_t* into, std::size_t size) -> Status {
    std::size_t done = 0;
    while (done < size) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{socket_.get(), POLLIN, 0};
      const int ready = left.count() > 0 ? ::poll(&p, 1, static_cast<int>(left.count())) : 0;
      if (ready < 0 && errno == EINTR) {
        continue;
      }
      if (ready < 0) {
        return Error::from_errno("poll");
      }
      if (ready == 0) {
        return Error::from_errno(ETIMEDOUT, "no answer within " +
                                                std::to_string(kReplyTimeoutMs / 1000) + " s");
      }
      const ssize_t n = ::recv(socket_.get(), into + done, size - done, MSG_DONTWAIT);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
        continue;
      }
      if (n <= 0) {
        return Error::from_errno(n == 0 ? ECONNRESET : errno, "the back end closed the connection");
      }
      done += static_cast<std::size_t>(n);
    }
    return ok_status();
  };
  Header h{};
  Status s = read_exactly(reinterpret_cast<std::uint8_t*>(&h), sizeof h);
  if (s.ok() && (h.request != request || (h.flags & kReply) == 0 || h.size > kMaxPayload)) {
    s = Error::invalid("unexpected answer (request " + std::to_string(h.request) + ", flags " +
                       hex(h.flags) + ", " + std::to_string(h.size) + " bytes)");
  }
  std::vector<std::uint8_t> payload(s.ok() ? h.size : 0);
  if (s.ok()) {
    s = read_exactly(payload.data(), payload.size());
  }
  if (!s.ok()) {
    socket_.reset();  // out of step with the back end: nothing more can be trusted on it
    return failed(name_of(request), s.error().message());
  }
  return payload;
}

Result<std::uint64_t> VhostUser::get_u64(Request request) {
  KEEL_TRY_STATUS(send(request, {}, {}, false));
  KEEL_TRY(const auto payload, reply(request));
  if (payload.size() != 8) {
    return failed(name_of(request), "answer of " + std::to_string(payload.size()) + " bytes, not 8");
  }
  std::uint64_t v = 0;
  std::memcpy(&v, payload.data(), 8);
  return v;
}

Error VhostUser::failed(const std::string& doing, const std::string& why) const {
  return Error::invalid(what_ + ": vhost-user " + doing + ": " + why);
}

}  // namespace keel::virtio
