// virtio-vsock's packet handling as a hostile guest and busy host programs drive it: each input
// is a run of steps -- a guest packet (header fields, ports from a small set so they meet real
// connections, payload length and buffer layout from the fuzzer), a host program connecting
// with a (possibly broken) CONNECT line, a host side writing or closing, the guest taking a
// packet into a buffer of fuzzed size, a device reset.
// Properties:
//   - a packet the guest takes fits its buffer, names the host as source and the guest as
//     destination, and its used length is its header plus its payload;
//   - the host-to-guest data on a connection never exceeds the window the guest gave it;
//   - open connections never exceed the device's bound, and when the device goes every fd it
//     opened is closed (the process's fd count is back where it was).
#include <dirent.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "devices/virtio/virtio_vsock.hpp"
#include "tests/fuzz/api/fuzz_checks.hpp"
#include "tests/fuzz/fuzz_input.hpp"

namespace {

using keel::fuzz::Input;
using keel::virtio::Chain;
using keel::virtio::VirtioVsock;
constexpr std::uint64_t kRam = 16 << 20;
constexpr std::uint64_t kCid = 3;

const std::string& dir() {
  static const std::string d = [] {
    char t[] = "/tmp/keel-vsock-fuzz-XXXXXX";
    KEEL_FUZZ_CHECK(::mkdtemp(t) != nullptr);
    return std::string(t);
  }();
  return d;
}

int open_fds() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  while (d != nullptr && ::readdir(d) != nullptr) {
    ++n;
  }
  if (d != nullptr) {
    ::closedir(d);
  }
  return n;
}

