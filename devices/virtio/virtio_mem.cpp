#include "devices/virtio/virtio_mem.hpp"

#include <linux/virtio_ids.h>
#include <linux/virtio_mem.h>

#include <algorithm>
#include <cstring>

#include "base/hex.hpp"
#include "base/log.hpp"
#include "base/size.hpp"

namespace keel::virtio {
namespace {

// The layouts of <linux/virtio_mem.h>, little-endian like every x86 guest.
#pragma pack(push, 1)
struct Config {
  std::uint64_t block_size;
  std::uint16_t node_id;
  std::uint8_t padding[6];
  std::uint64_t addr;
  std::uint64_t region_size;
  std::uint64_t usable_region_size;
  std::uint64_t plugged_size;
  std::uint64_t requested_size;
};
struct Request {
  std::uint16_t type;
  std::uint16_t padding[3];
  std::uint64_t addr;
  std::uint16_t nb_blocks;
  std::uint16_t padding2[3];
};
struct Response {
  std::uint16_t type;
  std::uint16_t padding[3];
  std::uint16_t state;
};
#pragma pack(pop)
static_assert(sizeof(Config) == sizeof(virtio_mem_config));
static_assert(sizeof(Request) == sizeof(virtio_mem_req));
static_assert(sizeof(Response) == 10);

}  // namespace

Result<std::unique_ptr<VirtioMem>> VirtioMem::create(const memory::GuestMemory& memory,
                                                     ChangeHandler on_change) {
  const memory::RamRegion* region = memory.hotplug_region();
  if (region == nullptr) {
    return std::unique_ptr<VirtioMem>();
  }
  if (region->gpa() % kBlockSize != 0 || region->size() % kBlockSize != 0) {
    return Error::invalid("the hot-pluggable region " + hex(region->gpa()) + "+" +
                          hex(region->size()) + " is not made of 2 MiB blocks");
  }
  return std::unique_ptr<VirtioMem>(
      new VirtioMem(memory, region->gpa(), region->size(), std::move(on_change)));
}

Status VirtioMem::request(std::uint64_t size) {
  if (size % kBlockSize != 0 || size > region_size_) {
    return Error::invalid("virtio-mem: " + format_size(size) +
                          " is not a multiple of 2 MiB up to the region's " +
                          format_size(region_size_));
  }
  std::lock_guard lock(mutex_);
  requested_size_ = size;
  return ok_status();
}

std::uint64_t VirtioMem::requested_size() const {
  std::lock_guard lock(mutex_);
  return requested_size_;
}

std::uint64_t VirtioMem::plugged_size() const {
  std::lock_guard lock(mutex_);
  return plugged_size_;
}

std::uint32_t VirtioMem::device_type() const { return VIRTIO_ID_MEM; }

std::uint64_t VirtioMem::device_features() const {
  // Unplugged blocks are not to be read: the guest never relies on them, Keel never backs them.
  return 1ULL << VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE;
}

void VirtioMem::read_config(std::uint64_t offset, std::span<std::uint8_t> data) const {
  Config c{};
  c.block_size = kBlockSize;
  c.addr = addr_;
  c.region_size = region_size_;
  c.usable_region_size = region_size_;
  {
    std::lock_guard lock(mutex_);
    c.plugged_size = plugged_size_;
    c.requested_size = requested_size_;
  }
  read_config_of(c, offset, data);
}

std::uint32_t VirtioMem::serve(std::uint16_t, const Chain& chain,
                               const memory::GuestMemory& memory) {
  return serve_from_copy(chain, memory,
                         [this](std::span<const std::uint8_t> in, std::span<std::uint8_t> out) {
                           return handle(in, out);
                         });
}

std::size_t VirtioMem::handle(std::span<const std::uint8_t> in, std::span<std::uint8_t> out) {
  if (out.size() < sizeof(Response)) {
    std::lock_guard lock(mutex_);
    ++errors_;
    return 0;  // nowhere to answer
  }
  Response response{};
  response.type = VIRTIO_MEM_RESP_ERROR;
  if (in.size() >= sizeof(Request)) {
    Request r{};
    std::memcpy(&r, in.data(), sizeof r);
    std::lock_guard lock(mutex_);
    switch (r.type) {
      case VIRTIO_MEM_REQ_PLUG:
        ++plug_requests_;
        response.type = plug(r.addr, r.nb_blocks);
        break;
      case VIRTIO_MEM_REQ_UNPLUG:
        ++unplug_requests_;
        response.type = unplug(r.addr, r.nb_blocks);
        break;
      case VIRTIO_MEM_REQ_UNPLUG_ALL:
        ++unplug_all_requests_;
        response.type = unplug_all();
        break;
      case VIRTIO_MEM_REQ_STATE: {
        ++state_requests_;
        std::uint64_t first = 0;
        if (valid_range(r.addr, r.nb_blocks, &first)) {
          const std::uint64_t n = count_plugged(first, r.nb_blocks);
          response.type = VIRTIO_MEM_RESP_ACK;
          response.state = n == r.nb_blocks ? VIRTIO_MEM_STATE_PLUGGED
                           : n == 0         ? VIRTIO_MEM_STATE_UNPLUGGED
                                            : VIRTIO_MEM_STATE_MIXED;
        }
        break;
      }
      default:
        break;
    }
    nacks_ += response.type == VIRTIO_MEM_RESP_NACK ? 1 : 0;
    busy_ += response.type == VIRTIO_MEM_RESP_BUSY ? 1 : 0;
    errors_ += response.type == VIRTIO_MEM_RESP_ERROR ? 1 : 0;
  } else {
    std::lock_guard lock(mutex_);
    ++errors_;
  }
  std::memcpy(out.data(), &response, sizeof response);
  return sizeof response;
}

bool VirtioMem::valid_range(std::uint64_t addr, std::uint64_t blocks, std::uint64_t* first) const {
  if (blocks == 0 || addr < addr_ || (addr - addr_) % kBlockSize != 0) {
    return false;
  }
  *first = (addr - addr_) / kBlockSize;
  return *first <= plugged_.size() && blocks <= plugged_.size() - *first;
}

std::uint64_t VirtioMem::count_plugged(std::uint64_t first, std::uint64_t blocks) const {
  return static_cast<std::uint64_t>(std::count(plugged_.begin() + static_cast<std::ptrdiff_t>(first),
                                               plugged_.begin() + static_cast<std::ptrdiff_t>(first + blocks),
                                               true));
}

std::uint16_t VirtioMem::refused(const char* what, std::uint64_t addr, std::uint64_t size,
                                 const Error& why) {
  if (++refusals_ <= kLoggedRefusals) {  // a retrying guest does not flood the log
    log::warn("virtio-mem", what,
              {{"addr", hex(addr)}, {"size", format_size(size)}, {"why", why.message()}});
  }
  // BUSY: the guest keeps what it had and retries after a backoff (NACK is for plugs beyond the
  // requested size; Linux retries a NACKed plug at once, forever).
  return VIRTIO_MEM_RESP_BUSY;
}

std::uint16_t VirtioMem::plug(std::uint64_t addr, std::uint64_t blocks) {
  std::uint64_t first = 0;
  if (!valid_range(addr, blocks, &first) || count_plugged(first, blocks) != 0) {
    return VIRTIO_MEM_RESP_ERROR;
  }
  const std::uint64_t size = blocks * kBlockSize;
  if (plugged_size_ + size > requested_size_) {
    return VIRTIO_MEM_RESP_NACK;  // more than the VMM asks for
  }
  Status changed = on_change_ ? on_change_(addr, size, true) : ok_status();
  if (!changed.ok()) {
    return refused("plug refused", addr, size, changed.error());
  }
  std::fill_n(plugged_.begin() + static_cast<std::ptrdiff_t>(first), blocks, true);
  plugged_size_ += size;
  return VIRTIO_MEM_RESP_ACK;
}

std::uint16_t VirtioMem::unplug(std::uint64_t addr, std::uint64_t blocks) {
  std::uint64_t first = 0;
  if (!valid_range(addr, blocks, &first) || count_plugged(first, blocks) != blocks) {
    return VIRTIO_MEM_RESP_ERROR;
  }
  const std::uint64_t size = blocks * kBlockSize;
  Status changed = on_change_ ? on_change_(addr, size, false) : ok_status();
  if (!changed.ok()) {
    return refused("unplug refused", addr, size, changed.error());
  }
  std::fill_n(plugged_.begin() + static_cast<std::ptrdiff_t>(first), blocks, false);
  plugged_size_ -= size;
  (void)memory_.discard(addr, size);
  return VIRTIO_MEM_RESP_ACK;
}

std::uint16_t VirtioMem::unplug_all() {
  if (plugged_size_ == 0) {
    return VIRTIO_MEM_RESP_ACK;  // nothing to give back
  }
  Status changed = on_change_ ? on_change_(addr_, region_size_, false) : ok_status();
  if (!changed.ok()) {
    return refused("unplug of everything refused", addr_, region_size_, changed.error());
  }
  std::fill(plugged_.begin(), plugged_.end(), false);
  plugged_size_ = 0;
  (void)memory_.discard(addr_, region_size_);
  return VIRTIO_MEM_RESP_ACK;
}

std::map<std::string, std::uint64_t> VirtioMem::counters() const {
  std::lock_guard lock(mutex_);
  return {{"plug_requests", plug_requests_},   {"unplug_requests", unplug_requests_},
          {"unplug_all_requests", unplug_all_requests_}, {"state_requests", state_requests_},
          {"nacks", nacks_},                   {"busy", busy_},
          {"errors", errors_},
          {"plugged_bytes", plugged_size_},    {"requested_bytes", requested_size_}};
}

}  // namespace keel::virtio
