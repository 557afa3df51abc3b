#pragma once

#include <string_view>

#include "base/result.hpp"

namespace keel::vfio {

// How guest RAM is mapped for a passthrough device's DMA (DESIGN.md §4): everything up front
// (eager), what the guest's IOMMU driver asks for (lazy), or eager when the plan fits (auto).
enum class MappingMode { kAuto, kEager, kLazy };

std::string_view to_string(MappingMode mode);  // "auto", "eager" or "lazy"
// The one parser of a mode, for the command line and the API alike.
Result<MappingMode> parse_mapping_mode(std::string_view text);

}  // namespace keel::vfio
