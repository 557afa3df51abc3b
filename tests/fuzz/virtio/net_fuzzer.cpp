// virtio-net's request paths as a hostile guest drives them, over a real TAP in a network
// namespace of the fuzzer's own (needs root and /dev/net/tun, as keel's --net does). Each input
// is a run of steps: a transmit chain (header and frame bytes, buffer layout, lengths from the
// fuzzer), or a frame injected on the TAP's link (an AF_PACKET socket on the host side) and
// received into guest buffers of fuzzed sizes and places.
// Properties:
//   - a transmit chain's used length is 0, and the TAP sees exactly the chain's bytes after
//     the header when the device counts it sent (else it counts it dropped);
//   - a received frame's used length is the header plus the whole frame when it fits the
//     guest's buffers, and 0 (counted dropped) when it does not -- never more than the buffers;
//   - guest memory outside the writable buffers is never touched.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "devices/virtio/virtio_net.hpp"
#include "tests/fuzz/api/fuzz_checks.hpp"
#include "tests/fuzz/fuzz_input.hpp"

namespace {

using keel::fuzz::Input;
using keel::virtio::Buffer;
using keel::virtio::Chain;
using keel::virtio::Tap;
using keel::virtio::VirtioNet;
constexpr std::uint64_t kRam = 16 << 20;
constexpr std::uint64_t kArena = 0x100000, kArenaSize = 0x40000;  // where buffers go
constexpr std::uint8_t kCanary = 0xa5;

struct World {
  std::unique_ptr<VirtioNet> net;
  int packet = -1;  // AF_PACKET on the TAP's interface: what the guest sent, and frames for it
  int ifindex = 0;
};

World& world() {
  static World w = [] {
    World made;
    KEEL_FUZZ_CHECK(::unshare(CLONE_NEWNET) == 0);  // nothing leaves the fuzzer
    // Only the fuzzer's frames on the link: no IPv6 router solicitations of the kernel's own.
    if (int fd = ::open("/proc/sys/net/ipv6/conf/default/disable_ipv6", O_WRONLY); fd >= 0) {
      (void)!::write(fd, "1", 1);
      ::close(fd);
    }
    auto tap = Tap::open("keelfuzz0");
    KEEL_FUZZ_CHECK(tap.ok());
    made.ifindex = static_cast<int>(::if_nametoindex("keelfuzz0"));
    KEEL_FUZZ_CHECK(made.ifindex > 0);
    // Up, so that frames pass both ways (no address: nothing of the kernel's own answers).
    const int ctl = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ifreq req{};
    std::strncpy(req.ifr_name, "keelfuzz0", IFNAMSIZ - 1);
    KEEL_FUZZ_CHECK(::ioctl(ctl, SIOCGIFFLAGS, &req) == 0);
    req.ifr_flags = static_cast<short>(req.ifr_flags | IFF_UP);
    KEEL_FUZZ_CHECK(::ioctl(ctl, SIOCSIFFLAGS, &req) == 0);
    ::close(ctl);
    made.packet = ::socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL));
    KEEL_FUZZ_CHECK(made.packet >= 0);
    sockaddr_ll at{};
    at.sll_family = AF_PACKET;
    at.sll_protocol = htons(ETH_P_ALL);
    at.sll_ifindex = made.ifindex;
    KEEL_FUZZ_CHECK(::bind(made.packet, reinterpret_cast<sockaddr*>(&at), sizeof at) == 0);
    auto net = VirtioNet::create(std::move(tap).value(), {keel::virtio::random_mac(), 256});
    KEEL_FUZZ_CHECK(net.ok());
    made.net = std::move(net).value();
    return made;
  }();
  return w;
}

void drain(World& w) {
  std::vector<std::uint8_t> sink(70000);
  while (::recv(w.packet, sink.data(), sink.size(), MSG_DONTWAIT) > 0) {
  }
  while (w.net->has_input(VirtioNet::kRxQueue)) {
    if (::read(w.net->tap().fd(), sink.data(), sink.size()) <= 0) {
      break;
    }
  }
}

