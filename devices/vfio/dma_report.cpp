#include "devices/vfio/dma_report.hpp"

#include <utility>

#include "base/hex.hpp"
#include "base/log.hpp"

namespace keel::vfio {
namespace {

constexpr const char* kMessage = "DMA budget";

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    out += (out.empty() ? "" : ",") + item;
  }
  return out.empty() ? "none" : out;
}

// Calls `sink` with the report's fields, so the line is built in one place for both uses.
template <typename Sink>
auto with_fields(const DmaReport& r, Sink&& sink) {
  const std::string consistent = r.consistent ? (*r.consistent ? "true" : "false") : "unknown";
  return std::forward<Sink>(sink)(std::initializer_list<log::Field>{
      {"devices", join(r.devices)},
      {"backend", r.backend},
      {"avail_at_open", r.avail_at_open.describe()},
      {"source", to_string(r.avail_at_open.source)},
      {"binding_limit", r.binding_limit},
      {"planned_entries", r.planned_entries},
      {"mode", to_string(r.mode)},
      {"requested_mode", to_string(r.requested_mode)},
      {"reason", r.reason},
      {"avail_now", r.avail_now ? r.avail_now->describe() : std::string("unknown")},
      {"entries_used", r.entries_used},
      {"consistent", consistent},
      {"mapped_bytes", r.mapped_bytes},
      {"peak_entries", r.peak_entries},
      {"failed_maps", r.failed_maps.total()},
      {"failed_enospc", r.failed_maps.budget},
      {"failed_enomem", r.failed_maps.memlock},
      {"failed_eexist", r.failed_maps.overlap},
      {"failed_einval", r.failed_maps.outside_iova},
      {"low_water", r.lazy ? std::to_string(r.lazy->low_water) : std::string("none")},
      {"refused_budget", r.lazy ? r.lazy->counters.refused_budget : 0},
      {"refused_reserve", r.lazy ? r.lazy->counters.refused_reserve : 0},
      {"refused_invalid", r.lazy ? r.lazy->counters.refused_invalid : 0},
      {"iova_ranges", format_iova_ranges(r.iova_ranges)},
      {"unmap_all", r.unmap_all_supported},
      {"backend_reason", r.backend_reason},
  });
}

}  // namespace

std::string format_iova_ranges(const std::vector<IovaRange>& ranges) {
  std::vector<std::string> items;
  items.reserve(ranges.size());
  for (const auto& range : ranges) {
    items.push_back(hex(range.start) + "-" + hex(range.last));
  }
  return join(items);
}

std::string format_dma_report(const DmaReport& report) {
  std::string line = with_fields(report, [](std::initializer_list<log::Field> fields) {
    return log::format(log::Level::kInfo, "vfio", kMessage, fields);
  });
  if (!line.empty() && line.back() == '\n') {
    line.pop_back();
  }
  return line;
}

void log_dma_report(const DmaReport& report) {
  with_fields(report, [](std::initializer_list<log::Field> fields) {
    log::write(log::Level::kInfo, "vfio", kMessage, fields);
  });
}

}  // namespace keel::vfio
