#include "devices/virtio/virtio_iommu_device.hpp"

#include <linux/virtio_ids.h>

namespace keel::virtio {

std::uint32_t VirtioIommuDevice::device_type() const { return VIRTIO_ID_IOMMU; }

std::size_t VirtioIommuDevice::handle(std::uint16_t queue, std::span<const std::uint8_t> in,
                                      std::span<std::uint8_t> out) {
  return queue == 0 ? iommu_->handle(in, out) : 0;
}

}  // namespace keel::virtio
