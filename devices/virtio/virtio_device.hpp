#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace keel::virtio {

// A virtio device as its transport (virtio_pci.hpp) sees it: identity, feature bits, config
// space, and requests handed over one at a time. The transport calls it under its own lock.
class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;
  virtual std::uint32_t device_type() const = 0;  // VIRTIO_ID_*
  // Device-type feature bits (0-23); the transport adds VIRTIO_F_VERSION_1.
  virtual std::uint64_t device_features() const = 0;
  virtual std::uint16_t num_queues() const = 0;
  virtual std::uint16_t queue_max_size(std::uint16_t queue) const = 0;
  virtual void read_config(std::uint64_t offset, std::span<std::uint8_t> data) const = 0;
  virtual void write_config(std::uint64_t offset, std::span<const std::uint8_t> data) = 0;
  // Whether the device takes requests from `queue` when the driver notifies it (a queue the
  // device only fills, such as an event queue, keeps its buffers).
  virtual bool consumes(std::uint16_t queue) const = 0;
  // One request: `in` its device-readable bytes, `out` (zeroed) its device-writable room.
  // Returns the bytes written from the start of `out`.
  virtual std::size_t handle(std::uint16_t queue, std::span<const std::uint8_t> in,
                             std::span<std::uint8_t> out) = 0;
  virtual void reset() = 0;
};

}  // namespace keel::virtio
