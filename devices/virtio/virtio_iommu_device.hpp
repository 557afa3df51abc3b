#pragma once

#include <memory>

#include "devices/virtio/virtio_device.hpp"
#include "devices/virtio/virtio_iommu.hpp"

namespace keel::virtio {

// The virtio-iommu device (virtio_iommu.hpp) as the PCI transport drives it: device type 23,
// the request queue (0), whose requests it answers, and the event queue (1), whose buffers it
// keeps: Keel reports no faults to the guest (a blocked DMA is the host IOMMU's to log).
class VirtioIommuDevice final : public VirtioDevice {
 public:
  static constexpr std::uint16_t kQueueSize = 256;

  explicit VirtioIommuDevice(std::unique_ptr<VirtioIommu> iommu) : iommu_(std::move(iommu)) {}

  VirtioIommu& iommu() { return *iommu_; }

  std::uint32_t device_type() const override;
  std::uint64_t device_features() const override { return iommu_->device_features(); }
  std::uint16_t num_queues() const override { return 2; }
  std::uint16_t queue_max_size(std::uint16_t) const override { return kQueueSize; }
  void read_config(std::uint64_t offset, std::span<std::uint8_t> data) const override {
    iommu_->read_config(offset, data);
  }
  void write_config(std::uint64_t offset, std::span<const std::uint8_t> data) override {
    iommu_->write_config(offset, data);
  }
  bool consumes(std::uint16_t queue) const override { return queue == 0; }
  std::uint32_t serve(std::uint16_t queue, const Chain& chain,
                      const memory::GuestMemory& memory) override;
  void reset() override { iommu_->reset(); }

 private:
  std::unique_ptr<VirtioIommu> iommu_;
};

}  // namespace keel::virtio
