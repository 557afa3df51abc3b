#pragma once

// A fake /dev/iommu for unit tests that keeps the kernel's rules (Linux 6.12,
// drivers/iommu/iommufd): one area per MAP, UNMAP of whole areas only (ENOENT otherwise; iova 0
// and length UINT64_MAX unmaps all, and an empty IOAS then is no error), EEXIST on overlap,
// ENOMEM past the memlock limit, EMSGSIZE with the count for a short range array, RLIMIT_MODE
// only before any object and with CAP_SYS_RESOURCE. Device cdevs bind and attach to its one
// IOAS and answer VFIO_DEVICE_GET_INFO. Every fd it hands out is /dev/null.

#include <fcntl.h>
#include <linux/vfio.h>

#include <cerrno>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "devices/vfio/iommu_info.hpp"
#include "devices/vfio/iommufd.hpp"
#include "devices/vfio/iommufd_uapi.hpp"
#include "devices/vfio/vfio_sys.hpp"

namespace keel::vfio::testing {

inline constexpr std::uint64_t kPage = 4096;

class FakeIommufd final : public VfioSys {
 public:
  std::vector<IovaRange> ranges = {{0x0, 0xfedfffff}, {0xfef00000, 0xffffffffffff}};
  std::uint64_t memlock = UINT64_MAX;  // bytes this user may pin
  bool cap_sys_resource = true;
  bool exists = true;  // /dev/iommu
  int range_growth = 0;  // ranges appearing between two IOVA_RANGES calls
  std::map<std::uint64_t, std::uint64_t> areas;  // iova -> length (one IOAS)
  std::uint64_t pinned = 0;                      // bytes of all areas
  std::uint32_t ioas = 0;
  bool per_process = false;
  std::uint32_t bound_devid = 0;
  std::uint32_t attached_to = 0;
  int bind_errno = 0;
  std::set<std::string> opened;  // paths open() was asked for

  Result<UniqueFd> open(const std::string& path) override {
    if (path == kIommufdPath && !exists) {
      return Error::from_errno(ENOENT, "open " + path);
    }
    opened.insert(path);
    return UniqueFd(::open("/dev/null", O_RDWR | O_CLOEXEC));
  }

