#include "devices/virtio/vhost_user.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "base/event_fd.hpp"
#include "devices/virtio/virtio_fs.hpp"

namespace keel::virtio {
namespace {

using V = VhostUser;

// One message as the back end received it.
struct Received {
  std::uint32_t request = 0, flags = 0;
  std::vector<std::uint8_t> payload;
  std::size_t fds = 0;
  std::uint64_t u64(std::size_t at = 0) const {
    std::uint64_t v = 0;
    std::memcpy(&v, payload.data() + at, std::min<std::size_t>(8, payload.size() - at));
    return v;
  }
  std::uint32_t u32(std::size_t at) const {
    std::uint32_t v = 0;
    std::memcpy(&v, payload.data() + at, 4);
    return v;
  }
};

// A vhost-user back end on the other end of a socketpair, as virtiofsd answers: its features,
// REPLY_ACK when asked, GET_VRING_BASE. `refuse` makes it answer that request with status 1;
// `hang_up_at` makes it close the connection when that request comes.
class FakeBackend {
 public:
  explicit FakeBackend(std::uint64_t features = (1ULL << 32) | V::kProtocolFeatures |
                                                (1ULL << 28) | (1ULL << 29) | (1ULL << 24),
                       std::uint32_t refuse = 0, std::uint32_t hang_up_at = 0)
      : features_(features), refuse_(refuse), hang_up_at_(hang_up_at) {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    front_ = UniqueFd(sv[0]);
    back_ = UniqueFd(sv[1]);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeBackend() {
    front_.reset();
    ::shutdown(back_.get(), SHUT_RDWR);
    thread_.join();
  }
  UniqueFd take_front() { return std::move(front_); }
  std::vector<Received> messages() {
    std::lock_guard lock(mutex_);
    return received_;
  }
  std::vector<std::uint32_t> requests() {
    std::vector<std::uint32_t> out;
    for (const Received& m : messages()) {
      out.push_back(m.request);
    }
    return out;
  }

 private:
  void serve() {
    for (;;) {
      std::uint32_t header[3];
      std::vector<std::uint8_t> body(4096);
      iovec iov{header, sizeof header};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      if (::recvmsg(back_.get(), &msg, MSG_WAITALL) != sizeof header) {
        return;
      }
      Received m{header[0], header[1], {}, 0};
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        const std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < n; ++i) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
          ::close(fd);
          ++m.fds;
        }
      }
      m.payload.resize(header[2]);
      if (header[2] > 0 &&
          ::recv(back_.get(), m.payload.data(), header[2], MSG_WAITALL) != header[2]) {
        return;
      }
      {
        std::lock_guard lock(mutex_);
        received_.push_back(m);
      }
      if (m.request == hang_up_at_) {
        ::shutdown(back_.get(), SHUT_RDWR);
        return;
      }
      switch (m.request) {
        case V::kGetFeatures: answer(m.request, features_); break;
        case V::kGetProtocolFeatures:
          answer(m.request, V::kProtocolReplyAck | V::kProtocolMq | (1ULL << 5));
          break;
        case V::kGetQueueNum: answer(m.request, 2); break;
        case V::kGetVringBase: {
          const std::uint32_t state[2] = {m.u32(0), 42};
          answer_bytes(m.request, state, sizeof state);
          break;
        }
        default:
          if ((m.flags & V::kNeedReply) != 0) {
            answer(m.request, m.request == refuse_ ? 1 : 0);
          }
      }
    }
  }
  void answer(std::uint32_t request, std::uint64_t value) { answer_bytes(request, &value, 8); }
  void answer_bytes(std::uint32_t request, const void* data, std::uint32_t size) {
    std::vector<std::uint8_t> out(12 + size);
    const std::uint32_t header[3] = {request, V::kVersion | V::kReply, size};
    std::memcpy(out.data(), header, 12);
    std::memcpy(out.data() + 12, data, size);
    (void)::send(back_.get(), out.data(), out.size(), MSG_NOSIGNAL);
  }

  std::uint64_t features_;
  std::uint32_t refuse_, hang_up_at_;
  UniqueFd front_, back_;
  std::thread thread_;
  std::mutex mutex_;
  std::vector<Received> received_;
};

