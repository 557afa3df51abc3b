#include "devices/virtio/virtio_vsock.hpp"

#include <linux/virtio_ids.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "base/log.hpp"

namespace keel::virtio {

namespace {

constexpr std::size_t kHeader = sizeof(virtio_vsock_hdr);
constexpr std::size_t kMaxControl = 4 * VirtioVsock::kMaxConnections;
constexpr std::size_t kMaxLine = 64;  // "CONNECT 4294967295\n" and some slack

Result<sockaddr_un> unix_address(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof address.sun_path) {
    return Error::invalid("socket=" + path + ": a Unix socket path must have 1 to " +
                          std::to_string(sizeof address.sun_path - 1) + " characters");
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  return address;
}

// A non-blocking connection to the Unix socket at `path`; the error is connect's.
Result<UniqueFd> connect_unix(const std::string& path) {
  KEEL_TRY(const sockaddr_un address, unix_address(path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) {
    return Error::from_errno("socket(AF_UNIX)");
  }
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    return Error::from_errno("connect " + path);
  }
  return fd;
}

bool send_all_now(int fd, const std::string& text) {
  const ssize_t n = ::send(fd, text.data(), text.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  return n == static_cast<ssize_t>(text.size());
}

}  // namespace

Result<std::unique_ptr<VirtioVsock>> VirtioVsock::create(std::uint64_t guest_cid,
                                                         std::string socket_path) {
  const std::string where = "vsock socket=" + socket_path;
  // PATH_<port> must fit too: guests connect to any 32-bit port.
  KEEL_TRY_WRAP(const sockaddr_un address, unix_address(socket_path + "_4294967295"),
                "vsock (with room for the _<port> suffix of guest connections)");
  struct stat st {};
  if (::lstat(socket_path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Error::exists(where + ": the path exists and is not a socket; remove it or give "
                                   "another path");
    }
    auto live = connect_unix(socket_path);
    const int why = live.ok() ? 0 : live.error().code().value();
    if (why != ECONNREFUSED && why != ENOENT) {
      return Error::exists(where + ": another process listens there (or it cannot be "
                                   "checked); stop it or give another path");
    }
    // Left behind by a process that ended without removing it: nobody listens.
    if (why == ECONNREFUSED && ::unlink(socket_path.c_str()) != 0 && errno != ENOENT) {
      return Error::from_errno(where + ": removing the stale socket");
    }
  }
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!listener.valid()) {
    return Error::from_errno(where + ": socket(AF_UNIX)");
  }
  sockaddr_un own = address;
  std::memcpy(own.sun_path, socket_path.c_str(), socket_path.size() + 1);
  if (::bind(listener.get(), reinterpret_cast<const sockaddr*>(&own), sizeof own) != 0) {
    return Error::opening_user_path(where + ": bind");
  }
  if (::listen(listener.get(), 64) != 0) {
    const int err = errno;
    (void)::unlink(socket_path.c_str());
    return Error::from_errno(err, where + ": listen");
  }
  UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
  auto wake = EventFd::create(EFD_NONBLOCK);
  if (!epoll.valid() || !wake.ok()) {
    (void)::unlink(socket_path.c_str());
    return Error::from_errno(where + ": epoll/eventfd");
  }
  for (int fd : {listener.get(), wake->fd()}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
      (void)::unlink(socket_path.c_str());
      return Error::from_errno(where + ": epoll_ctl");
    }
  }
  return std::unique_ptr<VirtioVsock>(new VirtioVsock(guest_cid, std::move(socket_path),
                                                      std::move(listener), std::move(epoll),
                                                      std::move(wake).value()));
}

VirtioVsock::VirtioVsock(std::uint64_t cid, std::string path, UniqueFd listener, UniqueFd epoll,
                         EventFd wake)
    : cid_(cid),
      path_(std::move(path)),
      listener_(std::move(listener)),
      epoll_(std::move(epoll)),
      wake_(std::move(wake)) {
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0) {
    inode_ = {st.st_dev, st.st_ino};
  }
}

