#include "devices/virtio/virtio_iommu_device.hpp"

#include <linux/virtio_ids.h>

namespace keel::virtio {

std::uint32_t VirtioIommuDevice::device_type() const { return VIRTIO_ID_IOMMU; }

std::uint32_t VirtioIommuDevice::serve(std::uint16_t queue, const Chain& chain,
                                       const memory::GuestMemory& memory) {
  if (queue != 0) {
    return 0;
  }
  return serve_from_copy(chain, memory, [this](std::span<const std::uint8_t> in,
                                               std::span<std::uint8_t> out) {
    return iommu_->handle(in, out);
  });
}

}  // namespace keel::virtio
