#include "devices/virtio/tap.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>

namespace keel::virtio {
namespace {

Status set_vnet_header(int fd, const std::string& name) {
  int size = static_cast<int>(Tap::kVnetHeader);
  if (::ioctl(fd, TUNSETVNETHDRSZ, &size) != 0) {
    return Error::from_errno("TAP " + name + ": TUNSETVNETHDRSZ 12");
  }
  // No offloads towards the guest: the host stack hands over whole, checksummed frames.
  if (::ioctl(fd, TUNSETOFFLOAD, 0) != 0) {
    return Error::from_errno("TAP " + name + ": TUNSETOFFLOAD");
  }
  return ok_status();
}

}  // namespace

Result<Tap> Tap::open(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return Error::invalid("tap=" + name + ": an interface name is 1 to " +
                          std::to_string(IFNAMSIZ - 1) + " characters");
  }
  // Non-blocking: a frame another reader took between poll and read must not wedge a worker.
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK));
  if (!fd) {
    return Error::opening_user_path("open /dev/net/tun for TAP " + name +
                                    " (is the tun module loaded?)");
  }
  ifreq req{};
  std::snprintf(req.ifr_name, IFNAMSIZ, "%s", name.c_str());
  req.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(fd.get(), TUNSETIFF, &req) != 0) {
    const int err = errno;
    if (err == EPERM) {
      return Error::from_errno(err, "TAP " + name +
                                        ": creating or opening it needs CAP_NET_ADMIN (run keel "
                                        "as root, or create the TAP for keel's user first and "
                                        "pass it with fd=)")
          .as(ErrorKind::kInvalid);
    }
    if (err == EINVAL || err == EBUSY) {
      return Error::from_errno(err, "TAP " + name +
                                        ": an interface of that name exists and is not a TAP "
                                        "keel may open (or is in use); give another name")
          .as(ErrorKind::kInvalid);
    }
    return Error::from_errno(err, "TUNSETIFF " + name);
  }
  KEEL_TRY_STATUS(set_vnet_header(fd.get(), name));
  Tap tap(std::move(fd), req.ifr_name);
  KEEL_TRY_STATUS(tap.set_up());
  return tap;
}

Status Tap::set_offload(unsigned flags) const {
  if (::ioctl(fd_.get(), TUNSETOFFLOAD, static_cast<unsigned long>(flags)) != 0) {
    return Error::from_errno("TAP " + name_ + ": TUNSETOFFLOAD " + std::to_string(flags));
  }
  return ok_status();
}

Result<Tap> Tap::adopt(UniqueFd fd) {
  ifreq req{};
  if (::ioctl(fd.get(), TUNGETIFF, &req) != 0) {
    return Error::invalid("fd " + std::to_string(fd.get()) + " is not a TAP device (TUNGETIFF: " +
                          std::strerror(errno) + ")");
  }
  const std::string name(req.ifr_name);
  if ((req.ifr_flags & IFF_TAP) == 0 || (req.ifr_flags & IFF_NO_PI) == 0 ||
      (req.ifr_flags & IFF_VNET_HDR) == 0) {
    return Error::invalid("fd " + std::to_string(fd.get()) + " (" + name +
                          ") is not a TAP opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR");
  }
  const int fl = ::fcntl(fd.get(), F_GETFL);
  if (fl < 0 || ::fcntl(fd.get(), F_SETFL, fl | O_NONBLOCK) != 0) {
    return Error::from_errno("fcntl TAP fd");
  }
  KEEL_TRY_STATUS(set_vnet_header(fd.get(), name));
  return Tap(std::move(fd), name);
}

Status Tap::set_up() const {
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) {
    return Error::from_errno("socket for configuring TAP " + name_);
  }
  ifreq req{};
  std::snprintf(req.ifr_name, IFNAMSIZ, "%s", name_.c_str());
  if (::ioctl(sock.get(), SIOCGIFFLAGS, &req) != 0) {
    return Error::from_errno("SIOCGIFFLAGS " + name_);
  }
  req.ifr_flags = static_cast<short>(req.ifr_flags | IFF_UP | IFF_RUNNING);
  if (::ioctl(sock.get(), SIOCSIFFLAGS, &req) != 0) {
    return Error::from_errno("bringing TAP " + name_ + " up (SIOCSIFFLAGS)");
  }
  return ok_status();
}

Status Tap::set_host_address(const std::string& ip, const std::string& mask) const {
  in_addr addr{}, netmask{};
  if (::inet_pton(AF_INET, ip.c_str(), &addr) != 1) {
    return Error::invalid("ip=" + ip + " is not an IPv4 address, e.g. 192.168.249.1");
  }
  if (::inet_pton(AF_INET, mask.c_str(), &netmask) != 1) {
    return Error::invalid("mask=" + mask + " is not an IPv4 netmask, e.g. 255.255.255.0");
  }
  const std::uint32_t m = ntohl(netmask.s_addr);
  if ((m & (~m >> 1)) != 0 && m != 0xffffffffU) {  // ones then zeros
    return Error::invalid("mask=" + mask + " is not a netmask (ones, then zeros)");
  }
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) {
    return Error::from_errno("socket for configuring TAP " + name_);
  }
  auto set = [&](unsigned long request, in_addr value, const char* what) -> Status {
    ifreq req{};
    std::snprintf(req.ifr_name, IFNAMSIZ, "%s", name_.c_str());
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr = value;
    std::memcpy(&req.ifr_addr, &sin, sizeof sin);
    if (::ioctl(sock.get(), request, &req) != 0) {
      return Error::from_errno(std::string(what) + " on TAP " + name_);
    }
    return ok_status();
  };
  KEEL_TRY_STATUS(set(SIOCSIFADDR, addr, "setting ip"));
  KEEL_TRY_STATUS(set(SIOCSIFNETMASK, netmask, "setting mask"));
  return set_up();
}

std::optional<std::array<std::uint8_t, 6>> parse_mac(const std::string& text) {
  std::array<std::uint8_t, 6> mac{};
  unsigned v[6];
  char tail = 0;
  if (text.size() != 17 ||
      std::sscanf(text.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4],
                  &v[5], &tail) != 6) {
    return std::nullopt;
  }
  for (int i = 0; i < 6; ++i) {
    mac[i] = static_cast<std::uint8_t>(v[i]);
  }
  if ((mac[0] & 1) != 0) {
    return std::nullopt;  // multicast: never a station's address
  }
  return mac;
}

std::string format_mac(const std::array<std::uint8_t, 6>& mac) {
  char text[18];
  std::snprintf(text, sizeof text, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2],
                mac[3], mac[4], mac[5]);
  return text;
}

std::array<std::uint8_t, 6> random_mac() {
  std::array<std::uint8_t, 6> mac{};
  if (::getrandom(mac.data(), mac.size(), 0) != static_cast<ssize_t>(mac.size())) {
    mac = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  }
  mac[0] = static_cast<std::uint8_t>((mac[0] & 0xfe) | 0x02);  // unicast, locally administered
  return mac;
}

}  // namespace keel::virtio
