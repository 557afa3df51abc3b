#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "devices/vfio/dma_report.hpp"

namespace keel::vmm {

// --event-monitor path=FILE|fd=N: one JSON object per line for each thing that happens to the
// VMM, the VM and its DMA budget, in cloud-hypervisor's shape:
//   {"timestamp":{"secs":S,"nanos":N},"source":"vm","event":"device-added","properties":{...}}
// The timestamp counts from keel's start. Thread-safe; writes never block (fd=N is made
// non-blocking): a reader that is not keeping up loses events, one that went away stops the
// monitor, and the VM is never held up by either.
class EventMonitor {
 public:
  // "path=FILE" (created or truncated, mode 0600) or "fd=N" (an open file, socket or pipe of the
  // caller's; keel takes it over).
  static Result<std::unique_ptr<EventMonitor>> open(const std::string& spec);

  void emit(std::string_view source, std::string_view event,
            const nlohmann::json& properties = nullptr);

 private:
  explicit EventMonitor(UniqueFd fd) : fd_(std::move(fd)) {}

  UniqueFd fd_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::mutex mutex_;
  bool failed_ = false;
  std::uint64_t dropped_ = 0;
};

// Where parts of the VM (on any thread) send events: the Vmm's monitor, if any.
using EventSink =
    std::function<void(std::string_view source, std::string_view event, const nlohmann::json&)>;

// What an event says of one container's budget: its devices, the kernel's numbers and Keel's.
nlohmann::json dma_event_properties(const vfio::DmaReport& report);

}  // namespace keel::vmm
