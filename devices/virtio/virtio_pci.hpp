#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/event_fd.hpp"
#include "base/result.hpp"
#include "devices/pci/config_space.hpp"
#include "devices/pci/msix.hpp"
#include "devices/pci/pci_device.hpp"
#include "devices/pci/platform.hpp"
#include "devices/virtio/queue_worker.hpp"
#include "devices/virtio/virtio_device.hpp"
#include "devices/virtio/virtqueue.hpp"
#include "memory/guest_memory.hpp"

namespace keel::virtio {

// Where the transport's registers sit in its one memory BAR (BAR 0, 64-bit, kBarSize bytes).
namespace pci_layout {
inline constexpr std::uint64_t kBarSize = 0x8000;
inline constexpr std::uint64_t kCommon = 0x0000;  // struct virtio_pci_common_cfg
inline constexpr std::uint64_t kIsr = 0x1000;     // one byte, read-to-clear
inline constexpr std::uint64_t kDevice = 0x2000;  // the device's config space (4 KiB)
inline constexpr std::uint64_t kNotify = 0x3000;  // 4 bytes per queue
inline constexpr std::uint64_t kMsixTable = 0x4000;
inline constexpr std::uint64_t kMsixPba = 0x5000;
inline constexpr std::uint32_t kNotifyMultiplier = 4;
}  // namespace pci_layout

// A virtio device on Keel's PCI root through the modern virtio-pci transport (virtio 1.2 §4.1):
// vendor 0x1af4, device 0x1040 + type, the vendor capabilities (common, notify, ISR, device and
// PCI-configuration-access), MSI-X with one vector per queue plus one for configuration changes.
// There is no INTx (interrupt pin 0): a driver that cannot use MSI-X gets no interrupts, which
// Linux's virtio-pci then reports as a probe failure.
//
// Driver notifications (writes to the notify area) reach the device as virtio_device.hpp says:
// an inline device's available chains are checked (virtqueue.hpp) and served on the notifying
// vCPU thread; a device that uses workers has each queue's notify address signal that queue's
// worker through a KVM ioeventfd (or, without one, the transport signals it), and the worker
// pops, serves and returns chains. Either way a malformed chain is returned with used length 0
// and counted, an inconsistent ring sets DEVICE_NEEDS_RESET, and a queue's vector is signalled
// through a KVM irqfd. A device reset waits for requests being served to finish, so no request
// touches guest memory after the driver reset the device. One mutex guards the transport and
// the rings; with_device() runs code under it.
class VirtioPciDevice : public pci::PciDevice,
                        public std::enable_shared_from_this<VirtioPciDevice> {
 public:
  // Takes the device over and assigns BAR 0 in the platform's 64-bit window; the caller then
  // plugs the transport into a slot (Platform::plug). The platform and memory outlive it. A
  // device that uses workers gets its queue threads here; each runs `thread_start` first.
  static Result<std::shared_ptr<VirtioPciDevice>> create(
      std::unique_ptr<VirtioDevice> device, const memory::GuestMemory& memory,
      pci::Platform& platform, const QueueWorker::ThreadStart& thread_start = {});
  ~VirtioPciDevice() override;
  VirtioPciDevice(const VirtioPciDevice&) = delete;
  VirtioPciDevice& operator=(const VirtioPciDevice&) = delete;

  void read_config(std::uint16_t offset, std::span<std::uint8_t> data) override;
  void write_config(std::uint16_t offset, std::span<const std::uint8_t> data) override;

  // BAR 0 accesses; offsets are into the BAR. Public for the bus window that forwards them.
  void bar_read(std::uint64_t offset, std::span<std::uint8_t> data);
  void bar_write(std::uint64_t offset, std::span<const std::uint8_t> data);

  template <typename F>
  auto with_device(F&& f) {
    std::lock_guard lock(mutex_);
    return f(*device_);
  }
  // Runs `f` on the device, then tells the driver its configuration changed (a new generation,
  // the ISR's config bit, the config vector), as one step under the transport's lock.
  template <typename F>
  auto change_config(F&& f) {
    std::lock_guard lock(mutex_);
    auto result = f(*device_);
    config_changed();
    return result;
  }

  // notifications, chains_handled, chains_refused, interrupts, interrupts_pending, resets,
  // needs_reset, ignored_accesses, guest_warnings (the first 10 are logged).
  std::map<std::string, std::uint64_t> counters() const;
  std::uint8_t device_status() const;
  // Where Keel placed BAR 0 (the guest may move it).
  std::uint64_t bar_address() const { return bar_address_; }

 private:
  struct Queue {
    Virtqueue ring;
    std::uint16_t vector = 0xffff;  // VIRTIO_MSI_NO_VECTOR
    // Devices that use workers: the queue's thread. A device served elsewhere (vhost-user): the
    // thread that turns the back end's call eventfd (its kick_fd) into the queue's interrupt.
    std::unique_ptr<QueueWorker> worker;
    bool serving = false;                 // the worker has popped chains it has not returned
    std::unique_ptr<EventFd> kick;        // a device served elsewhere: what notifications signal
  };

  VirtioPciDevice(std::unique_ptr<VirtioDevice> device, const memory::GuestMemory& memory,
                  pci::Platform& platform, std::uint64_t bar_address);
  void build_config_space();

  // Under mutex_.
  void common_read(std::uint64_t offset, std::span<std::uint8_t> data);
  void common_write(std::uint64_t offset, std::span<const std::uint8_t> data);
  void notify(std::uint16_t queue);
  // The eventfd a queue's notify address signals inside the kernel (-1: none; the notification
  // then exits to notify()).
  int notify_fd(const Queue& q) const;
  // A device served elsewhere: hands the enabled queues over (DRIVER_OK).
  void start_external();
  bool takes_requests(std::uint16_t queue) const;
  void refused(std::uint16_t queue, const Popped& popped);
  void io_events(std::uint64_t bar, bool add);
  void set_status(std::uint8_t status);
  std::uint64_t offered_features() const;
  void reset_device();
  void needs_reset(const std::string& why);
  void config_changed();
  void msix_changed(const pci::MsixTable::Change& change);
  void signal(std::uint16_t vector);
  void update_bar();
  void bar_access(std::uint64_t offset, std::span<std::uint8_t> read_into,
                  std::span<const std::uint8_t> write_from);
  void pci_cfg_access(bool write, std::span<std::uint8_t> data);

  // On a queue's worker thread: serves what the driver made available, in batches (one chain
  // at a time, while there is input, for a queue with a source). Returns whether the worker
  // should keep watching the queue's source.
  bool serve_queue(std::uint16_t queue);
  // On a queue's interrupt thread (a device served elsewhere): the back end signalled its call
  // eventfd.
  bool external_interrupt(std::uint16_t queue);

  std::unique_ptr<VirtioDevice> device_;
  const memory::GuestMemory& memory_;
  pci::Platform& platform_;
  const std::uint64_t bar_address_;
  mutable std::mutex mutex_;
  std::condition_variable_any idle_;  // a worker returned its chains
  bool resetting_ = false;            // a reset waits for the chains in flight
  pci::PciConfigSpace config_;
  std::uint16_t msix_cap_ = 0, pci_cfg_cap_ = 0;
  std::optional<std::uint64_t> registered_;  // bus base of BAR 0 while decoded

  std::uint32_t device_feature_select_ = 0, driver_feature_select_ = 0;
  std::uint64_t driver_features_ = 0;
  std::uint8_t status_ = 0;
  std::uint8_t isr_ = 0;
  std::uint8_t config_generation_ = 0;
  std::uint16_t msix_config_ = 0xffff;
  std::uint16_t queue_select_ = 0;
  std::vector<Queue> queues_;
  pci::MsixTable msix_;  // one vector per queue, then one for configuration changes

  std::uint64_t notifications_ = 0, chains_handled_ = 0, chains_refused_ = 0, interrupts_ = 0,
                pending_ = 0, resets_ = 0, needs_reset_ = 0, ignored_accesses_ = 0,
                guest_warnings_ = 0;
};

}  // namespace keel::virtio
