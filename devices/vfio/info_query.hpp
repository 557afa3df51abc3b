#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "devices/vfio/vfio_sys.hpp"

namespace keel::vfio {

// argsz grows once in practice; more rounds mean the kernel keeps moving the goalposts.
inline constexpr int kMaxInfoCalls = 8;
// No VFIO info reply comes near this; a bigger argsz is a corrupt reply, not a reason to allocate.
inline constexpr std::uint32_t kMaxInfoBytes = 1024 * 1024;

// Issues an info ioctl whose argument starts with `__u32 argsz` and may be followed by a
// capability chain (VFIO_IOMMU_GET_INFO, VFIO_DEVICE_GET_REGION_INFO, ...). `head` is the fixed
// struct as sent (its argsz is overwritten; other input fields such as a region index are kept).
// Assumes the kernel's protocol: when the capabilities do not fit, the call succeeds, raises
// argsz to the size it needs and leaves them out; call again with a buffer that big until argsz
// stops growing. Bounded by kMaxInfoCalls calls and kMaxInfoBytes. Returns the whole reply.
Result<std::vector<std::uint8_t>> query_info(VfioSys& sys, int fd, unsigned long request,
                                             std::span<const std::uint8_t> head,
                                             const std::string& what);

}  // namespace keel::vfio
