#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/result.hpp"

namespace keel::api {

// Deeper than any request Keel takes (VmConfig nests four levels); bounds the parser's work.
inline constexpr int kMaxJsonDepth = 32;

// Parses a request body strictly: invalid JSON (with its line and column), a key given twice in
// one object (serde refuses those; nlohmann would keep the last silently) and nesting deeper
// than kMaxJsonDepth are EINVAL errors. Never throws.
Result<nlohmann::json> parse_json_text(std::string_view text);

// Serialises a response body. Never throws: bytes that are not UTF-8 (an echoed path, say)
// become U+FFFD instead of a type_error.
std::string dump_json(const nlohmann::json& value);

// `text` cut to at most `max` bytes with "..." appended when cut, for quoting user input in
// messages without echoing a megabyte back.
std::string excerpt(std::string_view text, std::size_t max = 64);

// A JSON value for a message: `"512M"`, `-1`, `true`, `null`, `an object`, `an array`.
std::string describe_json(const nlohmann::json& value);

}  // namespace keel::api
