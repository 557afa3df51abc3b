#include "base/size.hpp"

#include <cctype>
#include <cstdio>
#include <limits>

namespace keel {

Result<std::uint64_t> parse_size(std::string_view text) {
  const std::string quoted = "size \"" + std::string(text) + "\"";
  std::size_t i = 0;
  std::uint64_t number = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) != 0) {
    const std::uint64_t digit = static_cast<std::uint64_t>(text[i] - '0');
    if (number > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) {
      return Error::invalid(quoted + " is too large");
    }
    number = number * 10 + digit;
    ++i;
  }
  if (i == 0) {
    return Error::invalid(quoted + " must start with a number (e.g. 512M, 2G)");
  }
  std::string_view suffix = text.substr(i);
  std::uint64_t unit = 1;
  if (!suffix.empty()) {
    switch (std::toupper(static_cast<unsigned char>(suffix[0]))) {
      case 'K':
        unit = kKiB;
        break;
      case 'M':
        unit = kMiB;
        break;
      case 'G':
        unit = kGiB;
        break;
      case 'T':
        unit = kGiB * 1024;
        break;
      case 'B':
        unit = 1;
        break;
      default:
        return Error::invalid(quoted + " has an unknown unit; use K, M, G or T");
    }
    std::string_view rest = suffix.substr(1);
    if (unit != 1 && (rest == "iB" || rest == "B" || rest == "ib" || rest == "b")) {
      rest = {};
    }
    if (!rest.empty()) {
      return Error::invalid(quoted + " has an unknown unit; use K, M, G or T");
    }
  }
  if (number > std::numeric_limits<std::uint64_t>::max() / unit) {
    return Error::invalid(quoted + " is too large");
  }
  return number * unit;
}

std::string format_size(std::uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  std::uint64_t whole = bytes;
  std::uint64_t divisor = 1;
  while (whole >= 1024 && unit < 4) {
    whole /= 1024;
    divisor *= 1024;
    ++unit;
  }
  if (unit == 0) {
    return std::to_string(bytes) + " B";
  }
  if (bytes % divisor == 0) {
    return std::to_string(whole) + " " + kUnits[unit];
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", static_cast<double>(bytes) / static_cast<double>(divisor),
                kUnits[unit]);
  return buf;
}

}  // namespace keel
