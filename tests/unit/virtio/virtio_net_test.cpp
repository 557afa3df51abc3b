// virtio-net over a real TAP, in a network namespace of the test's own (a forked child that
// unshares its network: nothing leaves it, nothing of the machine's is touched): frames the
// "guest" transmits reach a host UDP socket, datagrams the host sends reach the guest's receive
// buffers with their virtio-net header. Needs root and /dev/net/tun, as keel's --net tap= does.
#include "devices/virtio/virtio_net.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <vector>

#include "tests/unit/virtio/driver_ring.hpp"

namespace keel::virtio {
namespace {

using test::guest_ram;
constexpr std::uint64_t kFrame = 0x10000, kRx = 0x20000;
constexpr const char* kHost = "169.254.77.1";
constexpr const char* kGuest = "169.254.77.2";

std::uint16_t ip_checksum(const std::uint8_t* p, std::size_t n) {
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i + 1 < n; i += 2) {
    sum += static_cast<std::uint32_t>(p[i] << 8 | p[i + 1]);
  }
  while (sum >> 16) {
    sum = (sum & 0xffff) + (sum >> 16);
  }
  return static_cast<std::uint16_t>(~sum);
}

// A broadcast Ethernet frame carrying IPv4/UDP from kGuest:4000 to kHost:port (UDP checksum 0,
// which IPv4 allows), after a zeroed 12-byte virtio-net header.
std::vector<std::uint8_t> udp_frame(std::uint16_t port, const std::string& payload) {
  std::vector<std::uint8_t> f(Tap::kVnetHeader + 14 + 20 + 8 + payload.size(), 0);
  std::uint8_t* eth = f.data() + Tap::kVnetHeader;
  std::memset(eth, 0xff, 6);
  const std::uint8_t src[6] = {0x02, 0, 0, 0, 0, 0x02};
  std::memcpy(eth + 6, src, 6);
  eth[12] = 0x08;
  std::uint8_t* ip = eth + 14;
  const std::size_t ip_len = 20 + 8 + payload.size();
  ip[0] = 0x45;
  ip[2] = static_cast<std::uint8_t>(ip_len >> 8);
  ip[3] = static_cast<std::uint8_t>(ip_len);
  ip[8] = 64;
  ip[9] = 17;
  ::inet_pton(AF_INET, kGuest, ip + 12);
  ::inet_pton(AF_INET, kHost, ip + 16);
  const std::uint16_t csum = ip_checksum(ip, 20);
  ip[10] = static_cast<std::uint8_t>(csum >> 8);
  ip[11] = static_cast<std::uint8_t>(csum);
  std::uint8_t* udp = ip + 20;
  udp[0] = 4000 >> 8;
  udp[1] = 4000 & 0xff;
  udp[2] = static_cast<std::uint8_t>(port >> 8);
  udp[3] = static_cast<std::uint8_t>(port);
  udp[4] = static_cast<std::uint8_t>((8 + payload.size()) >> 8);
  udp[5] = static_cast<std::uint8_t>(8 + payload.size());
  std::memcpy(udp + 8, payload.data(), payload.size());
  return f;
}

// The checks, in the child; returns 0 or the number of the first that failed (and says which).
int run_in_namespace() {
  if (::unshare(CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "unshare(CLONE_NEWNET): %s (the test needs root)\n", std::strerror(errno));
    return 1;
  }
  // Only what the test sends: no IPv6 router solicitations on the new link.
  if (int fd = ::open("/proc/sys/net/ipv6/conf/default/disable_ipv6", O_WRONLY); fd >= 0) {
    (void)!::write(fd, "1", 1);
    ::close(fd);
  }
  auto tap = Tap::open("keeltest0");
  if (!tap.ok()) {
    std::fprintf(stderr, "%s\n", tap.error().message().c_str());
    return 2;
  }
  if (!tap->set_host_address(kHost, "255.255.255.0").ok()) {
    return 3;
  }
  auto net = VirtioNet::create(std::move(tap).value(), {random_mac(), 256});
  if (!net.ok()) {
    return 4;
  }
  VirtioNet& dev = **net;
  auto mem = memory::GuestMemory::create(test::kRam);
  if (!mem.ok()) {
    return 5;
  }
  // Anything the new link sent on its own is drained first.
  std::vector<std::uint8_t> scratch(2048);
  while (dev.has_input(VirtioNet::kRxQueue)) {
    if (::read(dev.tap().fd(), scratch.data(), scratch.size()) <= 0) {
      break;
    }
  }

  // Transmit: the guest's frame reaches a host socket.
  const int host = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in at{};
  at.sin_family = AF_INET;
  at.sin_port = htons(5555);
  ::inet_pton(AF_INET, kHost, &at.sin_addr);
  if (host < 0 || ::bind(host, reinterpret_cast<sockaddr*>(&at), sizeof at) != 0) {
    return 6;
  }
  const auto frame = udp_frame(5555, "hello from the guest");
  if (!mem->write(kFrame, frame).ok()) {
    return 7;
  }
  Chain tx;
  tx.readable = {{kFrame, 12}, {kFrame + 12, static_cast<std::uint32_t>(frame.size() - 12)}};
  tx.readable_size = static_cast<std::uint32_t>(frame.size());
  if (dev.serve(VirtioNet::kTxQueue, tx, *mem) != 0) {
    return 8;
  }
  pollfd p{host, POLLIN, 0};
  char got[64] = {};
  if (::poll(&p, 1, 2000) != 1 || ::recv(host, got, sizeof got, 0) != 20 ||
      std::string(got, 20) != "hello from the guest") {
    std::fprintf(stderr, "the host did not receive the guest's datagram\n");
    return 9;
  }
  // A chain with no frame after its header is dropped.
  Chain empty;
  empty.readable = {{kFrame, 12}};
  empty.readable_size = 12;
  (void)dev.serve(VirtioNet::kTxQueue, empty, *mem);

  // Receive: nothing waits yet; a broadcast from the host arrives in the guest's buffers.
  if (dev.has_input(VirtioNet::kRxQueue)) {
    std::fprintf(stderr, "unexpected input on the TAP\n");
    return 10;
  }
  int yes = 1;
  ::setsockopt(host, SOL_SOCKET, SO_BROADCAST, &yes, sizeof yes);
  sockaddr_in bcast = at;
  bcast.sin_port = htons(6666);
  ::inet_pton(AF_INET, "169.254.77.255", &bcast.sin_addr);
  const std::string hello = "hello from the host";
  if (::sendto(host, hello.data(), hello.size(), 0, reinterpret_cast<sockaddr*>(&bcast),
               sizeof bcast) != static_cast<ssize_t>(hello.size())) {
    return 11;
  }
  for (int i = 0; i < 200 && !dev.has_input(VirtioNet::kRxQueue); ++i) {
    ::usleep(10000);
  }
  if (!dev.has_input(VirtioNet::kRxQueue)) {
    return 12;
  }
  (void)mem->fill(kRx, 0xee, 4096);
  Chain rx;
  rx.writable = {{kRx, 12}, {kRx + 0x100, 2048}};
  rx.writable_size = 12 + 2048;
  const std::uint32_t used = dev.serve(VirtioNet::kRxQueue, rx, *mem);
  const std::uint32_t expect = 12 + 14 + 20 + 8 + static_cast<std::uint32_t>(hello.size());
  if (used != expect) {
    std::fprintf(stderr, "received %u bytes, expected %u\n", used, expect);
    return 13;
  }
  std::uint8_t header[12];
  std::vector<std::uint8_t> body(used - 12);
  if (!mem->read(kRx, header).ok() || !mem->read(kRx + 0x100, body).ok()) {
    return 14;
  }
  if (header[10] != 1 || header[11] != 0) {  // num_buffers = 1
    return 15;
  }
  if (body[12] != 0x08 || body[13] != 0x00 ||
      std::string(body.end() - static_cast<long>(hello.size()), body.end()) != hello) {
    return 16;
  }
  // A frame larger than the guest's buffers is dropped: the used length never exceeds them.
  const std::string big(1200, 'b');
  (void)::sendto(host, big.data(), big.size(), 0, reinterpret_cast<sockaddr*>(&bcast), sizeof bcast);
  for (int i = 0; i < 200 && !dev.has_input(VirtioNet::kRxQueue); ++i) {
    ::usleep(10000);
  }
  Chain small;
  small.writable = {{kRx, 12}, {kRx + 0x100, 100}};
  small.writable_size = 112;
  if (!dev.has_input(VirtioNet::kRxQueue)) {
    std::fprintf(stderr, "the large broadcast did not arrive\n");
    return 18;
  }
  if (const std::uint32_t n = dev.serve(VirtioNet::kRxQueue, small, *mem); n != 0) {
    std::fprintf(stderr, "a frame larger than the buffers was answered with %u bytes\n", n);
    return 19;
  }
  auto c = dev.counters();
  if (c["tx_frames"] != 1 || c["tx_bytes"] != frame.size() - 12 || c["tx_dropped"] != 1 ||
      c["rx_frames"] != 1 || c["rx_bytes"] != used - 12 || c["rx_dropped"] != 1) {
    return 17;
  }
  ::close(host);
  return 0;
}

TEST_CASE("virtio-net over a TAP: the guest's frames reach the host, the host's the guest") {
  REQUIRE(::access("/dev/net/tun", R_OK | W_OK) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::_exit(run_in_namespace());
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("virtio-net: identity, features and configuration; MAC addresses") {
  CHECK(parse_mac("52:54:00:12:34:56") == std::array<std::uint8_t, 6>{0x52, 0x54, 0, 0x12, 0x34, 0x56});
  CHECK_FALSE(parse_mac("01:00:5e:00:00:01"));  // multicast
  CHECK_FALSE(parse_mac("52:54:00:12:34"));
  CHECK_FALSE(parse_mac("52:54:00:12:34:5g"));
  CHECK_FALSE(parse_mac("52:54:00:12:34:56:"));
  CHECK(format_mac({0x52, 0x54, 0, 0x12, 0x34, 0x56}) == "52:54:00:12:34:56");
  for (int i = 0; i < 16; ++i) {
    const auto m = random_mac();
    CHECK((m[0] & 0x03) == 0x02);  // unicast, locally administered
  }
  CHECK_FALSE(Tap::open("").ok());
  CHECK_FALSE(Tap::open("a-name-far-too-long-for-linux").ok());
  auto not_tap = Tap::adopt(UniqueFd(::open("/dev/null", O_RDWR | O_CLOEXEC)));
  REQUIRE_FALSE(not_tap.ok());
  CHECK(not_tap.error().message().find("is not a TAP device") != std::string::npos);
}

}  // namespace
}  // namespace keel::virtio