int unix_socket(const std::string& path, bool listening) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  const int rc = listening ? (::unlink(path.c_str()), ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0
                                                          ? ::listen(fd, 64)
                                                          : -1)
                           : ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  if (rc != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in{data, size};
  static auto memory = keel::memory::GuestMemory::create(kRam);
  KEEL_FUZZ_CHECK(memory.ok());
  const keel::memory::GuestMemory& mem = *memory;
  const std::string path = dir() + "/v.sock";
  const int fds_before = open_fds();
  {
    auto created = VirtioVsock::create(kCid, path);
    KEEL_FUZZ_CHECK(created.ok());
    VirtioVsock& dev = **created;
    // Host listeners on PATH_1 and PATH_2 (PATH_3 has none); host programs' connections.
    const int listeners[2] = {unix_socket(path + "_1", true), unix_socket(path + "_2", true)};
    std::vector<int> hosts;
    // The window each connection's guest side gave, by (host port, guest port): bytes allowed.
    std::map<std::pair<std::uint32_t, std::uint32_t>, std::uint64_t> window, delivered;
    std::vector<std::uint32_t> host_ports = {1, 2, 3};  // learned from REQUESTs too

    for (int step = 0; step < 64 && in.n > 0; ++step) {
      switch (in.take(1) % 6) {
        case 0:
        case 1: {  // a guest packet
          virtio_vsock_hdr h{};
          const std::uint64_t which = in.take(1);
          h.src_cid = (which & 0x80) != 0 ? in.take(8) : kCid;
          h.dst_cid = (which & 0x40) != 0 ? in.take(8) : VirtioVsock::kHostCid;
          h.src_port = static_cast<std::uint32_t>(in.take(1) % 4);
          h.dst_port = host_ports[in.take(1) % host_ports.size()];
          h.type = (which & 0x20) != 0 ? static_cast<std::uint16_t>(in.take(2)) : 1;
          h.op = static_cast<std::uint16_t>(in.take(1) % 9);
          h.flags = static_cast<std::uint32_t>(in.take(1) % 4);
          h.buf_alloc = static_cast<std::uint32_t>((which & 0x10) != 0 ? in.take(4) : in.take(2));
          h.fwd_cnt = static_cast<std::uint32_t>((which & 0x08) != 0 ? in.take(4) : 0);
          const std::uint32_t payload = static_cast<std::uint32_t>(in.take(2) % 5000);
          h.len = (which & 0x04) != 0 ? static_cast<std::uint32_t>(in.take(4)) : payload;
          (void)mem.write(0x1000, std::span(reinterpret_cast<const std::uint8_t*>(&h), sizeof h));
          Chain c;
          const std::uint32_t head = (which & 0x02) != 0 ? static_cast<std::uint32_t>(in.take(1) % 44) : 44;
          c.readable = {{0x1000, head}};
          c.readable_size = head;
          if (payload != 0) {
            c.readable.push_back({0x10000, payload});
            c.readable_size += payload;
          }
          // The model follows the header the device reads: the chain's first 44 bytes, wherever
          // its buffers put them; only a well-formed packet moves a connection.
          virtio_vsock_hdr seen{};
          auto whole = keel::virtio::Virtqueue::read(
              mem, c.readable, 0, std::span(reinterpret_cast<std::uint8_t*>(&seen), sizeof seen));
          const bool well_formed = whole.ok() && *whole == sizeof seen && seen.src_cid == kCid &&
                                   seen.dst_cid == VirtioVsock::kHostCid && seen.type == 1 &&
                                   seen.len <= c.readable_size - sizeof seen &&
                                   seen.len <= VirtioVsock::kMaxPayload;
          const auto key = std::pair{std::uint32_t{seen.dst_port}, std::uint32_t{seen.src_port}};
          if (well_formed) {
            if (seen.op == VIRTIO_VSOCK_OP_REQUEST) {
              delivered.erase(key);  // a new connection: its count starts again
              window.erase(key);
            }
            // The device may send up to fwd_cnt + buf_alloc bytes in total on a connection.
            window[key] =
                std::max<std::uint64_t>(window[key], std::uint64_t{seen.fwd_cnt} + seen.buf_alloc);
          }
          KEEL_FUZZ_CHECK(dev.serve(VirtioVsock::kTxQueue, c, mem) == 0);
          for (int l : listeners) {
            for (int fd; l >= 0 && (fd = ::accept4(l, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;) {
              hosts.push_back(fd);
            }
          }
          break;
        }
        case 2: {  // a host program through the hybrid socket
          const int fd = unix_socket(path, false);
          if (fd >= 0) {
            const std::uint64_t kind = in.take(1) % 4;
            std::string line = kind == 0   ? "CONNECT " + std::to_string(in.take(1) % 4) + "\n"
                               : kind == 1 ? "CONNECT " + std::to_string(in.take(4)) + "\r\n"
                               : kind == 2 ? std::string(static_cast<std::size_t>(in.take(1)), 'C')
                                           : "CONNECT x\n";
            (void)::send(fd, line.data(), line.size(), MSG_NOSIGNAL);
            hosts.push_back(fd);
          }
          break;
        }
        case 3: {  // a host side writes, or closes
          if (hosts.empty()) {
            break;
          }
          const std::size_t i = in.take(1) % hosts.size();
          if ((in.take(1) & 3) == 0) {
            ::close(hosts[i]);
            hosts.erase(hosts.begin() + static_cast<std::ptrdiff_t>(i));
          } else {
            std::string bytes(static_cast<std::size_t>(in.take(2) % 9000), 'h');
            (void)::send(hosts[i], bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            char sink[4096];
            while (::recv(hosts[i], sink, sizeof sink, MSG_DONTWAIT) > 0) {
            }
          }
          break;
        }
        case 4: {  // the guest takes what waits, into buffers of fuzzed sizes
          for (int k = 0; k < 8 && dev.has_input(VirtioVsock::kRxQueue); ++k) {
            Chain c;
            const std::uint32_t a = static_cast<std::uint32_t>(in.take(2) % 6000);
            const std::uint32_t b = static_cast<std::uint32_t>(in.take(1) % 100);
            c.writable = {{0x40000, a}};
            c.writable_size = a;
            if (b != 0) {
              c.writable.push_back({0x80000, b});
              c.writable_size += b;
            }
            const std::uint32_t used = dev.serve(VirtioVsock::kRxQueue, c, mem);
            KEEL_FUZZ_CHECK(used <= c.writable_size);
            if (used == 0) {
              continue;
            }
            virtio_vsock_hdr h{};
            auto got = keel::virtio::Virtqueue::read(
                mem, c.writable, 0, std::span(reinterpret_cast<std::uint8_t*>(&h), sizeof h));
            KEEL_FUZZ_CHECK(got.ok() && *got == sizeof h);
            KEEL_FUZZ_CHECK(used == sizeof h + h.len);
            KEEL_FUZZ_CHECK(h.src_cid == VirtioVsock::kHostCid && h.dst_cid == kCid);
            KEEL_FUZZ_CHECK(h.type == VIRTIO_VSOCK_TYPE_STREAM);
            const auto key = std::pair{std::uint32_t{h.src_port}, std::uint32_t{h.dst_port}};
            if (h.op == VIRTIO_VSOCK_OP_REQUEST) {
              host_ports.push_back(h.src_port);
              window.erase(key);
              delivered.erase(key);
            } else if (h.op == VIRTIO_VSOCK_OP_RW) {
              delivered[key] += h.len;
              KEEL_FUZZ_CHECK(delivered[key] <= window[key]);
            }
          }
          break;
        }
        default:
          if ((in.take(1) & 7) == 0) {
            dev.reset();
            window.clear();
            delivered.clear();
          }
          break;
      }
      KEEL_FUZZ_CHECK(dev.counters().at("connections_open") <= VirtioVsock::kMaxConnections);
    }
    for (int fd : hosts) {
      ::close(fd);
    }
    for (int l : listeners) {
      if (l >= 0) {
        ::close(l);
      }
    }
  }
  KEEL_FUZZ_CHECK(open_fds() == fds_before);
  return 0;
}
