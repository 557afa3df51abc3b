#include "devices/pci/msix.hpp"

#include <algorithm>
#include <cstring>

namespace keel::pci {
namespace {

// The table takes naturally aligned dwords and qwords that stay inside one entry.
bool table_access(std::uint64_t offset, std::size_t size, std::uint64_t table_bytes) {
  return (size == 4 || size == 8) && offset % size == 0 && offset < table_bytes &&
         size <= table_bytes - offset;
}

}  // namespace

MsixTable::MsixTable(devices::InterruptRouter& router, std::uint16_t size) {
  const std::uint16_t n = std::clamp<std::uint16_t>(size, 1, kMsixTableSizeMask + 1);
  entries_.reserve(n);
  for (std::uint16_t i = 0; i < n; ++i) {
    entries_.push_back(Entry{{}, 1, false, MsiRoute(router)});
  }
}

bool MsixTable::deliverable(const Entry& e) const {
  return enabled_ && !function_masked_ && (e.control & 1) == 0 && e.message.address != 0;
}

MsixTable::Change MsixTable::read_table(std::uint64_t offset, std::span<std::uint8_t> data) const {
  std::fill(data.begin(), data.end(), 0);
  if (!table_access(offset, data.size(), table_bytes())) {
    return Change{.accepted = false, .eventfds_changed = false, .routing = ok_status()};
  }
  const Entry& e = entries_[offset / kMsixEntrySize];
  const std::uint32_t fields[4] = {static_cast<std::uint32_t>(e.message.address),
                                   static_cast<std::uint32_t>(e.message.address >> 32),
                                   e.message.data, e.control};
  std::memcpy(data.data(), reinterpret_cast<const std::uint8_t*>(fields) + offset % kMsixEntrySize,
              data.size());
  return {};
}

MsixTable::Change MsixTable::write_table(std::uint64_t offset, std::span<const std::uint8_t> data) {
  if (!table_access(offset, data.size(), table_bytes())) {
    return Change{.accepted = false, .eventfds_changed = false, .routing = ok_status()};
  }
  std::vector<std::int32_t> before = eventfds();
  Entry& e = entries_[offset / kMsixEntrySize];
  for (std::size_t done = 0; done < data.size(); done += 4) {
    std::uint32_t value = 0;
    std::memcpy(&value, data.data() + done, sizeof value);
    switch ((offset % kMsixEntrySize + done) / 4) {
      case 0:
        e.message.address = (e.message.address & ~0xffff'ffffULL) | value;
        break;
      case 1:
        e.message.address = (e.message.address & 0xffff'ffffULL) | (std::uint64_t{value} << 32);
        break;
      case 2:
        e.message.data = value;
        break;
      default:
        e.control = value & 1;
        break;
    }
  }
  return sync(std::move(before));
}

void MsixTable::read_pba(std::uint64_t offset, std::span<std::uint8_t> data) const {
  for (std::size_t i = 0; i < data.size(); ++i) {
    std::uint8_t byte = 0;
    for (std::uint64_t bit = 0; bit < 8; ++bit) {
      const std::uint64_t v = (offset + i) * 8 + bit;
      if (v < entries_.size() && entries_[v].pending) {
        byte |= static_cast<std::uint8_t>(1U << bit);
      }
    }
    data[i] = byte;
  }
}

MsixTable::Change MsixTable::set_control(std::uint16_t message_control) {
  std::vector<std::int32_t> before = eventfds();
  enabled_ = (message_control & kMsixEnable) != 0;
  function_masked_ = (message_control & kMsixFunctionMask) != 0;
  return sync(std::move(before));
}

MsixTable::Change MsixTable::sync(std::vector<std::int32_t> before) {
  Change change;
  for (Entry& e : entries_) {
    if (!enabled_) {
      e.route.release();
      continue;
    }
    if (!deliverable(e)) {
      continue;  // masked: the route stays, unmasking costs nothing
    }
    Status set = e.route.set(e.message);
    if (!set.ok()) {
      if (change.routing.ok()) {
        change.routing = set;
      }
      continue;
    }
    if (e.pending) {
      e.pending = false;
      Status signalled = e.route.signal();
      if (!signalled.ok() && change.routing.ok()) {
        change.routing = signalled;
      }
    }
  }
  change.eventfds_changed = eventfds() != before;
  return change;
}

Result<MsixTable::Raised> MsixTable::raise(std::uint16_t vector) {
  if (vector >= entries_.size()) {
    return Raised::kIgnored;
  }
  Entry& e = entries_[vector];
  if (!deliverable(e) || !e.route.live()) {
    e.pending = true;
    return Raised::kPending;
  }
  KEEL_TRY_STATUS(e.route.signal());
  return Raised::kDelivered;
}

std::vector<std::int32_t> MsixTable::eventfds() const {
  std::vector<std::int32_t> fds;
  fds.reserve(entries_.size());
  for (const Entry& e : entries_) {
    fds.push_back(deliverable(e) && e.route.live() ? e.route.eventfd() : -1);
  }
  return fds;
}

void MsixTable::reset() {
  for (Entry& e : entries_) {
    e.route.release();
    e.message = {};
    e.control = 1;
    e.pending = false;
  }
  enabled_ = function_masked_ = false;
}

}  // namespace keel::pci