  Result<int> ioctl(int, unsigned long request, void* arg, const std::string& what) override {
    using namespace uapi;
    if (request == kIommuOption) {
      auto* o = static_cast<IommuOption*>(arg);
      if (o->option_id != kOptionRlimitMode || o->object_id != 0) {
        return Error::from_errno(EOPNOTSUPP, what);
      }
      if (o->op == kOptionOpGet) {
        o->val64 = per_process ? 1 : 0;
        return 0;
      }
      if (!cap_sys_resource) {
        return Error::from_errno(EPERM, what);
      }
      if (ioas != 0) {
        return Error::from_errno(EBUSY, what);
      }
      per_process = o->val64 == 1;
      return 0;
    }
    if (request == kIommuIoasAlloc) {
      static_cast<IommuIoasAlloc*>(arg)->out_ioas_id = ioas = 7;
      return 0;
    }
    if (request == kIommuDestroy) {
      const auto* d = static_cast<IommuDestroy*>(arg);
      if (d->id != ioas) {
        return Error::from_errno(ENOENT, what);
      }
      if (attached_to == ioas) {
        return Error::from_errno(EBUSY, what);
      }
      ioas = 0;
      return 0;
    }
    if (request == kIommuIoasIovaRanges) {
      auto* r = static_cast<IommuIoasIovaRanges*>(arg);
      const std::uint32_t capacity = r->num_iovas;
      r->num_iovas = static_cast<std::uint32_t>(ranges.size());
      r->out_iova_alignment = kPage;
      if (capacity < ranges.size()) {
        if (range_growth-- > 0) {
          ranges.push_back({0x1000000000000 + ranges.size() * 0x1000, 0x1000000000000 + ranges.size() * 0x1000});
        }
        return Error::from_errno(EMSGSIZE, what);
      }
      auto* out = reinterpret_cast<IommuIovaRange*>(r->allowed_iovas);
      for (std::size_t i = 0; i < ranges.size(); ++i) {
        out[i] = {ranges[i].start, ranges[i].last};
      }
      return 0;
    }
    if (request == kIommuIoasMap) {
      auto* m = static_cast<IommuIoasMap*>(arg);
      if (m->ioas_id != ioas || m->length == 0 || m->iova % kPage != 0 || m->length % kPage != 0 ||
          (m->flags & (kIoasMapReadable | kIoasMapWriteable)) == 0) {
        return Error::from_errno(EINVAL, what);
      }
      const std::uint64_t last = m->iova + m->length - 1;
      auto next = areas.lower_bound(m->iova);
      if ((next != areas.end() && next->first <= last) ||
          (next != areas.begin() && std::prev(next)->first + std::prev(next)->second > m->iova)) {
        return Error::from_errno(EEXIST, what);
      }
      if (pinned + m->length > memlock) {
        return Error::from_errno(ENOMEM, what);
      }
      areas[m->iova] = m->length;
      pinned += m->length;
      return 0;
    }
    if (request == kIommuIoasUnmap) {
      auto* u = static_cast<IommuIoasUnmap*>(arg);
      if (u->iova == 0 && u->length == UINT64_MAX) {  // iopt_unmap_all
        std::uint64_t all = 0;
        for (const auto& [iova, length] : areas) {
          all += length;
        }
        areas.clear();
        pinned = 0;
        u->length = all;
        return 0;
      }
      const std::uint64_t end = u->iova + u->length;
      std::uint64_t unmapped = 0;
      for (auto it = areas.begin(); it != areas.end();) {
        const std::uint64_t a_end = it->first + it->second;
        if (it->first < end && a_end > u->iova) {
          if (it->first < u->iova || a_end > end) {
            return Error::from_errno(ENOENT, what);  // never splits; earlier areas stay gone
          }
          unmapped += it->second;
          pinned -= it->second;
          it = areas.erase(it);
        } else {
          ++it;
        }
      }
      if (unmapped == 0) {
        return Error::from_errno(ENOENT, what);
      }
      u->length = unmapped;
      return 0;
    }
    if (request == kVfioDeviceBindIommufd) {
      if (bind_errno != 0) {
        return Error::from_errno(bind_errno, what);
      }
      static_cast<VfioDeviceBindIommufd*>(arg)->out_devid = bound_devid = 3;
      return 0;
    }
    if (request == kVfioDeviceAttachIommufdPt) {
      auto* a = static_cast<VfioDeviceAttachIommufdPt*>(arg);
      if (bound_devid == 0 || a->pt_id != ioas) {
        return Error::from_errno(EINVAL, what);
      }
      attached_to = a->pt_id;
      a->pt_id = 9;  // the page table the kernel made
      return 0;
    }
    if (request == VFIO_DEVICE_GET_INFO) {
      auto* info = static_cast<vfio_device_info*>(arg);
      info->flags = VFIO_DEVICE_FLAGS_PCI;
      info->num_regions = VFIO_PCI_NUM_REGIONS;
      info->num_irqs = VFIO_PCI_NUM_IRQS;
      return 0;
    }
    return Error::from_errno(ENOTTY, what);
  }
  Status pread(int, void*, std::size_t, off_t, const std::string& what) override {
    return Error::from_errno(EINVAL, what);
  }
  Status pwrite(int, const void*, std::size_t, off_t, const std::string& what) override {
    return Error::from_errno(EINVAL, what);
  }
  Result<Mapping> mmap(int, std::size_t, int, off_t, const std::string& what) override {
    return Error::from_errno(EINVAL, what);
  }
};

}  // namespace keel::vfio::testing
