#include "devices/virtio/virtio_device.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

namespace keel::virtio {

void read_config_bytes(std::span<const std::uint8_t> config, std::uint64_t offset,
                       std::span<std::uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  if (offset < config.size()) {
    const std::size_t n = std::min<std::size_t>(data.size(), config.size() - offset);
    std::memcpy(data.data(), config.data() + offset, n);
  }
}

std::uint32_t serve_from_copy(
    const Chain& chain, const memory::GuestMemory& memory,
    const std::function<std::size_t(std::span<const std::uint8_t>, std::span<std::uint8_t>)>&
        handle) {
  std::vector<std::uint8_t> in(chain.readable_size);
  auto copied = Virtqueue::read(memory, chain.readable, 0, in);
  if (!copied.ok() || *copied != in.size()) {
    return 0;
  }
  std::vector<std::uint8_t> out(chain.writable_size, 0);
  const std::size_t length = std::min(handle(in, out), out.size());
  if (!Virtqueue::write(memory, chain.writable, 0, std::span(out).first(length)).ok()) {
    return 0;
  }
  return static_cast<std::uint32_t>(length);
}

}  // namespace keel::virtio
