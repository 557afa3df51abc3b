#include "devices/virtio/virtio_blk.hpp"

#include <linux/virtio_ids.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace keel::virtio {
Result<std::unique_ptr<VirtioBlk>> VirtioBlk::create(DiskImage image, const Options& options) {
  if (options.num_queues == 0 || options.num_queues > kMaxQueues) {
    return Error::invalid("disk " + image.path() + ": num_queues=" +
                          std::to_string(options.num_queues) + " is not 1 to " +
                          std::to_string(kMaxQueues));
  }
  if (!Virtqueue::valid_max_size(options.queue_size)) {
    return Error::invalid("disk " + image.path() + ": queue_size=" +
                          std::to_string(options.queue_size) +
                          " is not a power of two from 2 to 32768 (e.g. 128)");
  }
  return std::unique_ptr<VirtioBlk>(new VirtioBlk(std::move(image), options));
}

VirtioBlk::VirtioBlk(DiskImage image, const Options& options)
    : image_(std::move(image)), options_(options), capacity_(image_.size() / kSector) {
  config_.capacity = capacity_;
  // Two descriptors of each request carry the header and the status.
  config_.seg_max = static_cast<std::uint32_t>(options_.queue_size - 2);
  config_.blk_size = kSector;
  config_.num_queues = options_.num_queues;
  config_.max_discard_sectors = kMaxDiscardSectors;
  config_.max_discard_seg = 1;
  config_.discard_sector_alignment = 1;
  config_.max_write_zeroes_sectors = kMaxDiscardSectors;
  config_.max_write_zeroes_seg = 1;
  config_.write_zeroes_may_unmap = 1;
}

std::uint32_t VirtioBlk::device_type() const { return VIRTIO_ID_BLOCK; }

std::uint64_t VirtioBlk::device_features() const {
  std::uint64_t f = (1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_BLK_F_BLK_SIZE) |
                    (1ULL << VIRTIO_BLK_F_FLUSH);
  if (options_.num_queues > 1) {
    f |= 1ULL << VIRTIO_BLK_F_MQ;
  }
  if (image_.readonly()) {
    f |= 1ULL << VIRTIO_BLK_F_RO;
  } else {
    f |= (1ULL << VIRTIO_BLK_F_DISCARD) | (1ULL << VIRTIO_BLK_F_WRITE_ZEROES);
  }
  return f;
}

void VirtioBlk::read_config(std::uint64_t offset, std::span<std::uint8_t> data) const {
  read_config_of(config_, offset, data);
}

VirtioBlk::Outcome VirtioBlk::io_error() {
  ++io_errors_;
  return {VIRTIO_BLK_S_IOERR};
}

std::uint32_t VirtioBlk::serve(std::uint16_t, const Chain& chain,
                               const memory::GuestMemory& memory) {
  if (chain.writable_size == 0) {
    ++io_errors_;  // nowhere to put a status: returned unanswered
    return 0;
  }
  virtio_blk_outhdr header{};
  auto copied =
      Virtqueue::read(memory, chain.readable, 0,
                      std::span(reinterpret_cast<std::uint8_t*>(&header), sizeof header));
  const Outcome outcome = copied.ok() && *copied == sizeof header ? execute(header, chain, memory)
                                                                  : io_error();
  const std::uint8_t status = outcome.status;
  if (!Virtqueue::write(memory, chain.writable, chain.writable_size - 1, std::span(&status, 1))
           .ok()) {
    return 0;
  }
  return outcome.written + 1;
}