VirtioVsock::~VirtioVsock() {
  // Ours still (nobody replaced it meanwhile): remove it, as cloud-hypervisor does.
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) &&
      std::pair{st.st_dev, st.st_ino} == inode_) {
    (void)::unlink(path_.c_str());
  }
}

std::uint32_t VirtioVsock::device_type() const { return VIRTIO_ID_VSOCK; }

std::uint64_t VirtioVsock::device_features() const {
  return 1ULL << 0;  // VIRTIO_VSOCK_F_STREAM (virtio 1.2 §5.10.3); no SEQPACKET
}

void VirtioVsock::read_config(std::uint64_t offset, std::span<std::uint8_t> data) const {
  read_config_of(cid_, offset, data);  // struct virtio_vsock_config { le64 guest_cid; }
}

int VirtioVsock::queue_source(std::uint16_t queue) const {
  return queue == kRxQueue ? epoll_.get() : -1;
}

bool VirtioVsock::has_input(std::uint16_t queue) {
  if (queue != kRxQueue) {
    return true;
  }
  std::lock_guard lock(mutex_);
  poll_events();
  return !control_.empty() || !readable_.empty();
}

std::uint32_t VirtioVsock::serve(std::uint16_t queue, const Chain& chain,
                                 const memory::GuestMemory& memory) {
  std::lock_guard lock(mutex_);
  if (queue == kTxQueue) {
    virtio_vsock_hdr h{};
    auto got = Virtqueue::read(memory, chain.readable, 0,
                               std::span(reinterpret_cast<std::uint8_t*>(&h), kHeader));
    if (!got.ok() || *got != kHeader) {
      ++malformed_;
      return 0;
    }
    ++tx_packets_;
    on_guest_packet(h, chain, memory);
    return 0;
  }
  if (chain.writable_size < kHeader) {
    ++malformed_;  // no room for a header: the buffer goes back empty
    return 0;
  }
  if (!control_.empty()) {
    const virtio_vsock_hdr h = control_.front();
    control_.pop_front();
    return write_packet(h, chain, memory);
  }
  // Connections take turns: one packet each, then to the back of the line while they have more.
  while (!readable_.empty()) {
    const int fd = readable_.front();
    readable_.pop_front();
    auto it = by_fd_.find(fd);
    if (it == by_fd_.end()) {
      continue;
    }
    it->second.queued = false;
    if (can_read(it->second)) {
      return send_data(it->second, chain, memory);
    }
  }
  return 0;
}

void VirtioVsock::reset() {
  std::lock_guard lock(mutex_);
  while (!by_fd_.empty()) {
    close_connection(by_fd_.begin()->second);
  }
  control_.clear();
  readable_.clear();
  (void)wake_.consume();
}

std::map<std::string, std::uint64_t> VirtioVsock::counters() const {
  std::lock_guard lock(mutex_);
  return {{"rx_bytes", rx_bytes_},
          {"rx_packets", rx_packets_},
          {"tx_bytes", tx_bytes_},
          {"tx_packets", tx_packets_},
          {"host_connections", host_connections_},
          {"guest_connections", guest_connections_},
          {"connections_refused", refused_},
          {"connections_open", by_fd_.size()},
          {"resets_sent", resets_},
          {"malformed_packets", malformed_},
          {"control_dropped", control_dropped_}};
}

// ---- the host side ----