// Up to 5 buffers inside the arena, lengths and places from the fuzzer.
std::vector<Buffer> buffers(Input& in, std::uint32_t& total) {
  std::vector<Buffer> out;
  total = 0;
  const int count = 1 + static_cast<int>(in.take(1) % 5);
  for (int i = 0; i < count; ++i) {
    const std::uint32_t len = 1 + static_cast<std::uint32_t>(in.take(2) % 0x5000);
    const std::uint64_t at = kArena + (in.take(1) % 32) * 0x2000;
    if (at + len > kArena + kArenaSize) {
      continue;
    }
    out.push_back({at, len});
    total += len;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in{data, size};
  World& w = world();
  static auto memory = keel::memory::GuestMemory::create(kRam);
  KEEL_FUZZ_CHECK(memory.ok());
  const keel::memory::GuestMemory& mem = *memory;
  drain(w);
  for (int step = 0; step < 8 && in.n > 0; ++step) {
    KEEL_FUZZ_CHECK(mem.fill(kArena, kCanary, kArenaSize).ok());
    const auto before = w.net->counters();
    Chain chain;
    if ((in.take(1) & 1) == 0) {
      // Transmit: the chain's bytes are a header and a frame of fuzzer bytes.
      chain.readable = buffers(in, chain.readable_size);
      std::vector<std::uint8_t> bytes(chain.readable_size);
      for (auto& b : bytes) {
        b = static_cast<std::uint8_t>(in.take(1));
      }
      std::uint64_t at = 0;
      for (const Buffer& b : chain.readable) {
        (void)mem.write(b.gpa, std::span(bytes.data() + at, b.len));
        at += b.len;
      }
      // Overlapping buffers: what the device reads is what memory holds, buffer by buffer.
      std::vector<std::uint8_t> seen(chain.readable_size);
      at = 0;
      for (const Buffer& b : chain.readable) {
        (void)mem.read(b.gpa, std::span(seen.data() + at, b.len));
        at += b.len;
      }
      KEEL_FUZZ_CHECK(w.net->serve(VirtioNet::kTxQueue, chain, mem) == 0);
      const auto after = w.net->counters();
      const bool sent = after.at("tx_frames") == before.at("tx_frames") + 1;
      KEEL_FUZZ_CHECK(sent || after.at("tx_dropped") == before.at("tx_dropped") + 1);
      if (sent) {
        KEEL_FUZZ_CHECK(chain.readable_size > Tap::kVnetHeader);
        KEEL_FUZZ_CHECK(after.at("tx_bytes") - before.at("tx_bytes") ==
                        chain.readable_size - Tap::kVnetHeader);
      }
    } else {
      // Receive: a frame of fuzzer bytes arrives on the link, into buffers of fuzzed layout.
      const std::uint32_t frame_len = 14 + static_cast<std::uint32_t>(in.take(2) % 1500);
      std::vector<std::uint8_t> frame(frame_len);
      for (auto& b : frame) {
        b = static_cast<std::uint8_t>(in.take(1));
      }
      frame[0] = 0x02;  // unicast, locally administered: the TAP takes it as it is
      sockaddr_ll to{};
      to.sll_family = AF_PACKET;
      to.sll_ifindex = w.ifindex;
      to.sll_halen = 6;
      std::memcpy(to.sll_addr, frame.data(), 6);
      if (::sendto(w.packet, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to),
                   sizeof to) != static_cast<ssize_t>(frame.size())) {
        continue;
      }
      pollfd p{w.net->tap().fd(), POLLIN, 0};
      if (::poll(&p, 1, 1000) != 1) {
        continue;
      }
      chain.writable = buffers(in, chain.writable_size);
      KEEL_FUZZ_CHECK(w.net->has_input(VirtioNet::kRxQueue));
      const std::uint32_t used = w.net->serve(VirtioNet::kRxQueue, chain, mem);
      const auto after = w.net->counters();
      KEEL_FUZZ_CHECK(used <= chain.writable_size);
      if (used == 0) {
        KEEL_FUZZ_CHECK(after.at("rx_dropped") == before.at("rx_dropped") + 1);
      } else {
        KEEL_FUZZ_CHECK(used == Tap::kVnetHeader + frame_len);
        KEEL_FUZZ_CHECK(after.at("rx_frames") == before.at("rx_frames") + 1);
      }
      // Outside the writable buffers the arena holds its canary.
      std::vector<std::uint8_t> arena(kArenaSize);
      KEEL_FUZZ_CHECK(mem.read(kArena, arena).ok());
      for (std::uint64_t i = 0; i < kArenaSize; ++i) {
        bool inside = false;
        for (const Buffer& b : chain.writable) {
          inside = inside || (kArena + i >= b.gpa && kArena + i < b.gpa + b.len);
        }
        if (!inside) {
          KEEL_FUZZ_CHECK(arena[i] == kCanary);
        }
      }
      drain(w);
    }
  }
  return 0;
}
