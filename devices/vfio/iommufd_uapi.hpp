#pragma once

// The iommufd and VFIO device-cdev uAPI of Linux 6.6 and later (include/uapi/linux/iommufd.h and
// vfio.h), spelled out here because Debian 12's headers (linux-libc-dev 6.1) predate it. Names
// are Keel's, in a namespace of their own, so they never clash with a newer system header;
// the layouts are the kernel's ABI, checked below.
//
// Every iommufd ioctl is _IO(';', nr): the argument's size travels in its first field (`size`
// for iommufd, `argsz` for VFIO), not in the request number.

#include <cstddef>
#include <cstdint>

namespace keel::vfio::uapi {

inline constexpr unsigned long io(unsigned nr) { return (0x3bUL << 8) | nr; }  // _IO(';', nr)

// iommufd (/dev/iommu).
inline constexpr unsigned long kIommuDestroy = io(0x80);
inline constexpr unsigned long kIommuIoasAlloc = io(0x81);
inline constexpr unsigned long kIommuIoasIovaRanges = io(0x84);
inline constexpr unsigned long kIommuIoasMap = io(0x85);
inline constexpr unsigned long kIommuIoasUnmap = io(0x86);
inline constexpr unsigned long kIommuOption = io(0x87);

// VFIO device cdev (/dev/vfio/devices/vfioN): VFIO_BASE (100) + 18, 19, 20.
inline constexpr unsigned long kVfioDeviceBindIommufd = io(100 + 18);
inline constexpr unsigned long kVfioDeviceAttachIommufdPt = io(100 + 19);
inline constexpr unsigned long kVfioDeviceDetachIommufdPt = io(100 + 20);

struct IommuDestroy {
  std::uint32_t size = sizeof(IommuDestroy);
  std::uint32_t id = 0;
};

struct IommuIoasAlloc {
  std::uint32_t size = sizeof(IommuIoasAlloc);
  std::uint32_t flags = 0;
  std::uint32_t out_ioas_id = 0;
};

struct IommuIovaRange {
  alignas(8) std::uint64_t start = 0;
  alignas(8) std::uint64_t last = 0;  // inclusive
};

// In: num_iovas is the capacity of the array at allowed_iovas. Out: the total count (EMSGSIZE
// when it did not fit) and the IOVA alignment every mapping must have.
struct IommuIoasIovaRanges {
  std::uint32_t size = sizeof(IommuIoasIovaRanges);
  std::uint32_t ioas_id = 0;
  std::uint32_t num_iovas = 0;
  std::uint32_t reserved = 0;
  alignas(8) std::uint64_t allowed_iovas = 0;  // user pointer to IommuIovaRange[num_iovas]
  alignas(8) std::uint64_t out_iova_alignment = 0;
};

inline constexpr std::uint32_t kIoasMapFixedIova = 1U << 0;
inline constexpr std::uint32_t kIoasMapWriteable = 1U << 1;
inline constexpr std::uint32_t kIoasMapReadable = 1U << 2;

struct IommuIoasMap {
  std::uint32_t size = sizeof(IommuIoasMap);
  std::uint32_t flags = 0;
  std::uint32_t ioas_id = 0;
  std::uint32_t reserved = 0;
  alignas(8) std::uint64_t user_va = 0;
  alignas(8) std::uint64_t length = 0;
  alignas(8) std::uint64_t iova = 0;  // in with kIoasMapFixedIova; always written back
};

// Unmaps whole areas (MAPs) inside [iova, iova + length); out: the bytes unmapped. An area that
// straddles either end is ENOENT: iommufd never splits.
struct IommuIoasUnmap {
  std::uint32_t size = sizeof(IommuIoasUnmap);
  std::uint32_t ioas_id = 0;
  alignas(8) std::uint64_t iova = 0;
  alignas(8) std::uint64_t length = 0;
};

inline constexpr std::uint32_t kOptionRlimitMode = 0;  // object 0; 0 per user, 1 per process
inline constexpr std::uint16_t kOptionOpSet = 0;
inline constexpr std::uint16_t kOptionOpGet = 1;

struct IommuOption {
  std::uint32_t size = sizeof(IommuOption);
  std::uint32_t option_id = 0;
  std::uint16_t op = 0;
  std::uint16_t reserved = 0;
  std::uint32_t object_id = 0;
  alignas(8) std::uint64_t val64 = 0;
};

struct VfioDeviceBindIommufd {
  std::uint32_t argsz = sizeof(VfioDeviceBindIommufd);
  std::uint32_t flags = 0;
  std::int32_t iommufd = -1;
  std::uint32_t out_devid = 0;
};

// pt_id: in, the IOAS (or page table) to attach to; out, the page table the kernel attached.
struct VfioDeviceAttachIommufdPt {
  std::uint32_t argsz = sizeof(VfioDeviceAttachIommufdPt);
  std::uint32_t flags = 0;
  std::uint32_t pt_id = 0;
};

struct VfioDeviceDetachIommufdPt {
  std::uint32_t argsz = sizeof(VfioDeviceDetachIommufdPt);
  std::uint32_t flags = 0;
};

static_assert(sizeof(IommuDestroy) == 8);
static_assert(sizeof(IommuIoasAlloc) == 12);
static_assert(sizeof(IommuIovaRange) == 16);
static_assert(sizeof(IommuIoasIovaRanges) == 32 && offsetof(IommuIoasIovaRanges, allowed_iovas) == 16);
static_assert(sizeof(IommuIoasMap) == 40 && offsetof(IommuIoasMap, user_va) == 16 &&
              offsetof(IommuIoasMap, iova) == 32);
static_assert(sizeof(IommuIoasUnmap) == 24 && offsetof(IommuIoasUnmap, iova) == 8);
static_assert(sizeof(IommuOption) == 24 && offsetof(IommuOption, op) == 8 &&
              offsetof(IommuOption, object_id) == 12 && offsetof(IommuOption, val64) == 16);
static_assert(sizeof(VfioDeviceBindIommufd) == 16);
static_assert(sizeof(VfioDeviceAttachIommufdPt) == 12);
static_assert(sizeof(VfioDeviceDetachIommufdPt) == 8);
static_assert(kIommuIoasMap == 0x3b85 && kVfioDeviceBindIommufd == 0x3b76);

}  // namespace keel::vfio::uapi
