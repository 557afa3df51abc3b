#include "devices/vfio/iommufd.hpp"

#include <cerrno>
#include <system_error>

#include "devices/vfio/iommufd_uapi.hpp"

namespace keel::vfio {
Result<Iommufd> Iommufd::open(std::shared_ptr<VfioSys> sys) {
  auto fd = sys->open(kIommufdPath);
  if (!fd) {
    if (fd.error().errno_value() == ENOENT) {
      return fd.error().wrap("iommufd: no " + std::string(kIommufdPath) +
                             " (the host kernel needs CONFIG_IOMMUFD: modprobe iommufd, or use "
                             "backend=type1)");
    }
    return fd.error().wrap("iommufd");
  }
  return Iommufd(std::move(sys), std::move(*fd));
}

Result<bool> Iommufd::charged_per_process() {
  uapi::IommuOption option;
  option.option_id = uapi::kOptionRlimitMode;
  option.op = uapi::kOptionOpGet;
  KEEL_TRY_STATUS(sys_->ioctl(fd_.get(), uapi::kIommuOption, &option, "IOMMU_OPTION(RLIMIT_MODE, get)"));
  return option.val64 == 1;
}

Status Iommufd::charge_per_process() {
  uapi::IommuOption option;
  option.option_id = uapi::kOptionRlimitMode;
  option.op = uapi::kOptionOpSet;
  option.val64 = 1;
  auto st = sys_->ioctl(fd_.get(), uapi::kIommuOption, &option, "IOMMU_OPTION(RLIMIT_MODE, set 1)");
  if (st) {
    return ok_status();
  }
  switch (st.error().errno_value()) {
    case EPERM:
      return st.error().wrap("iommufd: charging pinned memory to this process needs "
                             "CAP_SYS_RESOURCE; without it the user's locked memory is charged");
    case EBUSY:
      return st.error().wrap("iommufd: the charging mode is set before any IO address space "
                             "exists");
    default:
      return st.error().wrap("iommufd");
  }
}

Result<std::uint32_t> Iommufd::alloc_ioas() {
  uapi::IommuIoasAlloc alloc;
  KEEL_TRY_STATUS(sys_->ioctl(fd_.get(), uapi::kIommuIoasAlloc, &alloc, "IOMMU_IOAS_ALLOC"));
  return alloc.out_ioas_id;
}

Status Iommufd::destroy(std::uint32_t id) {
  uapi::IommuDestroy destroy;
  destroy.id = id;
  KEEL_TRY_STATUS(sys_->ioctl(fd_.get(), uapi::kIommuDestroy, &destroy,
                              "IOMMU_DESTROY " + std::to_string(id)));
  return ok_status();
}

Result<IoasRanges> Iommufd::iova_ranges(std::uint32_t ioas) {
  std::vector<uapi::IommuIovaRange> ranges;
  const std::string what = "IOMMU_IOAS_IOVA_RANGES of IOAS " + std::to_string(ioas);
  // The count can grow between the two calls (a device attached meanwhile): ask until it fits.
  for (int attempt = 0; attempt < 4; ++attempt) {
    uapi::IommuIoasIovaRanges request;
    request.ioas_id = ioas;
    request.num_iovas = static_cast<std::uint32_t>(ranges.size());
    request.allowed_iovas = reinterpret_cast<std::uint64_t>(ranges.data());
    auto got = sys_->ioctl(fd_.get(), uapi::kIommuIoasIovaRanges, &request, what);
    if (!got && got.error().errno_value() == EMSGSIZE && request.num_iovas > ranges.size()) {
      ranges.resize(request.num_iovas);
      continue;
    }
    if (!got) {
      return got.error();
    }
    IoasRanges out;
    out.alignment = request.out_iova_alignment;
    for (std::size_t i = 0; i < request.num_iovas && i < ranges.size(); ++i) {
      out.ranges.push_back({ranges[i].start, ranges[i].last});
    }
    return out;
  }
  return Error::from_errno(EMSGSIZE, what + ": the number of ranges kept changing");
}

Status Iommufd::map(std::uint32_t ioas, std::uint64_t iova, std::uint64_t length,
                    std::uint64_t user_va, DmaAccess access, const std::string& what) {
  uapi::IommuIoasMap request;
  request.flags = uapi::kIoasMapFixedIova | (access.device_reads ? uapi::kIoasMapReadable : 0) |
                  (access.device_writes ? uapi::kIoasMapWriteable : 0);
  request.ioas_id = ioas;
  request.user_va = user_va;
  request.length = length;
  request.iova = iova;
  KEEL_TRY_STATUS(sys_->ioctl(fd_.get(), uapi::kIommuIoasMap, &request, what));
  return ok_status();
}

Result<std::uint64_t> Iommufd::unmap(std::uint32_t ioas, std::uint64_t iova, std::uint64_t length,
                                     const std::string& what) {
  uapi::IommuIoasUnmap request;
  request.ioas_id = ioas;
  request.iova = iova;
  request.length = length;
  KEEL_TRY_STATUS(sys_->ioctl(fd_.get(), uapi::kIommuIoasUnmap, &request, what));
  return request.length;
}

Result<std::uint64_t> Iommufd::unmap_all(std::uint32_t ioas, const std::string& what) {
  return unmap(ioas, 0, UINT64_MAX, what);
}

Result<std::filesystem::path> find_device_cdev(const std::filesystem::path& sysfs_root,
                                               const std::string& bdf) {
  const auto dir = sysfs_root / "bus/pci/devices" / bdf / "vfio-dev";
  std::error_code ec;
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("vfio", 0) == 0) {
      names.push_back(name);
    }
  }
  if (names.size() == 1) {
    return std::filesystem::path("/dev/vfio/devices") / names.front();
  }
  if (names.empty()) {
    return Error::not_found("VFIO device " + bdf + ": no device cdev (" + dir.string() +
                            " is empty or missing): the host kernel needs "
                            "CONFIG_VFIO_DEVICE_CDEV and the device bound to vfio-pci, or use "
                            "backend=type1");
  }
  return Error::invalid("VFIO device " + bdf + ": " + std::to_string(names.size()) +
                        " cdevs under " + dir.string() + ", expected one");
}

