#pragma once

namespace keel::vfio {

// What a device may do with a DMA mapping's memory (type1's VFIO_DMA_MAP_FLAG_READ / _WRITE,
// iommufd's IOMMU_IOAS_MAP_READABLE / _WRITEABLE).
struct DmaAccess {
  bool device_reads = true;
  bool device_writes = true;
};

}  // namespace keel::vfio