void VirtioVsock::poll_events() {
  std::array<epoll_event, kMaxConnections + 2> events{};
  const int n = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), 0);
  for (int i = 0; i < n; ++i) {
    const int fd = events[i].data.fd;
    const std::uint32_t what = events[i].events;
    if (fd == wake_.fd()) {
      (void)wake_.consume();
      continue;
    }
    if (fd == listener_.get()) {
      accept_connections();
      continue;
    }
    auto it = by_fd_.find(fd);
    if (it == by_fd_.end()) {
      continue;
    }
    Connection& c = it->second;
    if (c.state == State::kAwaitingConnect) {
      read_connect_line(c);
      continue;
    }
    if (c.state == State::kConnecting) {
      reset_connection(c);  // the host program hung up before the guest answered
      continue;
    }
    if (!c.pending.empty() && (what & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0) {
      if (!flush(c)) {
        reset_connection(c);
        continue;
      }
      if (!settle(c)) {
        continue;
      }
    }
    if (can_read(c) && !c.queued && (what & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) {
      c.queued = true;
      readable_.push_back(fd);
    }
    rearm(c);
  }
}

void VirtioVsock::accept_connections() {
  // A few at a time: this runs under the transport's lock, and a flood must not hold it.
  for (int i = 0; i < 16; ++i) {
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd.valid()) {
      if (errno == EINTR || errno == ECONNABORTED) {
        continue;
      }
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        // Out of fds or memory: stop listening until a connection closes, rather than spin on
        // a listener that stays readable.
        if (warnings_++ < 4) {
          log::warn("vsock", "accept failed; not listening until a connection closes",
                    {{"socket", path_}, {"errno", errno}});
        }
        (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, listener_.get(), nullptr);
        listening_ = false;
      }
      return;
    }
    const auto waiting = std::count_if(by_fd_.begin(), by_fd_.end(), [](const auto& e) {
      return e.second.state == State::kAwaitingConnect;
    });
    if (by_fd_.size() >= kMaxConnections || waiting >= static_cast<std::ptrdiff_t>(kMaxAwaiting)) {
      ++refused_;
      continue;  // closed: the host program sees the end of its connection
    }
    const int raw = fd.get();
    Connection& c = by_fd_[raw];
    c.fd = std::move(fd);
    rearm(c);
  }
}

void VirtioVsock::read_connect_line(Connection& c) {
  for (;;) {
    char ch = 0;
    const ssize_t n = ::read(c.fd.get(), &ch, 1);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (errno == EAGAIN) {
        return;  // the rest of the line later
      }
      continue;
    }
    if (n <= 0 || c.line.size() >= kMaxLine) {
      ++refused_;
      close_connection(c);  // gone before its line, or not a CONNECT line
      return;
    }
    if (ch == '\n') {
      break;
    }
    c.line.push_back(ch);
  }
  // "CONNECT <port>", as cloud-hypervisor reads it (a trailing \r tolerated).
  std::string_view line = c.line;
  if (!line.empty() && line.back() == '\r') {
    line.remove_suffix(1);
  }
  constexpr std::string_view kConnect = "CONNECT ";
  std::uint32_t port = 0;
  const char* end = line.data() + line.size();
  const bool parsed =
      line.starts_with(kConnect) && line.size() > kConnect.size() &&
      [&] {
        auto r = std::from_chars(line.data() + kConnect.size(), end, port);
        return r.ec == std::errc{} && r.ptr == end;
      }();
  if (!parsed) {
    ++refused_;
    (void)send_all_now(c.fd.get(), "ERROR expected CONNECT <port>\n");
    close_connection(c);
    return;
  }
  std::uint32_t host_port = next_port_;
  while (by_key_.contains({host_port, port})) {
    host_port = host_port == UINT32_MAX - 1 ? kFirstHostPort : host_port + 1;
  }
  next_port_ = host_port == UINT32_MAX - 1 ? kFirstHostPort : host_port + 1;
  c.key = {host_port, port};
  c.state = State::kConnecting;
  c.line.clear();
  by_key_[c.key] = c.fd.get();
  ++host_connections_;
  queue_packet(c.key, VIRTIO_VSOCK_OP_REQUEST);
  rearm(c);
}

