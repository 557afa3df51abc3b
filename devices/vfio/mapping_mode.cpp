#include "devices/vfio/mapping_mode.hpp"

#include <string>

namespace keel::vfio {

std::string_view to_string(MappingMode mode) {
  switch (mode) {
    case MappingMode::kAuto:
      return "auto";
    case MappingMode::kEager:
      return "eager";
    case MappingMode::kLazy:
      return "lazy";
  }
  return "unknown";
}

Result<MappingMode> parse_mapping_mode(std::string_view text) {
  if (text == "auto") {
    return MappingMode::kAuto;
  }
  if (text == "eager") {
    return MappingMode::kEager;
  }
  if (text == "lazy") {
    return MappingMode::kLazy;
  }
  return Error::invalid("'" + std::string(text.substr(0, 64)) +
                        "' is not a DMA mapping mode; give auto, eager or lazy");
}

}  // namespace keel::vfio
