// VFIO_IOMMU_GET_INFO replies: the capability-chain walker and the info parser on arbitrary
// bytes. The first 4 bytes choose the walker's start offset and header size, the rest is the
// reply. Properties:
//   - nothing crashes, overflows or reads outside the reply (ASan, UBSan);
//   - a walk that succeeds lists at most kMaxCapHops capabilities, each after the header and
//     with its 8-byte header inside the reply, none twice;
//   - a parse that succeeds has ordered IOVA ranges (start <= last), one cap id per
//     capability walked, and a budget whose source matches the DMA_AVAIL value.
#include <linux/vfio.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <set>
#include <span>

#include "devices/vfio/cap_chain.hpp"
#include "devices/vfio/iommu_info.hpp"
#include "tests/fuzz/api/fuzz_checks.hpp"

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
    if (info->budget.source == keel::vfio::AvailSource::kUnlimited) {
      KEEL_FUZZ_CHECK(info->budget.avail == keel::vfio::kAvailUnlimited);
    }
  }
  return 0;
}