VirtioBlk::Outcome VirtioBlk::execute(const virtio_blk_outhdr& header, const Chain& chain,
                                      const memory::GuestMemory& memory) {
  const std::uint32_t type = header.type;
  // IN: the writable bytes before the status are the data; OUT: the readable ones after the
  // header.
  const bool in = type == VIRTIO_BLK_T_IN;
  const std::uint64_t data = in ? chain.writable_size - 1 : chain.readable_size - sizeof header;
  switch (type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_OUT: {
      if (!in && image_.readonly()) {
        return io_error();
      }
      if (data % kSector != 0 || data > kMaxRequestBytes || header.sector > capacity_ ||
          data / kSector > capacity_ - header.sector) {
        return io_error();
      }
      const std::vector<iovec> iov = in ? Virtqueue::iovecs(memory, chain.writable, 0, data)
                                        : Virtqueue::iovecs(memory, chain.readable, sizeof header, data);
      if (iov.empty() && data != 0) {
        return io_error();
      }
      const std::uint64_t offset = header.sector * kSector;
      const Status s = in ? image_.read(offset, iov) : image_.write(offset, iov);
      if (!s.ok()) {
        return io_error();
      }
      (in ? read_ops_ : write_ops_) += 1;
      (in ? read_bytes_ : write_bytes_) += data;
      return {VIRTIO_BLK_S_OK, in ? static_cast<std::uint32_t>(data) : 0};
    }
    case VIRTIO_BLK_T_FLUSH:
      ++flush_ops_;
      if (!image_.readonly() && !image_.flush().ok()) {
        return io_error();
      }
      return {VIRTIO_BLK_S_OK};
    case VIRTIO_BLK_T_GET_ID: {
      const std::string& id = image_.serial();
      const std::size_t n = std::min<std::size_t>({id.size(), VIRTIO_BLK_ID_BYTES,
                                                   chain.writable_size - 1});
      if (!Virtqueue::write(memory, chain.writable, 0,
                            std::span(reinterpret_cast<const std::uint8_t*>(id.data()), n))
               .ok()) {
        return io_error();
      }
      return {VIRTIO_BLK_S_OK, static_cast<std::uint32_t>(n)};
    }
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES:
      return discard_or_zero(type, chain, memory);
    default:
      ++unsupported_;
      return {VIRTIO_BLK_S_UNSUPP};
  }
}

VirtioBlk::Outcome VirtioBlk::discard_or_zero(std::uint32_t type, const Chain& chain,
                                              const memory::GuestMemory& memory) {
  if (image_.readonly()) {
    return io_error();
  }
  // One segment (max_discard_seg and max_write_zeroes_seg are 1).
  virtio_blk_discard_write_zeroes segment{};
  if (chain.readable_size != sizeof(virtio_blk_outhdr) + sizeof segment) {
    return io_error();
  }
  auto copied = Virtqueue::read(memory, chain.readable, sizeof(virtio_blk_outhdr),
                                std::span(reinterpret_cast<std::uint8_t*>(&segment), sizeof segment));
  if (!copied.ok() || *copied != sizeof segment) {
    return io_error();
  }
  const bool zeroes = type == VIRTIO_BLK_T_WRITE_ZEROES;
  const std::uint32_t allowed = zeroes ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0;
  if ((segment.flags & ~allowed) != 0) {
    ++unsupported_;
    return {VIRTIO_BLK_S_UNSUPP};
  }
  if (segment.num_sectors > kMaxDiscardSectors || segment.sector > capacity_ ||
      segment.num_sectors > capacity_ - segment.sector) {
    return io_error();
  }
  const std::uint64_t offset = segment.sector * kSector, length = segment.num_sectors * kSector;
  const Status s = zeroes ? image_.write_zeroes(offset, length,
                                                (segment.flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) != 0)
                          : image_.discard(offset, length);
  if (!s.ok()) {
    if (s.error().code().value() == EOPNOTSUPP) {
      ++unsupported_;
      return {VIRTIO_BLK_S_UNSUPP};
    }
    return io_error();
  }
  ++(zeroes ? write_zeroes_ops_ : discard_ops_);
  return {VIRTIO_BLK_S_OK};
}

std::map<std::string, std::uint64_t> VirtioBlk::counters() const {
  return {{"read_bytes", read_bytes_},       {"write_bytes", write_bytes_},
          {"read_ops", read_ops_},           {"write_ops", write_ops_},
          {"flush_ops", flush_ops_},         {"discard_ops", discard_ops_},
          {"write_zeroes_ops", write_zeroes_ops_}, {"io_errors", io_errors_},
          {"unsupported", unsupported_}};
}

}  // namespace keel::virtio
