#include "api/json_text.hpp"

#include <set>
#include <vector>

namespace keel::api {
namespace {

// Thrown by the parser callback to stop parsing; caught in parse_json_text, never escapes it.
struct StopParsing {
  std::string reason;
};

// nlohmann's what() reads "[json.exception.parse_error.101] parse error at line 1, ...".
std::string strip_exception_id(const std::string& what) {
  if (!what.empty() && what.front() == '[') {
    const std::size_t close = what.find("] ");
    if (close != std::string::npos) {
      return what.substr(close + 2);
    }
  }
  return what;
}

}  // namespace

Result<nlohmann::json> parse_json_text(std::string_view text) {
  using Json = nlohmann::json;
  std::vector<std::set<std::string>> keys_seen;  // one set per open object
  auto check = [&keys_seen](int depth, Json::parse_event_t event, Json& parsed) {
    if (depth > kMaxJsonDepth) {
      throw StopParsing{"it nests deeper than " + std::to_string(kMaxJsonDepth) + " levels"};
    }
    switch (event) {
      case Json::parse_event_t::object_start:
        keys_seen.emplace_back();
        break;
      case Json::parse_event_t::object_end:
        if (!keys_seen.empty()) {
          keys_seen.pop_back();
        }
        break;
      case Json::parse_event_t::key:
        if (!keys_seen.empty() && parsed.is_string() &&
            !keys_seen.back().insert(parsed.get_ref<const std::string&>()).second) {
          throw StopParsing{"the key \"" + excerpt(parsed.get_ref<const std::string&>()) +
                            "\" appears twice in one object"};
        }
        break;
      default:
        break;
    }
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), check);
  } catch (const StopParsing& stop) {
    return Error::invalid("the body is not acceptable JSON: " + stop.reason);
  } catch (const Json::exception& e) {
    return Error::invalid("the body is not valid JSON: " +
                          excerpt(strip_exception_id(e.what()), 240) + "; send one JSON object");
  }
}

std::string dump_json(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string excerpt(std::string_view text, std::size_t max) {
  if (text.size() <= max) {
    return std::string(text);
  }
  return std::string(text.substr(0, max)) + "...";
}

std::string describe_json(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::object:
      return "an object";
    case nlohmann::json::value_t::array:
      return "an array";
    case nlohmann::json::value_t::string:
      return "the string " + excerpt(dump_json(value));
    case nlohmann::json::value_t::boolean:
      return value.get<bool>() ? "true" : "false";
    case nlohmann::json::value_t::null:
      return "null";
    case nlohmann::json::value_t::number_float:
      return "the number " + excerpt(dump_json(value));
    default:
      return dump_json(value);
  }
}

}  // namespace keel::api
