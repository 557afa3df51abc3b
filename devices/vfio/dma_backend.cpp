#include "devices/vfio/dma_backend.hpp"

#include <linux/vfio.h>

namespace keel::vfio {

std::string_view to_string(BackendKind kind) {
  switch (kind) {
    case BackendKind::kType1:
      return "vfio-type1v2";
    case BackendKind::kIommufd:
      return "iommufd";
  }
  return "unknown";
}

std::string_view to_string(BackendChoice choice) {
  switch (choice) {
    case BackendChoice::kAuto:
      return "auto";
    case BackendChoice::kType1:
      return "type1";
    case BackendChoice::kIommufd:
      return "iommufd";
  }
  return "unknown";
}

Result<BackendChoice> parse_backend_choice(std::string_view text) {
  for (BackendChoice choice : {BackendChoice::kAuto, BackendChoice::kType1, BackendChoice::kIommufd}) {
    if (text == to_string(choice)) {
      return choice;
    }
  }
  return Error::invalid("'" + std::string(text.substr(0, 64)) +
                        "' is not a VFIO backend; give auto, type1 or iommufd");
}

// VFIO_IOMMU_MAP_DMA: assumes the container's IOMMU is set.
Status Type1DmaBackend::map(std::uint64_t iova, std::uint64_t size, std::uint64_t host,
                            DmaAccess access, const std::string& what) {
  vfio_iommu_type1_dma_map request{};
  request.argsz = sizeof(request);
  request.flags = (access.device_reads ? VFIO_DMA_MAP_FLAG_READ : 0U) |
                  (access.device_writes ? VFIO_DMA_MAP_FLAG_WRITE : 0U);
  request.vaddr = host;
  request.iova = iova;
  request.size = size;
  KEEL_TRY_STATUS(sys_->ioctl(fd_, VFIO_IOMMU_MAP_DMA, &request, what));
  return ok_status();
}

// VFIO_IOMMU_UNMAP_DMA: type1v2 refuses a range that would split a mapping (EINVAL) and reports
// the bytes it unmapped in `size`.
Result<std::uint64_t> Type1DmaBackend::unmap(std::uint64_t iova, std::uint64_t size,
                                             const std::string& what) {
  vfio_iommu_type1_dma_unmap request{};
  request.argsz = sizeof(request);
  request.iova = iova;
  request.size = size;
  KEEL_TRY_STATUS(sys_->ioctl(fd_, VFIO_IOMMU_UNMAP_DMA, &request, what));
  return request.size;
}

// VFIO_IOMMU_UNMAP_DMA with VFIO_DMA_UNMAP_FLAG_ALL: needs the VFIO_UNMAP_ALL extension and
// iova = size = 0.
Result<std::uint64_t> Type1DmaBackend::unmap_all(const std::string& what) {
  vfio_iommu_type1_dma_unmap request{};
  request.argsz = sizeof(request);
  request.flags = VFIO_DMA_UNMAP_FLAG_ALL;
  KEEL_TRY_STATUS(sys_->ioctl(fd_, VFIO_IOMMU_UNMAP_DMA, &request, what));
  return request.size;
}

}  // namespace keel::vfio
