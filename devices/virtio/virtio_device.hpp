#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>

#include "devices/virtio/virtqueue.hpp"
#include "memory/guest_memory.hpp"

namespace keel::virtio {

// A virtio device as its transport (virtio_pci.hpp) sees it: identity, feature bits, config
// space, and requests handed over one at a time.
//
// Where requests are served depends on the device. One that answers at once and never blocks
// (entropy, the virtual IOMMU) is served on the notifying vCPU thread under the transport's
// lock. One that does I/O (a disk, a network link) says uses_workers(): each of its queues gets
// a thread of its own (queue_worker.hpp), and serve() runs there without the transport's lock --
// requests of one queue in order, of different queues at the same time.
// A queue another process serves (vhost-user), as the transport hands it over at DRIVER_OK:
// its size and guest-physical ring addresses, the eventfd the driver's notifications signal and
// the one the other process signals for an interrupt.
struct ExternalQueue {
  std::uint16_t index = 0;
  std::uint16_t size = 0;
  std::uint64_t desc = 0, avail = 0, used = 0;
  int kick = -1, call = -1;
};

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
  virtual bool uses_workers() const { return false; }
  // A queue fed from outside (a network link's receive queue): the fd its worker also waits on
  // (-1: none), and whether input is waiting there now. The transport takes a chain from such a
  // queue only when there is input for it, one at a time.
  virtual int queue_source(std::uint16_t /*queue*/) const { return -1; }
  virtual bool has_input(std::uint16_t /*queue*/) { return true; }
  // The most bytes one request may carry each way; a longer chain is refused by the transport.
  virtual std::uint32_t max_request_bytes() const { return Virtqueue::kMaxChainBytes; }
  // One request, its buffers checked to be inside guest RAM. Returns the bytes written from
  // the start of its writable buffers (the used length).
  virtual std::uint32_t serve(std::uint16_t queue, const Chain& chain,
                              const memory::GuestMemory& memory) = 0;
  // The features the driver accepted (FEATURES_OK), before any request; on the thread writing
  // the status, under the transport's lock.
  virtual void driver_features(std::uint64_t /*features*/) {}
  // Whether another process serves this device's queues (vhost-user). The transport then takes
  // no chains and offers only the ring features device_features() names; when the driver is
  // ready it hands the enabled queues over, and reset() must take them back: no ring memory is
  // touched after it returns.
  virtual bool external() const { return false; }
  virtual Status start_external(std::span<const ExternalQueue> /*queues*/,
                                const memory::GuestMemory& /*memory*/) {
    return ok_status();
  }
  // Back to the state after creation. The transport calls it with no serve() in progress.
  virtual void reset() = 0;
  // What the device counted (vm.counters), by cloud-hypervisor's names where it has them.
  virtual std::map<std::string, std::uint64_t> counters() const { return {}; }
};

// read_config for a device whose configuration space is the bytes of `config`: the part at
// `offset`, zeros past its end.
void read_config_bytes(std::span<const std::uint8_t> config, std::uint64_t offset,
                       std::span<std::uint8_t> data);
template <class Config>
void read_config_of(const Config& config, std::uint64_t offset, std::span<std::uint8_t> data) {
  read_config_bytes(std::span(reinterpret_cast<const std::uint8_t*>(&config), sizeof config),
                    offset, data);
}

// For devices that answer from a copy: `handle` gets the request's readable bytes and zeroed room
// for its writable ones, and returns how many it wrote; they are copied back to the guest.
std::uint32_t serve_from_copy(
    const Chain& chain, const memory::GuestMemory& memory,
    const std::function<std::size_t(std::span<const std::uint8_t>, std::span<std::uint8_t>)>&
        handle);

}  // namespace keel::virtio