bool VirtioVsock::flush(Connection& c) {
  std::size_t done = 0;
  while (c.pending_at + done < c.pending.size()) {
    const ssize_t n = ::send(c.fd.get(), c.pending.data() + c.pending_at + done,
                             c.pending.size() - c.pending_at - done, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        break;
      }
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  c.pending_at += done;
  if (c.pending_at == c.pending.size()) {
    c.pending.clear();
    c.pending_at = 0;
  } else if (c.pending_at >= kBufAlloc) {
    // What went is dropped from the front now and then, so the buffer stays within the window.
    c.pending.erase(c.pending.begin(), c.pending.begin() + static_cast<std::ptrdiff_t>(c.pending_at));
    c.pending_at = 0;
  }
  c.forwarded += static_cast<std::uint32_t>(done);
  maybe_credit_update(c);
  return true;
}

bool VirtioVsock::settle(Connection& c) {
  if (!c.pending.empty()) {
    rearm(c);
    return true;
  }
  if (c.guest_done_sending && c.guest_done_receiving) {
    // The guest closed: everything it sent is forwarded; a reset ends it on both sides (the
    // guest waits for one).
    reset_connection(c);
    return false;
  }
  if (c.guest_done_sending && !c.host_shut_write) {
    (void)::shutdown(c.fd.get(), SHUT_WR);
    c.host_shut_write = true;
  }
  rearm(c);
  return true;
}

bool VirtioVsock::can_read(const Connection& c) const {
  return c.state == State::kEstablished && !c.host_eof && !c.guest_done_receiving &&
         credit(c) > 0;
}

void VirtioVsock::rearm(Connection& c) {
  // -1: out of the set. An established connection with nothing wanted leaves it altogether (a
  // hung-up peer would be reported forever); one waiting for the guest's answer stays with no
  // events, so that its host program hanging up (reported regardless) ends it.
  int want = -1;
  if (c.state == State::kAwaitingConnect) {
    want = EPOLLIN;
  } else if (c.state == State::kConnecting) {
    want = 0;
  } else {
    want = (can_read(c) ? int{EPOLLIN} : 0) | (c.pending.empty() ? 0 : int{EPOLLOUT});
    want = want == 0 ? -1 : want;
  }
  if (want == c.registered) {
    return;
  }
  epoll_event ev{};
  ev.events = static_cast<std::uint32_t>(std::max(want, 0));
  ev.data.fd = c.fd.get();
  const int op = want < 0 ? EPOLL_CTL_DEL : c.registered < 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
  if (::epoll_ctl(epoll_.get(), op, c.fd.get(), &ev) != 0) {
    if (warnings_++ < 4) {
      log::warn("vsock", "epoll_ctl failed", {{"fd", c.fd.get()}, {"errno", errno}});
    }
    return;  // tried again at the next change
  }
  c.registered = want;
}

// ---- the guest side ----

void VirtioVsock::on_guest_packet(const virtio_vsock_hdr& h, const Chain& chain,
                                  const memory::GuestMemory& memory) {
  const Key key{std::uint32_t{h.dst_port}, std::uint32_t{h.src_port}};
  Connection* c = find(key);
  if (h.src_cid != cid_ || h.dst_cid != kHostCid) {
    ++malformed_;  // not this guest's, or not for the host: no connection of ours to answer for
    return;
  }
  const bool sized = h.len <= kMaxPayload && h.len <= chain.readable_size - kHeader;
  if (!sized || h.type != VIRTIO_VSOCK_TYPE_STREAM) {
    ++malformed_;
    if (c != nullptr) {
      reset_connection(*c);
    } else if (h.op != VIRTIO_VSOCK_OP_RST) {
      queue_reply_reset(h);
    }
    return;
  }
  if (c != nullptr) {
    // Every packet carries the guest's window: one that opened lets the host's bytes flow again.
    c->peer_buf_alloc = h.buf_alloc;
    c->peer_fwd_cnt = h.fwd_cnt;
    rearm(*c);
  }
  switch (h.op) {
    case VIRTIO_VSOCK_OP_REQUEST:
      if (c != nullptr) {
        reset_connection(*c);  // a second request for a live connection: both are off
      } else {
        connect_to_host(h);
      }
      return;
    case VIRTIO_VSOCK_OP_RST:
      if (c != nullptr) {
        close_connection(*c);
      }
      return;
    default:
      break;
  }
  if (c == nullptr) {
    queue_reply_reset(h);  // no such connection
    return;
  }
  switch (h.op) {
    case VIRTIO_VSOCK_OP_RESPONSE:
      if (c->state != State::kConnecting ||
          !send_all_now(c->fd.get(), "OK " + std::to_string(key.first) + "\n")) {
        reset_connection(*c);
        return;
      }
      c->state = State::kEstablished;
      rearm(*c);
      return;
    case VIRTIO_VSOCK_OP_RW:
      if (c->state != State::kEstablished || c->guest_done_sending ||
          c->received - c->forwarded + h.len > kBufAlloc) {
        ++malformed_;  // data before the connection, after its end, or past its credit
        reset_connection(*c);
        return;
      }
      forward_to_host(*c, chain, h.len, memory);
      return;
    case VIRTIO_VSOCK_OP_SHUTDOWN:
      c->guest_done_sending |= (h.flags & VIRTIO_VSOCK_SHUTDOWN_SEND) != 0;
      c->guest_done_receiving |= (h.flags & VIRTIO_VSOCK_SHUTDOWN_RCV) != 0;
      (void)settle(*c);
      return;
    case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
      rearm(*c);  // the guest's window may have opened
      return;
    case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
      queue_packet(key, VIRTIO_VSOCK_OP_CREDIT_UPDATE);
      return;
    default:
      ++malformed_;
      reset_connection(*c);
      return;
  }
}

void VirtioVsock::connect_to_host(const virtio_vsock_hdr& h) {
  if (by_fd_.size() >= kMaxConnections) {
    ++refused_;
    queue_reply_reset(h);
    return;
  }
  auto fd = connect_unix(path_ + "_" + std::to_string(h.dst_port));
  if (!fd.ok()) {
    ++refused_;  // nobody listens on PATH_<port> (or its backlog is full)
    queue_reply_reset(h);
    return;
  }
  const int raw = fd->get();
  Connection& c = by_fd_[raw];
  c.fd = std::move(fd).value();
  c.state = State::kEstablished;
  c.key = Key{std::uint32_t{h.dst_port}, std::uint32_t{h.src_port}};
  c.peer_buf_alloc = h.buf_alloc;
  c.peer_fwd_cnt = h.fwd_cnt;
  by_key_[c.key] = raw;
  ++guest_connections_;
  queue_packet(c.key, VIRTIO_VSOCK_OP_RESPONSE);
  rearm(c);
}

void VirtioVsock::forward_to_host(Connection& c, const Chain& chain, std::uint32_t length,
                                  const memory::GuestMemory& memory) {
  if (length == 0) {
    return;
  }
  c.received += length;
  tx_bytes_ += length;
  std::uint32_t sent = 0;
  if (c.pending.empty()) {
    std::vector<iovec> iov = Virtqueue::iovecs(memory, chain.readable, kHeader, length);
    msghdr message{};
    message.msg_iov = iov.data();
    message.msg_iovlen = std::min<std::size_t>(iov.size(), IOV_MAX);
    ssize_t n = -1;
    do {
      n = ::sendmsg(c.fd.get(), &message, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      reset_connection(c);  // the host program is gone
      return;
    }
    sent = n > 0 ? static_cast<std::uint32_t>(n) : 0;
    c.forwarded += sent;
  }
  if (sent < length) {
    // The socket is full: keep the rest (within the credit the guest was given).
    const std::size_t at = c.pending.size();
    c.pending.resize(at + (length - sent));
    (void)Virtqueue::read(memory, chain.readable, kHeader + sent,
                          std::span(c.pending.data() + at, length - sent));
  }
  maybe_credit_update(c);
  rearm(c);
}

void VirtioVsock::maybe_credit_update(Connection& c) {
  if (!c.credit_update_queued && c.forwarded - c.forwarded_told >= kBufAlloc / 4) {
    c.credit_update_queued = queue_packet(c.key, VIRTIO_VSOCK_OP_CREDIT_UPDATE);
  }
}

// ---- packets to the guest ----

bool VirtioVsock::queue_packet(const Key& key, std::uint16_t op, std::uint32_t flags) {
  if (control_.size() >= kMaxControl) {
    ++control_dropped_;  // a guest that gives no receive buffers
    return false;
  }
  virtio_vsock_hdr h{};
  h.src_cid = kHostCid;
  h.dst_cid = cid_;
  h.src_port = key.first;
  h.dst_port = key.second;
  h.type = VIRTIO_VSOCK_TYPE_STREAM;
  h.op = op;
  h.flags = flags;
  control_.push_back(h);
  (void)wake_.signal();
  return true;
}

void VirtioVsock::queue_reply_reset(const virtio_vsock_hdr& to) {
  ++resets_;
  queue_packet(Key{std::uint32_t{to.dst_port}, std::uint32_t{to.src_port}}, VIRTIO_VSOCK_OP_RST);
}

void VirtioVsock::reset_connection(Connection& c) {
  if (c.state != State::kAwaitingConnect) {
    ++resets_;
    queue_packet(c.key, VIRTIO_VSOCK_OP_RST);
  }
  close_connection(c);
}

void VirtioVsock::close_connection(Connection& c) {
  if (c.registered >= 0) {
    (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c.fd.get(), nullptr);
  }
  if (c.state != State::kAwaitingConnect) {
    by_key_.erase(c.key);
  }
  if (auto at = std::find(readable_.begin(), readable_.end(), c.fd.get()); at != readable_.end()) {
    readable_.erase(at);
  }
  by_fd_.erase(c.fd.get());  // closes the host side: its program sees the end
  if (!listening_) {
    // Room again after running out of fds: listen again.
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = listener_.get();
    listening_ = ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, listener_.get(), &ev) == 0;
  }
}

VirtioVsock::Connection* VirtioVsock::find(const Key& key) {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) {
    return nullptr;
  }
  auto c = by_fd_.find(it->second);
  return c == by_fd_.end() ? nullptr : &c->second;
}

