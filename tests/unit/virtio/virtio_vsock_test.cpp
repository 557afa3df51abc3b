// virtio-vsock's hybrid Unix socket side with real sockets in a temporary directory: the test
// plays the guest's driver (packets in and out of guest memory through serve()) and the host
// programs (connect, CONNECT <port>, listen on PATH_<port>).
#include "devices/virtio/virtio_vsock.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "tests/unit/virtio/driver_ring.hpp"

namespace keel::virtio {
namespace {

constexpr std::uint64_t kCid = 7;
constexpr std::uint64_t kTxAt = 0x100000, kRxAt = 0x200000;
constexpr std::uint32_t kRxBuffer = 4096;  // Linux's receive buffers

struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/keel-vsock-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() { (void)std::system(("rm -rf '" + path + "'").c_str()); }
  std::string path;
};

UniqueFd unix_connect(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  return fd;
}

UniqueFd unix_listen(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(fd.get(), 4) == 0);
  return fd;
}

// Whatever `fd` has within `ms`, up to `most` bytes ("" at its end or when nothing came).
std::string read_some(int fd, std::size_t most = 65536, int ms = 2000) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, ms) != 1) {
    return "";
  }
  std::string s(most, '\0');
  const ssize_t n = ::read(fd, s.data(), most);
  s.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  return s;
}

struct Packet {
  virtio_vsock_hdr h{};
  std::string payload;
};

// The guest's driver: packets written to guest memory and served on the transmit queue; the
// receive queue served into a 4 KiB buffer while the device has input.
class Guest {
 public:
  explicit Guest(VirtioVsock& dev) : dev_(dev), mem_(test::guest_ram()) {}