// An eventfd that lives as long as the test (the kick and call fds sent along).
int event_fd() {
  static std::vector<EventFd> kept;
  auto e = EventFd::create();
  REQUIRE(e.ok());
  kept.push_back(std::move(e).value());
  return kept.back().fd();
}

// The messages of the hello with a back end that has protocol features, REPLY_ACK and MQ.
constexpr std::size_t kHello = 5;

memory::GuestMemory shared_ram() {
  auto m = memory::GuestMemory::create(16ULL << 20, memory::Backing{true, false});
  REQUIRE(m.ok());
  return std::move(m).value();
}

TEST_CASE("vhost-user: hello asks the features, acknowledges replies, takes ownership") {
  FakeBackend b;
  auto v = V::open(b.take_front(), "fs myfs");
  REQUIRE(v.ok());
  CHECK(v->features() == ((1ULL << 32) | V::kProtocolFeatures | (1ULL << 28) | (1ULL << 29) |
                          (1ULL << 24)));
  CHECK(v->max_queues() == 2);
  const auto m = b.messages();
  REQUIRE(m.size() == kHello);
  CHECK(m[0].request == V::kGetFeatures);
  CHECK(m[1].request == V::kGetProtocolFeatures);
  CHECK(m[2].request == V::kSetProtocolFeatures);
  CHECK(m[2].u64() == (V::kProtocolReplyAck | V::kProtocolMq));  // only what Keel uses
  CHECK(m[3].request == V::kGetQueueNum);
  CHECK(m[4].request == V::kSetOwner);
  CHECK((m[4].flags & V::kNeedReply) != 0);
}

TEST_CASE("vhost-user: memory by memfd, rings by host address, both starts, a stop that waits") {
  FakeBackend b;
  auto v = V::open(b.take_front(), "fs myfs");
  REQUIRE(v.ok());
  const memory::GuestMemory ram = shared_ram();
  REQUIRE(v->set_features(1ULL << 32).ok());
  REQUIRE(v->set_mem_table(ram).ok());
  REQUIRE(v->start_ring({1, 256, 0x1000, 0x2000, 0x3000, event_fd(), event_fd()}).ok());
  auto stopped = v->stop_ring(1);
  REQUIRE(stopped.ok());
  CHECK(*stopped == 42);
  const auto m = b.messages();
  REQUIRE(m.size() == kHello + 2 + 6 + 2);
  CHECK(m[5].request == V::kSetFeatures);
  CHECK(m[5].u64() == ((1ULL << 32) | V::kProtocolFeatures));  // protocol features stay on
  const Received& table = m[6];
  CHECK(table.request == V::kSetMemTable);
  CHECK(table.fds == 1);
  REQUIRE(table.payload.size() == 8 + 32);
  CHECK(table.u32(0) == 1);
  CHECK(table.u64(8) == 0);                // guest-physical address
  CHECK(table.u64(16) == 16ULL << 20);     // size
  CHECK(table.u64(24) == reinterpret_cast<std::uintptr_t>(ram.regions()[0].host()));
  CHECK(table.u64(32) == 0);               // offset in the memfd
  const std::vector<std::uint32_t> ring = {V::kSetVringNum,  V::kSetVringAddr, V::kSetVringBase,
                                           V::kSetVringCall, V::kSetVringKick, V::kSetVringEnable};
  for (std::size_t i = 0; i < ring.size(); ++i) {
    CHECK(m[7 + i].request == ring[i]);
  }
  CHECK(m[7].u32(0) == 1);
  CHECK(m[7].u32(4) == 256);
  CHECK(m[8].u64(8) == 0x1000);   // desc
  CHECK(m[8].u64(16) == 0x3000);  // used: the protocol's order is desc, used, avail
  CHECK(m[8].u64(24) == 0x2000);  // avail
  CHECK(m[10].fds == 1);
  CHECK(m[10].u64() == 1);  // the queue index, with an fd
  CHECK(m[11].fds == 1);
  CHECK(m[12].u32(4) == 1);  // enabled
  CHECK(m[13].request == V::kSetVringEnable);
  CHECK(m[13].u32(4) == 0);
  CHECK(m[14].request == V::kGetVringBase);
}