std::uint32_t VirtioVsock::write_packet(virtio_vsock_hdr h, const Chain& chain,
                                        const memory::GuestMemory& memory) {
  h.buf_alloc = kBufAlloc;
  if (Connection* c = find(Key{std::uint32_t{h.src_port}, std::uint32_t{h.dst_port}}); c != nullptr) {
    h.fwd_cnt = c->forwarded;
    c->forwarded_told = c->forwarded;
    c->credit_update_queued = false;
  }
  if (!Virtqueue::write(memory, chain.writable, 0,
                        std::span(reinterpret_cast<const std::uint8_t*>(&h), kHeader))
           .ok()) {
    return 0;
  }
  ++rx_packets_;
  return static_cast<std::uint32_t>(kHeader + h.len);
}

std::uint32_t VirtioVsock::send_data(Connection& c, const Chain& chain,
                                     const memory::GuestMemory& memory) {
  const std::uint64_t want = std::min<std::uint64_t>(
      {chain.writable_size - kHeader, credit(c), kMaxPayload});
  virtio_vsock_hdr h{};
  h.src_cid = kHostCid;
  h.dst_cid = cid_;
  h.src_port = c.key.first;
  h.dst_port = c.key.second;
  h.type = VIRTIO_VSOCK_TYPE_STREAM;
  std::vector<iovec> iov = want == 0 ? std::vector<iovec>{}
                                     : Virtqueue::iovecs(memory, chain.writable, kHeader, want);
  if (iov.empty()) {
    // No room past the header (or the buffers leave guest RAM): nothing read, nothing told.
    c.queued = true;
    readable_.push_front(c.fd.get());
    return 0;
  }
  iov.resize(std::min<std::size_t>(iov.size(), IOV_MAX));
  ssize_t n = 0;
  do {
    n = ::readv(c.fd.get(), iov.data(), static_cast<int>(iov.size()));
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    h.op = VIRTIO_VSOCK_OP_RW;
    h.len = static_cast<std::uint32_t>(n);
    c.sent += h.len;
    rx_bytes_ += h.len;
  } else if (n == 0) {
    // The host program will send no more: so the guest reads an end.
    h.op = VIRTIO_VSOCK_OP_SHUTDOWN;
    h.flags = VIRTIO_VSOCK_SHUTDOWN_SEND;
    c.host_eof = true;
  } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
    rearm(c);
    return 0;  // not readable after all: the buffer goes back empty
  } else {
    h.op = VIRTIO_VSOCK_OP_RST;
    ++resets_;
    const std::uint32_t length = write_packet(h, chain, memory);
    close_connection(c);
    return length;
  }
  const std::uint32_t length = write_packet(h, chain, memory);
  if (n > 0 && static_cast<std::uint64_t>(n) == want && can_read(c)) {
    c.queued = true;  // probably more: its next turn after the others'
    readable_.push_back(c.fd.get());
  }
  rearm(c);
  return length;
}

}  // namespace keel::virtio