  void send(std::uint16_t op, std::uint32_t src_port, std::uint32_t dst_port,
            const std::string& payload = "", std::uint32_t flags = 0,
            std::uint32_t buf_alloc = 256 * 1024, std::optional<std::uint32_t> fwd_cnt = {},
            std::uint64_t src_cid = kCid) {
    virtio_vsock_hdr h{};
    h.src_cid = src_cid;
    h.dst_cid = VirtioVsock::kHostCid;
    h.src_port = src_port;
    h.dst_port = dst_port;
    h.len = static_cast<std::uint32_t>(payload.size());
    h.type = VIRTIO_VSOCK_TYPE_STREAM;
    h.op = op;
    h.flags = flags;
    h.buf_alloc = buf_alloc;
    h.fwd_cnt = fwd_cnt.value_or(received_);
    send_raw(h, payload);
  }
  void send_raw(const virtio_vsock_hdr& h, const std::string& payload) {
    REQUIRE(mem_.write(kTxAt, std::span(reinterpret_cast<const std::uint8_t*>(&h), sizeof h)).ok());
    REQUIRE(mem_.write(kTxAt + sizeof h,
                       std::span(reinterpret_cast<const std::uint8_t*>(payload.data()),
                                 payload.size()))
                .ok());
    Chain c;
    c.readable = {{kTxAt, static_cast<std::uint32_t>(sizeof h)}};
    if (!payload.empty()) {
      c.readable.push_back({kTxAt + sizeof h, static_cast<std::uint32_t>(payload.size())});
    }
    c.readable_size = static_cast<std::uint32_t>(sizeof h + payload.size());
    CHECK(dev_.serve(VirtioVsock::kTxQueue, c, mem_) == 0);
  }
  // A connection out to the host's listener on PATH_<host_port>: the request, the device's
  // response, the host side accepted.
  UniqueFd connect_out(int listener, std::uint32_t guest_port, std::uint32_t host_port,
                       std::uint32_t buf_alloc = 256 * 1024) {
    send(VIRTIO_VSOCK_OP_REQUEST, guest_port, host_port, "", 0, buf_alloc, 0);
    auto response = receive();
    REQUIRE(response);
    REQUIRE(response->h.op == VIRTIO_VSOCK_OP_RESPONSE);
    UniqueFd host(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
    REQUIRE(host.valid());
    return host;
  }
  // The next packet for the guest, waiting up to ~2 s for one.
  std::optional<Packet> receive(int tries = 200) {
    for (int i = 0; i < tries && !dev_.has_input(VirtioVsock::kRxQueue); ++i) {
      ::usleep(10000);
    }
    if (!dev_.has_input(VirtioVsock::kRxQueue)) {
      return std::nullopt;
    }
    Chain c;
    c.writable = {{kRxAt, kRxBuffer}};
    c.writable_size = kRxBuffer;
    const std::uint32_t used = dev_.serve(VirtioVsock::kRxQueue, c, mem_);
    if (used < sizeof(virtio_vsock_hdr)) {
      return std::nullopt;
    }
    Packet p;
    REQUIRE(mem_.read(kRxAt, std::span(reinterpret_cast<std::uint8_t*>(&p.h), sizeof p.h)).ok());
    REQUIRE(used == sizeof p.h + p.h.len);
    p.payload.resize(p.h.len);
    REQUIRE(mem_.read(kRxAt + sizeof p.h, std::span(reinterpret_cast<std::uint8_t*>(p.payload.data()),
                                                    p.payload.size()))
                .ok());
    if (p.h.op == VIRTIO_VSOCK_OP_RW) {
      received_ += p.h.len;
    }
    return p;
  }

  std::uint32_t received_ = 0;  // the guest's fwd_cnt: data bytes it took

 private:
  VirtioVsock& dev_;
  memory::GuestMemory mem_;
};

std::unique_ptr<VirtioVsock> make(const std::string& path) {
  auto dev = VirtioVsock::create(kCid, path);
  INFO((dev.ok() ? std::string() : dev.error().message()));
  REQUIRE(dev.ok());
  return std::move(dev).value();
}

TEST_CASE("vsock: a host program connects to a guest port and they talk both ways") {
  TempDir dir;
  const std::string path = dir.path + "/v.sock";
  auto dev = make(path);
  Guest guest(*dev);
  CHECK_FALSE(dev->has_input(VirtioVsock::kRxQueue));

  UniqueFd host = unix_connect(path);
  REQUIRE(::write(host.get(), "CONNECT 1234\n", 13) == 13);
  auto request = guest.receive();
  REQUIRE(request);
  CHECK(request->h.op == VIRTIO_VSOCK_OP_REQUEST);
  CHECK(request->h.src_cid == VirtioVsock::kHostCid);
  CHECK(request->h.dst_cid == kCid);
  CHECK(request->h.dst_port == 1234);
  const std::uint32_t host_port = request->h.src_port;
  CHECK(host_port >= VirtioVsock::kFirstHostPort);
  CHECK(request->h.buf_alloc == VirtioVsock::kBufAlloc);

  guest.send(VIRTIO_VSOCK_OP_RESPONSE, 1234, host_port);
  CHECK(read_some(host.get()) == "OK " + std::to_string(host_port) + "\n");

  REQUIRE(::write(host.get(), "ping", 4) == 4);
  auto data = guest.receive();
  REQUIRE(data);
  CHECK(data->h.op == VIRTIO_VSOCK_OP_RW);
  CHECK(data->payload == "ping");
  guest.send(VIRTIO_VSOCK_OP_RW, 1234, host_port, "pong");
  CHECK(read_some(host.get()) == "pong");

  // The host program closes: the guest reads an end; the guest closes too and gets its reset.
  host.reset();
  auto end = guest.receive();
  REQUIRE(end);
  CHECK(end->h.op == VIRTIO_VSOCK_OP_SHUTDOWN);
  CHECK(end->h.flags == VIRTIO_VSOCK_SHUTDOWN_SEND);
  guest.send(VIRTIO_VSOCK_OP_SHUTDOWN, 1234, host_port, "",
             VIRTIO_VSOCK_SHUTDOWN_SEND | VIRTIO_VSOCK_SHUTDOWN_RCV);
  auto rst = guest.receive();
  REQUIRE(rst);
  CHECK(rst->h.op == VIRTIO_VSOCK_OP_RST);
  const auto counters = dev->counters();
  CHECK(counters.at("host_connections") == 1);
  CHECK(counters.at("rx_bytes") == 4);
  CHECK(counters.at("tx_bytes") == 4);
  CHECK(counters.at("connections_open") == 0);
}

TEST_CASE("vsock: a guest connects to the host's PATH_<port>; nobody there gets a reset") {
  TempDir dir;
  const std::string path = dir.path + "/v.sock";
  auto dev = make(path);
  Guest guest(*dev);
  UniqueFd listener = unix_listen(path + "_5000");

  guest.send(VIRTIO_VSOCK_OP_REQUEST, 40000, 5000);
  auto response = guest.receive();
  REQUIRE(response);
  CHECK(response->h.op == VIRTIO_VSOCK_OP_RESPONSE);
  CHECK(response->h.src_port == 5000);
  CHECK(response->h.dst_port == 40000);
  UniqueFd host(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  REQUIRE(host.valid());
  guest.send(VIRTIO_VSOCK_OP_RW, 40000, 5000, "hello host");
  CHECK(read_some(host.get()) == "hello host");
  REQUIRE(::write(host.get(), "hello guest", 11) == 11);
  auto data = guest.receive();
  REQUIRE(data);
  CHECK(data->payload == "hello guest");

  // The guest is done sending: the host reads an end and can still answer.
  guest.send(VIRTIO_VSOCK_OP_SHUTDOWN, 40000, 5000, "", VIRTIO_VSOCK_SHUTDOWN_SEND);
  CHECK(read_some(host.get()).empty());
  REQUIRE(::write(host.get(), "bye", 3) == 3);
  data = guest.receive();
  REQUIRE(data);
  CHECK(data->payload == "bye");
  // A reset from the guest closes the host side.
  guest.send(VIRTIO_VSOCK_OP_RST, 40000, 5000);
  CHECK(read_some(host.get()).empty());

  guest.send(VIRTIO_VSOCK_OP_REQUEST, 40001, 5001);  // no PATH_5001
  auto refused = guest.receive();
  REQUIRE(refused);
  CHECK(refused->h.op == VIRTIO_VSOCK_OP_RST);
  CHECK(refused->h.src_port == 5001);
  CHECK(refused->h.dst_port == 40001);
  CHECK(dev->counters().at("guest_connections") == 1);
  CHECK(dev->counters().at("connections_refused") == 1);
}

TEST_CASE("vsock: the host's bytes wait for the guest's credit") {
  TempDir dir;
  const std::string path = dir.path + "/v.sock";
  auto dev = make(path);
  Guest guest(*dev);
  UniqueFd listener = unix_listen(path + "_80");
  UniqueFd host = guest.connect_out(listener.get(), 999, 80, /*buf_alloc=*/100);
  const std::string big(1000, 'x');
  REQUIRE(::write(host.get(), big.data(), big.size()) == 1000);
  auto first = guest.receive();
  REQUIRE(first);
  CHECK(first->payload.size() == 100);  // all the guest has room for
  CHECK_FALSE(guest.receive(20));       // nothing more until the guest frees room
  guest.send(VIRTIO_VSOCK_OP_CREDIT_UPDATE, 999, 80, "", 0, 100, /*fwd_cnt=*/100);
  auto second = guest.receive();
  REQUIRE(second);
  CHECK(second->payload.size() == 100);
  // The guest asks for the device's credit and gets it.
  guest.send(VIRTIO_VSOCK_OP_CREDIT_REQUEST, 999, 80, "", 0, 100, 100);
  auto update = guest.receive();
  REQUIRE(update);
  CHECK(update->h.op == VIRTIO_VSOCK_OP_CREDIT_UPDATE);
  CHECK(update->h.buf_alloc == VirtioVsock::kBufAlloc);
}

TEST_CASE("vsock: what the host does not take yet is held within the credit, then forwarded") {
  TempDir dir;
  const std::string path = dir.path + "/v.sock";
  auto dev = make(path);
  Guest guest(*dev);
  UniqueFd listener = unix_listen(path + "_81");
  UniqueFd host = guest.connect_out(listener.get(), 1000, 81);

  // The guest sends as its credit allows while the host reads nothing, until the credit is spent.
  std::string sent;
  std::uint32_t fwd_cnt = 0;
  const std::uint32_t chunk = 32 * 1024;
  for (int round = 0; round < 200; ++round) {
    while (auto p = guest.receive(1)) {
      fwd_cnt = p->h.fwd_cnt;
    }
    const std::uint32_t in_flight = static_cast<std::uint32_t>(sent.size()) - fwd_cnt;
    if (VirtioVsock::kBufAlloc - in_flight < chunk) {
      break;
    }
    std::string piece(chunk, static_cast<char>('a' + round % 26));
    guest.send(VIRTIO_VSOCK_OP_RW, 1000, 81, piece);
    sent += piece;
  }
  CHECK(sent.size() > VirtioVsock::kBufAlloc);  // the socket took some, the device held more
  CHECK(dev->counters().at("connections_open") == 1);
  // Past its credit the guest is reset.
  // (Not sent here: the connection stays to show the held bytes arrive.)
  std::string got;
  for (int i = 0; i < 2000 && got.size() < sent.size(); ++i) {
    (void)dev->has_input(VirtioVsock::kRxQueue);  // the receive side's worker flushes
    got += read_some(host.get(), 1 << 20, 10);
  }
  CHECK(got.size() == sent.size());
  CHECK(got == sent);
  // The guest learns the device forwarded everything.
  std::uint32_t last = fwd_cnt;
  while (auto p = guest.receive(5)) {
    last = p->h.fwd_cnt;
  }
  CHECK(last == static_cast<std::uint32_t>(sent.size()));
}

TEST_CASE("vsock: a guest past its credit, or naming no connection, gets a reset; bad packets "
          "are counted") {
  TempDir dir;
  const std::string path = dir.path + "/v.sock";
  auto dev = make(path);
  Guest guest(*dev);

  guest.send(VIRTIO_VSOCK_OP_RW, 1, 2, "who?");
  auto rst = guest.receive();
  REQUIRE(rst);
  CHECK(rst->h.op == VIRTIO_VSOCK_OP_RST);
  CHECK(rst->h.src_port == 2);
  CHECK(rst->h.dst_port == 1);

  // Not its cid: no connection of ours to answer for; dropped and counted.
  guest.send(VIRTIO_VSOCK_OP_REQUEST, 3, 4, "", 0, 4096, 0, /*src_cid=*/99);
  CHECK_FALSE(guest.receive(5));
  virtio_vsock_hdr lying{};
  lying.src_cid = kCid;
  lying.dst_cid = VirtioVsock::kHostCid;
  lying.type = VIRTIO_VSOCK_TYPE_STREAM;
  lying.op = VIRTIO_VSOCK_OP_RW;
  lying.len = 1000;  // more than the chain holds
  guest.send_raw(lying, "short");
  CHECK(guest.receive()->h.op == VIRTIO_VSOCK_OP_RST);
  guest.send(99, 5, 6);  // no such operation
  CHECK(guest.receive()->h.op == VIRTIO_VSOCK_OP_RST);
  CHECK(dev->counters().at("malformed_packets") >= 2);

  // A connection whose host side never reads: a guest ignoring its credit is reset.
  UniqueFd listener = unix_listen(path + "_82");
  UniqueFd host = guest.connect_out(listener.get(), 10, 82);
  const std::string piece(VirtioVsock::kMaxPayload, 'z');
  bool reset = false;
  for (int i = 0; i < 200 && !reset; ++i) {
    guest.send(VIRTIO_VSOCK_OP_RW, 10, 82, piece, 0, 256 * 1024, 0);
    while (auto p = guest.receive(1)) {
      reset = reset || p->h.op == VIRTIO_VSOCK_OP_RST;
    }
  }
  CHECK(reset);
  CHECK(dev->counters().at("connections_open") == 0);

  // Chains too short for a header: counted, nothing else.
  const auto before = dev->counters().at("malformed_packets");
  auto mem = test::guest_ram();
  Chain tiny;
  tiny.readable = {{kTxAt, 10}};
  tiny.readable_size = 10;
  CHECK(dev->serve(VirtioVsock::kTxQueue, tiny, mem) == 0);
  CHECK(dev->counters().at("malformed_packets") == before + 1);
}

TEST_CASE("vsock: busy connections take turns; a buffer with room for a header only reads nothing") {
  TempDir dir;
  const std::string path = dir.path + "/v.sock";
  auto dev = make(path);
  Guest guest(*dev);
  UniqueFd listener = unix_listen(path + "_90");
  UniqueFd a = guest.connect_out(listener.get(), 1, 90);
  UniqueFd b = guest.connect_out(listener.get(), 2, 90);
  const std::string lots(64 * 1024, 'a');
  REQUIRE(::write(a.get(), lots.data(), lots.size()) == static_cast<ssize_t>(lots.size()));
  REQUIRE(::write(b.get(), "b", 1) == 1);
  // a has 16 packets' worth waiting; b's one byte still comes within its first few turns.
  bool b_seen = false;
  for (int i = 0; i < 4 && !b_seen; ++i) {
    auto p = guest.receive();
    REQUIRE(p);
    b_seen = p->h.dst_port == 2;
  }
  CHECK(b_seen);

  // A chain of exactly a header: nothing read (not taken for the end of the stream).
  auto mem = test::guest_ram();
  Chain header_only;
  header_only.writable = {{kRxAt, sizeof(virtio_vsock_hdr)}};
  header_only.writable_size = sizeof(virtio_vsock_hdr);
  REQUIRE(dev->has_input(VirtioVsock::kRxQueue));
  CHECK(dev->serve(VirtioVsock::kRxQueue, header_only, mem) == 0);
  std::size_t rest = 0;
  while (auto p = guest.receive(5)) {
    CHECK(p->h.op == VIRTIO_VSOCK_OP_RW);
    rest += p->payload.size();
  }
  CHECK(rest > 0);
}

TEST_CASE("vsock: a credit request that opens the window lets the host's bytes flow; a host "
          "program hanging up before the guest answers resets the request") {
  TempDir dir;
  const std::string path = dir.path + "/v.sock";
  auto dev = make(path);
  Guest guest(*dev);
  UniqueFd listener = unix_listen(path + "_91");
  UniqueFd host = guest.connect_out(listener.get(), 5, 91, /*buf_alloc=*/100);
  const std::string big(300, 'y');
  REQUIRE(::write(host.get(), big.data(), big.size()) == 300);
  REQUIRE(guest.receive()->payload.size() == 100);
  CHECK_FALSE(guest.receive(20));
  guest.send(VIRTIO_VSOCK_OP_CREDIT_REQUEST, 5, 91, "", 0, 100, /*fwd_cnt=*/100);
  bool data = false;
  for (int i = 0; i < 3; ++i) {
    auto p = guest.receive();
    data = data || (p && p->h.op == VIRTIO_VSOCK_OP_RW && p->payload.size() == 100);
  }
  CHECK(data);

  UniqueFd early = unix_connect(path);
  REQUIRE(::write(early.get(), "CONNECT 7\n", 10) == 10);
  auto request = guest.receive();
  REQUIRE(request);
  REQUIRE(request->h.op == VIRTIO_VSOCK_OP_REQUEST);
  early.reset();  // gone before the guest answers
  auto rst = guest.receive();
  REQUIRE(rst);
  CHECK(rst->h.op == VIRTIO_VSOCK_OP_RST);
  CHECK(rst->h.src_port == request->h.src_port);
  CHECK(dev->counters().at("connections_open") == 1);
}

TEST_CASE("vsock: a bad CONNECT line is answered and closed; a reset closes every connection") {
  TempDir dir;
  const std::string path = dir.path + "/v.sock";
  auto dev = make(path);
  Guest guest(*dev);
  UniqueFd bad = unix_connect(path);
  REQUIRE(::write(bad.get(), "HELLO 1\n", 8) == 8);
  for (int i = 0; i < 100; ++i) {
    (void)dev->has_input(VirtioVsock::kRxQueue);
    ::usleep(1000);
  }
  CHECK(read_some(bad.get()) == "ERROR expected CONNECT <port>\n");
  CHECK(read_some(bad.get()).empty());

  UniqueFd host = unix_connect(path);
  REQUIRE(::write(host.get(), "CONNECT 22\n", 11) == 11);
  REQUIRE(guest.receive());
  dev->reset();
  CHECK(read_some(host.get()).empty());  // closed
  CHECK(dev->counters().at("connections_open") == 0);
  CHECK_FALSE(dev->has_input(VirtioVsock::kRxQueue));
}

TEST_CASE("vsock: the socket path: refused when taken, a stale one replaced, removed at the end") {
  TempDir dir;
  const std::string file = dir.path + "/file";
  REQUIRE(::close(::open(file.c_str(), O_CREAT | O_WRONLY, 0600)) == 0);
  auto not_socket = VirtioVsock::create(kCid, file);
  REQUIRE_FALSE(not_socket.ok());
  CHECK(not_socket.error().message().find("exists and is not a socket") != std::string::npos);

  const std::string live = dir.path + "/live.sock";
  UniqueFd someone = unix_listen(live);
  auto taken = VirtioVsock::create(kCid, live);
  REQUIRE_FALSE(taken.ok());
  CHECK(taken.error().message().find("another process listens there") != std::string::npos);

  const std::string stale = dir.path + "/stale.sock";
  { UniqueFd gone = unix_listen(stale); }  // closed: the file stays, nobody listens
  struct stat st {};
  REQUIRE(::lstat(stale.c_str(), &st) == 0);
  {
    auto dev = make(stale);
    UniqueFd host = unix_connect(stale);  // it listens now
  }
  CHECK(::lstat(stale.c_str(), &st) != 0);  // removed with the device

  auto too_long = VirtioVsock::create(kCid, dir.path + "/" + std::string(100, 'x'));
  REQUIRE_FALSE(too_long.ok());
}

}  // namespace
}  // namespace keel::virtio