TEST_CASE("vhost-user: without protocol features the ring starts at its kick, no ENABLE") {
  FakeBackend b((1ULL << 32));
  auto v = V::open(b.take_front(), "fs myfs");
  REQUIRE(v.ok());
  REQUIRE(v->start_ring({0, 8, 1, 2, 3, event_fd(), event_fd()}).ok());
  REQUIRE(v->stop_ring(0).ok());
  CHECK(b.requests() == std::vector<std::uint32_t>{V::kGetFeatures, V::kSetOwner, V::kSetVringNum,
                                                   V::kSetVringAddr, V::kSetVringBase,
                                                   V::kSetVringCall, V::kSetVringKick,
                                                   V::kGetVringBase});
}

TEST_CASE("vhost-user: refusals, a back end that goes, private memory and old back ends are errors") {
  SECTION("a refused message names itself") {
    FakeBackend b((1ULL << 32) | V::kProtocolFeatures, V::kSetMemTable);
    auto v = V::open(b.take_front(), "fs myfs");
    REQUIRE(v.ok());
    const Status s = v->set_mem_table(shared_ram());
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().message() ==
          "fs myfs: vhost-user SET_MEM_TABLE: the back end refused it (status 1); see its log");
  }
  SECTION("a back end that hangs up") {
    FakeBackend b((1ULL << 32), 0, V::kGetVringBase);
    auto v = V::open(b.take_front(), "fs myfs");
    REQUIRE(v.ok());
    auto stopped = v->stop_ring(0);
    REQUIRE_FALSE(stopped.ok());
    CHECK(stopped.error().message().find("fs myfs: vhost-user GET_VRING_BASE: the back end closed "
                                         "the connection") == 0);
    CHECK_FALSE(v->connected());  // the VMM connects again at the next boot
    const Status again = v->set_features(1ULL << 32);
    REQUIRE_FALSE(again.ok());
    CHECK(again.error().message().find("the connection is closed") != std::string::npos);
  }
  SECTION("memory that is not shared cannot be handed over") {
    FakeBackend b;
    auto v = V::open(b.take_front(), "fs myfs");
    REQUIRE(v.ok());
    auto ram = memory::GuestMemory::create(16ULL << 20);
    REQUIRE(ram.ok());
    const Status s = v->set_mem_table(*ram);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().message().find("is not shared memory; give the VM memory shared=on") !=
          std::string::npos);
  }
  SECTION("a back end without VERSION_1") {
    FakeBackend b(V::kProtocolFeatures);
    auto v = V::open(b.take_front(), "fs myfs");
    REQUIRE_FALSE(v.ok());
    CHECK(v.error().message().find("does not offer VIRTIO_F_VERSION_1") != std::string::npos);
  }
  SECTION("nobody listening") {
    auto v = V::connect("/nonexistent/virtiofsd.sock", "fs myfs");
    REQUIRE_FALSE(v.ok());
    CHECK(v.error().message().find("fs myfs: cannot connect to the vhost-user back end at "
                                   "/nonexistent/virtiofsd.sock; start it first") == 0);
  }
}

