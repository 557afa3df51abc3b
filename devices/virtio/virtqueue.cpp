#include "devices/virtio/virtqueue.hpp"

#include <atomic>

#include "base/hex.hpp"

namespace keel::virtio {
namespace {

// The split ring's layout (virtio 1.2 §2.7). <linux/virtio_ring.h> has them too, but its inline
// helpers are C, not C++.
struct Desc {
  std::uint64_t addr;
  std::uint32_t len;
  std::uint16_t flags;
  std::uint16_t next;
};
struct UsedElem {
  std::uint32_t id;
  std::uint32_t len;
};
constexpr std::uint16_t kDescNext = 1, kDescWrite = 2, kDescIndirect = 4;
constexpr std::uint32_t kMaxIndirect = 1024;  // descriptors in one indirect table
constexpr std::uint16_t kAvailNoInterrupt = 1;
constexpr std::uint64_t kDescSize = sizeof(Desc);
constexpr std::uint64_t kUsedElemSize = sizeof(UsedElem);
static_assert(kDescSize == 16 && kUsedElemSize == 8);

bool power_of_two(std::uint32_t v) { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace

Status Virtqueue::enable() {
  if (!power_of_two(size_) || size_ > max_size_) {
    return Error::invalid("queue size " + std::to_string(size_) + " is not a power of two up to " +
                          std::to_string(max_size_));
  }
  struct Ring {
    const char* name;
    std::uint64_t address, bytes, align;
  };
  const Ring rings[] = {
      {"descriptor table", desc, kDescSize * size_, 16},
      {"available ring", avail, 6 + 2ULL * size_, 2},
      {"used ring", used, 6 + kUsedElemSize * size_, 4},
  };
  for (const Ring& r : rings) {
    if (r.address % r.align != 0) {
      return Error::invalid(std::string(r.name) + " at " + hex(r.address) + " is not " +
                            std::to_string(r.align) + "-byte aligned");
    }
    if (!memory_->contains(r.address, r.bytes)) {
      return Error::invalid(std::string(r.name) + " " + hex(r.address) + "+" + hex(r.bytes) +
                            " is not inside guest RAM");
    }
  }
  enabled_ = true;
  last_avail_ = 0;
  next_used_ = 0;
  signalled_valid_ = false;
  return ok_status();
}

void Virtqueue::reset() {
  enabled_ = false;
  size_ = max_size_;
  desc = avail = used = 0;
  last_avail_ = next_used_ = 0;
  event_idx_ = signalled_valid_ = false;
}

Popped Virtqueue::bad(std::uint16_t head, std::string why) const {
  Popped p;
  p.kind = Popped::Kind::kBad;
  p.chain.head = head;
  p.error = std::move(why);
  return p;
}

Popped Virtqueue::pop() {
  Popped none;
  if (!enabled_) {
    return none;
  }
  // The rings were inside RAM at enable(); reads still go through the bounds checks.
  auto avail_idx = memory_->read_obj<std::uint16_t>(avail + 2);
  if (!avail_idx.ok()) {
    return none;
  }
  if (event_idx_ && *avail_idx == last_avail_) {
    // Empty: ask to be notified of the next entry, then look again -- the driver may have added
    // one before it could see the request (a full barrier between, as on the driver's side).
    (void)memory_->write_obj<std::uint16_t>(used + 4 + kUsedElemSize * size_, last_avail_);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    avail_idx = memory_->read_obj<std::uint16_t>(avail + 2);
    if (!avail_idx.ok()) {
      return none;
    }
  }
  std::atomic_thread_fence(std::memory_order_acquire);  // read the ring after its index
  const auto pending = static_cast<std::uint16_t>(*avail_idx - last_avail_);
  if (pending == 0) {
    return none;
  }
  if (pending > size_) {
    Popped broken;
    broken.kind = Popped::Kind::kBroken;
    broken.error = "available index " + std::to_string(*avail_idx) + " is " +
                   std::to_string(pending) + " entries ahead of the device's " +
                   std::to_string(last_avail_) + " on a ring of " + std::to_string(size_);
    return broken;
  }
  auto head = memory_->read_obj<std::uint16_t>(avail + 4 + 2ULL * (last_avail_ % size_));
  ++last_avail_;
  if (!head.ok()) {
    return bad(0, "available ring entry unreadable");
  }
  if (*head >= size_) {
    // Not a descriptor of this ring: nothing can be returned for it but an index the driver
    // gave, so it goes back as given.
    return bad(*head, "head descriptor " + std::to_string(*head) + " is outside the ring of " +
                          std::to_string(size_));
  }

  Popped out;
  out.kind = Popped::Kind::kChain;
  out.chain.head = *head;
  std::uint16_t index = *head;
  bool writing = false;
  // The table being walked: the ring's, or an indirect one (virtio 1.2 §2.7.5.3), which ends
  // the chain of the ring and has its own indexes.
  std::uint64_t table = desc;
  std::uint32_t table_size = size_;
  bool indirect = false;
  for (std::uint32_t count = 0;; ++count) {
    if (count >= table_size + (indirect ? size_ : 0U)) {
      return bad(*head, "descriptor chain longer than its table (a loop)");
    }
    if (index >= table_size) {
      return bad(*head, "descriptor index " + std::to_string(index) + " is outside the " +
                            (indirect ? "indirect table of " : "ring of ") +
                            std::to_string(table_size));
    }
    auto d = memory_->read_obj<Desc>(table + kDescSize * index);
    if (!d.ok()) {
      return bad(*head, "descriptor unreadable");
    }
    if ((d->flags & kDescIndirect) != 0) {
      if (indirect) {
        return bad(*head, "an indirect table names another indirect table");
      }
      if (d->len == 0 || d->len % kDescSize != 0 || d->len / kDescSize > kMaxIndirect) {
        return bad(*head, "indirect table of " + std::to_string(d->len) + " bytes (a multiple of " +
                              std::to_string(kDescSize) + ", at most " +
                              std::to_string(kMaxIndirect) + " descriptors)");
      }
      if (!memory_->contains(d->addr, d->len)) {
        return bad(*head, "indirect table " + hex(d->addr) + "+" + hex(d->len) +
                              " is not inside guest RAM");
      }
      table = d->addr;
      table_size = d->len / kDescSize;
      indirect = true;
      index = 0;
      continue;
    }
    const bool writable = (d->flags & kDescWrite) != 0;
    if (!writable && writing) {
      return bad(*head, "device-readable descriptor after a device-writable one");
    }
    writing = writable;
    if (d->len != 0 && !memory_->contains(d->addr, d->len)) {
      return bad(*head, "buffer " + hex(d->addr) + "+" + hex(d->len) + " is not inside guest RAM");
    }
    std::uint32_t& total = writable ? out.chain.writable_size : out.chain.readable_size;
    if (d->len > max_chain_bytes_ - total) {
      return bad(*head, "chain carries more than " + std::to_string(max_chain_bytes_) + " bytes");
    }
    total += d->len;
    if (d->len != 0) {
      (writable ? out.chain.writable : out.chain.readable).push_back(Buffer{d->addr, d->len});
    }
    if ((d->flags & kDescNext) == 0) {
      break;
    }
    index = d->next;
  }
  return out;
}

Result<std::size_t> Virtqueue::read(const memory::GuestMemory& memory,
                                    const std::vector<Buffer>& from, std::uint64_t skip,
                                    std::span<std::uint8_t> out) {
  std::size_t done = 0;
  for (const Buffer& b : from) {
    if (done == out.size()) {
      break;
    }
    if (skip >= b.len) {
      skip -= b.len;
      continue;
    }
    const std::size_t n = std::min<std::uint64_t>(b.len - skip, out.size() - done);
    KEEL_TRY_STATUS(memory.read(b.gpa + skip, out.subspan(done, n)));
    done += n;
    skip = 0;
  }
  return done;
}

std::vector<iovec> Virtqueue::iovecs(const memory::GuestMemory& memory,
                                     const std::vector<Buffer>& buffers, std::uint64_t skip,
                                     std::uint64_t length) {
  std::vector<iovec> iov;
  for (const Buffer& b : buffers) {
    if (length == 0) {
      break;
    }
    if (skip >= b.len) {
      skip -= b.len;
      continue;
    }
    const std::uint64_t n = std::min<std::uint64_t>(b.len - skip, length);
    std::uint8_t* host = memory.translate(b.gpa + skip, n);
    if (host == nullptr) {
      return {};
    }
    iov.push_back(iovec{host, n});
    length -= n;
    skip = 0;
  }
  return length == 0 ? iov : std::vector<iovec>{};
}

Status Virtqueue::write(const memory::GuestMemory& memory, const std::vector<Buffer>& to,
                        std::uint64_t skip, std::span<const std::uint8_t> data) {
  std::size_t done = 0;
  for (const Buffer& b : to) {
    if (done == data.size()) {
      break;
    }
    if (skip >= b.len) {
      skip -= b.len;
      continue;
    }
    const std::size_t n = std::min<std::uint64_t>(b.len - skip, data.size() - done);
    KEEL_TRY_STATUS(memory.write(b.gpa + skip, data.subspan(done, n)));
    done += n;
    skip = 0;
  }
  return ok_status();
}

Status Virtqueue::push_used(std::uint16_t head, std::uint32_t length) {
  const std::uint64_t elem = used + 4 + kUsedElemSize * (next_used_ % size_);
  KEEL_TRY_STATUS(memory_->write_obj(elem, UsedElem{head, length}));
  ++next_used_;
  std::atomic_thread_fence(std::memory_order_release);  // the element before the index
  return memory_->write_obj<std::uint16_t>(used + 2, next_used_);
}

bool Virtqueue::wants_interrupt() {
  // The used index written before, the driver's flags (or used_event) read after: a full
  // barrier, as the driver has one between re-enabling interrupts and re-reading the used
  // index. Without it both sides can miss each other and a completion goes unannounced.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!event_idx_) {
    auto flags = memory_->read_obj<std::uint16_t>(avail);
    return !flags.ok() || (*flags & kAvailNoInterrupt) == 0;
  }
  // virtio 1.2 §2.7.10: interrupt when the used index passed used_event since the last
  // decision (vring_need_event).
  auto used_event = memory_->read_obj<std::uint16_t>(avail + 4 + 2ULL * size_);
  const std::uint16_t before = signalled_used_;
  const bool known = signalled_valid_;
  signalled_used_ = next_used_;
  signalled_valid_ = true;
  if (!used_event.ok() || !known) {
    return true;
  }
  return static_cast<std::uint16_t>(next_used_ - *used_event - 1) <
         static_cast<std::uint16_t>(next_used_ - before);
}

}  // namespace keel::virtio
