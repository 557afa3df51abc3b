#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace keel::virtio {

// A TAP network interface as virtio-net uses it: frames read and written whole, each after a
// 12-byte virtio-net header (IFF_VNET_HDR, TUNSETVNETHDRSZ 12: virtio 1.x's header with
// num_buffers), so guest and host exchange checksum and segmentation offload state unchanged.
class Tap {
 public:
  static constexpr std::size_t kVnetHeader = 12;

  // Opens the TAP `name`, creating it when it does not exist (that needs CAP_NET_ADMIN), and
  // brings it up.
  static Result<Tap> open(const std::string& name);
  // Takes over a TAP fd handed to keel (--net fd=N, or SCM_RIGHTS on the API socket): it must
  // be a TAP opened with IFF_VNET_HDR and without packet information.
  static Result<Tap> adopt(UniqueFd fd);

  // Gives the host side of the link an IPv4 address and netmask (cloud-hypervisor's ip=,
  // mask=) and brings it up.
  Status set_host_address(const std::string& ip, const std::string& mask) const;

  // What the reader (the guest) accepts unsegmented or without checksums: TUN_F_* bits.
  Status set_offload(unsigned flags) const;
  int fd() const { return fd_.get(); }
  const std::string& name() const { return name_; }

 private:
  Tap(UniqueFd fd, std::string name) : fd_(std::move(fd)), name_(std::move(name)) {}
  Status set_up() const;

  UniqueFd fd_;
  std::string name_;
};

// "52:54:00:12:34:56" to bytes; nullopt when it is not six hex pairs, or is a multicast address.
std::optional<std::array<std::uint8_t, 6>> parse_mac(const std::string& text);
std::string format_mac(const std::array<std::uint8_t, 6>& mac);
// A random locally administered unicast address, as cloud-hypervisor gives a guest by default.
std::array<std::uint8_t, 6> random_mac();

}  // namespace keel::virtio