TEST_CASE("virtio-fs: its configuration, the back end's ring features, queues handed over") {
  FakeBackend b;
  auto v = V::open(b.take_front(), "fs myfs");
  REQUIRE(v.ok());
  auto fs = VirtioFs::create(std::make_shared<V>(std::move(v).value()), {"kataShared", 1, 1024});
  REQUIRE(fs.ok());
  CHECK((*fs)->device_type() == 26);
  CHECK((*fs)->num_queues() == 2);  // high priority + one request queue
  CHECK((*fs)->external());
  // Indirect descriptors and event indexes if the back end has them; never its NOTIFY_ON_EMPTY.
  CHECK((*fs)->device_features() == ((1ULL << 28) | (1ULL << 29)));
  std::uint8_t config[40];
  (*fs)->read_config(0, config);
  CHECK(std::string(reinterpret_cast<const char*>(config)) == "kataShared");
  std::uint32_t queues;
  std::memcpy(&queues, config + 36, 4);
  CHECK(queues == 1);

  const memory::GuestMemory ram = shared_ram();
  (*fs)->driver_features((1ULL << 32) | (1ULL << 29));
  const ExternalQueue handed[] = {{0, 64, 0x10000, 0x11000, 0x12000, event_fd(), event_fd()},
                                  {1, 64, 0x20000, 0x21000, 0x22000, event_fd(), event_fd()}};
  REQUIRE((*fs)->start_external(handed, ram).ok());
  (*fs)->reset();
  const auto m = b.messages();
  REQUIRE(m.size() == kHello + 2 + 2 * 6 + 2 * 2);
  CHECK(m[5].u64() == ((1ULL << 32) | (1ULL << 29) | V::kProtocolFeatures));
  const auto host = [&ram](std::uint64_t gpa) {
    return reinterpret_cast<std::uintptr_t>(ram.translate(gpa, 1));
  };
  CHECK(m[8].u64(8) == host(0x10000));
  CHECK(m[14].u64(8) == host(0x20000));
  CHECK((*fs)->counters()["stops"] == 1);
  CHECK((*fs)->counters()["backend_errors"] == 0);

  // A ring outside guest RAM is not handed over.
  const ExternalQueue outside[] = {{0, 64, 1ULL << 40, 0x11000, 0x12000, 7, 8}};
  const Status s = (*fs)->start_external(outside, ram);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().message() == "queue 0 is not in guest RAM");
  CHECK((*fs)->counters()["backend_errors"] == 1);
}

TEST_CASE("virtio-fs: DRIVER_OK again without a reset stops the back end's rings first") {
  FakeBackend b;
  auto v = V::open(b.take_front(), "fs myfs");
  REQUIRE(v.ok());
  auto fs = VirtioFs::create(std::make_shared<V>(std::move(v).value()), {"myfs", 1, 64});
  REQUIRE(fs.ok());
  const memory::GuestMemory ram = shared_ram();
  (*fs)->driver_features(1ULL << 32);
  const ExternalQueue handed[] = {{0, 64, 0x10000, 0x11000, 0x12000, event_fd(), event_fd()}};
  REQUIRE((*fs)->start_external(handed, ram).ok());
  REQUIRE((*fs)->start_external(handed, ram).ok());
  const auto r = b.requests();
  // hello; SET_FEATURES, SET_MEM_TABLE, the ring's 6; its stop (ENABLE 0, GET_VRING_BASE); again.
  REQUIRE(r.size() == kHello + 8 + 2 + 8);
  CHECK(r[kHello + 8] == V::kSetVringEnable);
  CHECK(r[kHello + 9] == V::kGetVringBase);
  CHECK(r[kHello + 10] == V::kSetFeatures);
  CHECK((*fs)->counters()["stops"] == 1);

  // The device goes (fs->reset() destroys it; its VM went) with the connection kept for the
  // next boot: its rings stop
  // in the back end first.
  fs->reset();
  const auto after = b.requests();
  REQUIRE(after.size() == kHello + 8 + 2 + 8 + 2);
  CHECK(after[after.size() - 2] == V::kSetVringEnable);
  CHECK(after.back() == V::kGetVringBase);
}

TEST_CASE("virtio-fs: more request queues than the back end serves are refused") {
  FakeBackend b;  // GET_QUEUE_NUM: 2, the high-priority queue and one request queue
  auto v = V::open(b.take_front(), "fs myfs");
  REQUIRE(v.ok());
  auto fs = VirtioFs::create(std::make_shared<V>(std::move(v).value()), {"myfs", 2, 1024});
  REQUIRE_FALSE(fs.ok());
  CHECK(fs.error().message() ==
        "num_queues=2: the back end serves 2 queues, the high-priority one and 1 request "
        "queue(s); give num_queues=1");
}

TEST_CASE("virtio-fs: a tag of 1 to 36 bytes") {
  for (const std::string& tag : {std::string(), std::string(37, 'x')}) {
    FakeBackend b;
    auto v = V::open(b.take_front(), "fs");
    REQUIRE(v.ok());
    auto fs = VirtioFs::create(std::make_shared<V>(std::move(v).value()), {tag, 1, 1024});
    REQUIRE_FALSE(fs.ok());
    CHECK(fs.error().message().find("give 1 to 36") != std::string::npos);
  }
}

}  // namespace
}  // namespace keel::virtio
