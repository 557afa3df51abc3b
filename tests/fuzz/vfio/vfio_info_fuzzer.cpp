// VFIO_IOMMU_GET_INFO replies: the capability-chain walker and the info parser on arbitrary
// bytes. The first 4 bytes choose the walker's start offset and header size, the rest is the
// reply. Properties:
//   - nothing crashes, overflows or reads outside the reply (ASan, UBSan);
//   - a walk that succeeds lists at most kMaxCapHops capabilities, each after the header and
//     with its 8-byte header inside the reply, none twice;
//   - a parse that succeeds has ordered IOVA ranges (start <= last), the cap ids a reference
//     walk of the same bytes finds (written here, apart from Keel's walker), and the budget the
//     last DMA_AVAIL capability of that walk says: absent without one, unlimited for U32_MAX,
//     its value otherwise; without VFIO_IOMMU_INFO_CAPS, no cap ids and an absent budget.
#include <linux/vfio.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <set>
#include <vector>
#include <span>

#include "devices/vfio/cap_chain.hpp"
#include "devices/vfio/iommu_info.hpp"
#include "tests/fuzz/api/fuzz_checks.hpp"

namespace {

std::uint32_t le32(std::span<const std::uint8_t> bytes, std::size_t at) {
  std::uint32_t v = 0;
  std::memcpy(&v, bytes.data() + at, sizeof v);
  return v;
}

// The kernel's chain as the UAPI describes it, walked without Keel's code: each capability an
// 8-byte header {u16 id, u16 version, u32 next} at or after the fixed info struct, `next` 0 at
// the end; a chain that loops, runs out of the reply or is longer than kMaxCapHops is corrupt
// (nullopt). Returns the ids in order and the value of the last DMA_AVAIL (id 3, a u32 after the
// header).
struct RefWalk {
  std::vector<std::uint16_t> ids;
  std::optional<std::uint32_t> avail;
};
std::optional<RefWalk> reference_walk(std::span<const std::uint8_t> reply, std::size_t first) {
  RefWalk walk;
  std::set<std::size_t> seen;
  for (std::size_t at = first; at != 0;) {
    if (seen.size() == static_cast<std::size_t>(keel::vfio::kMaxCapHops) ||
        !seen.insert(at).second || at < sizeof(vfio_iommu_type1_info) || at > reply.size() ||
        reply.size() - at < 8) {
      return std::nullopt;
    }
    const std::uint16_t id = static_cast<std::uint16_t>(reply[at] | (reply[at + 1] << 8));
    walk.ids.push_back(id);
    if (id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL && reply.size() - at >= 12) {
      walk.avail = le32(reply, at + 8);
    }
    at = le32(reply, at + 4);
  }
  return walk;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 4) {
    return 0;
  }
  const std::uint32_t first = data[0] | (static_cast<std::uint32_t>(data[1]) << 8);
  const std::size_t header = data[2] % 64;
  const std::span<const std::uint8_t> reply(data + 4, size - 4);

  auto caps = keel::vfio::walk_cap_chain(reply, first, header, "fuzz");
  if (caps.ok()) {
    KEEL_FUZZ_CHECK(caps->size() <= static_cast<std::size_t>(keel::vfio::kMaxCapHops));
    std::set<std::size_t> seen;
    for (const keel::vfio::CapRef& c : *caps) {
      KEEL_FUZZ_CHECK(c.offset >= header);
      KEEL_FUZZ_CHECK(c.offset <= reply.size() && reply.size() - c.offset >= 8);
      KEEL_FUZZ_CHECK(seen.insert(c.offset).second);
    }
  }

  // The parser sees the reply as the kernel writes it: struct vfio_iommu_type1_info first.
  auto info = keel::vfio::parse_iommu_info(reply);
  if (info.ok()) {
    for (const keel::vfio::IovaRange& r : info->iova_ranges) {
      KEEL_FUZZ_CHECK(r.start <= r.last);
    }
    KEEL_FUZZ_CHECK(info->cap_ids.size() <= static_cast<std::size_t>(keel::vfio::kMaxCapHops));
    const std::uint32_t flags = le32(reply, 4);
    std::optional<std::uint32_t> avail;
    if ((flags & VFIO_IOMMU_INFO_CAPS) == 0) {
      KEEL_FUZZ_CHECK(info->cap_ids.empty());
    } else {
      const auto walk = reference_walk(reply, le32(reply, offsetof(vfio_iommu_type1_info, cap_offset)));
      KEEL_FUZZ_CHECK(walk.has_value());  // Keel accepted a chain the reference finds corrupt
      KEEL_FUZZ_CHECK(info->cap_ids == walk->ids);
      avail = walk->avail;
    }
    const keel::vfio::DmaBudget expected = keel::vfio::DmaBudget::from_cap(avail);
    KEEL_FUZZ_CHECK(info->budget.source == expected.source);
    KEEL_FUZZ_CHECK(info->budget.avail == expected.avail);
    KEEL_FUZZ_CHECK(!avail || *avail != keel::vfio::kAvailUnlimited ||
                    info->budget.source == keel::vfio::AvailSource::kUnlimited);
  }
  return 0;
}