Result<std::uint32_t> bind_device(VfioSys& sys, int device_fd, const Iommufd& iommufd,
                                  const std::string& bdf) {
  uapi::VfioDeviceBindIommufd bind;
  bind.iommufd = iommufd.fd();
  auto got = sys.ioctl(device_fd, uapi::kVfioDeviceBindIommufd, &bind,
                       "VFIO_DEVICE_BIND_IOMMUFD " + bdf);
  if (got) {
    return bind.out_devid;
  }
  switch (got.error().errno_value()) {
    case EBUSY:
      return got.error().wrap("VFIO device " + bdf + ": its IOMMU group is open the type1 way "
                              "(/dev/vfio/<group>) or has another DMA owner");
    case EPERM:
      return got.error().wrap("VFIO device " + bdf + ": the host has no interrupt remapping "
                              "(load iommufd with allow_unsafe_interrupts=1 to accept that)");
    default:
      return got.error().wrap("VFIO device " + bdf);
  }
}

Status attach_device(VfioSys& sys, int device_fd, std::uint32_t ioas, const std::string& bdf) {
  uapi::VfioDeviceAttachIommufdPt attach;
  attach.pt_id = ioas;
  auto got = sys.ioctl(device_fd, uapi::kVfioDeviceAttachIommufdPt, &attach,
                       "VFIO_DEVICE_ATTACH_IOMMUFD_PT " + bdf + " to IOAS " + std::to_string(ioas));
  if (got) {
    return ok_status();
  }
  if (got.error().errno_value() == EADDRINUSE) {
    return got.error().wrap("VFIO device " + bdf + ": a mapping in the IO address space covers "
                            "one of the device's reserved IOVA ranges");
  }
  return got.error().wrap("VFIO device " + bdf);
}

}  // namespace keel::vfio
