#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace keel::log {

enum class Level { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

// One key=value pair of a structured log line. Numbers and strings convert implicitly.
struct Field {
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const char* v) : key(k), value(v) {}
  Field(std::string_view k, const std::string& v) : key(k), value(v) {}
  Field(std::string_view k, bool v) : key(k), value(v ? "true" : "false") {}
  template <typename N>
    requires std::is_arithmetic_v<N>
  Field(std::string_view k, N v) : key(k), value(std::to_string(v)) {}

  std::string_view key;
  std::string value;
};

// The process-wide threshold: lines above it are dropped. Default kWarn (quiet); -v raises it.
// A threshold is the one piece of logging state that is naturally process-wide.
void set_level(Level level);
Level level();
bool enabled(Level level);

// Formats one logfmt line: `level=info component=vfio msg="container opened" avail=24`.
// Values with spaces, quotes or '=' are quoted and escaped. Exposed for tests.
std::string format(Level level, std::string_view component, std::string_view message,
                   std::initializer_list<Field> fields);

// Writes one line to stderr atomically (a single write) if `level` is enabled.
void write(Level level, std::string_view component, std::string_view message,
           std::initializer_list<Field> fields = {});

inline void error(std::string_view component, std::string_view message,
                  std::initializer_list<Field> fields = {}) {
  write(Level::kError, component, message, fields);
}
inline void warn(std::string_view component, std::string_view message,
                 std::initializer_list<Field> fields = {}) {
  write(Level::kWarn, component, message, fields);
}
inline void info(std::string_view component, std::string_view message,
                 std::initializer_list<Field> fields = {}) {
  write(Level::kInfo, component, message, fields);
}
inline void debug(std::string_view component, std::string_view message,
                  std::initializer_list<Field> fields = {}) {
  write(Level::kDebug, component, message, fields);
}

}  // namespace keel::log
