#include "api/json_object_reader.hpp"

#include <algorithm>

#include "api/json_text.hpp"

namespace keel::api {
namespace {

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    out += (out.empty() ? "" : ", ") + item;
  }
  return out;
}

}  // namespace

Status Unsupported::status() const {
  if (messages_.empty()) {
    return ok_status();
  }
  if (messages_.size() == 1) {
    return Error::invalid(messages_.front());
  }
  std::string all = std::to_string(messages_.size()) + " fields ask for what Keel does not support: ";
  for (std::size_t i = 0; i < messages_.size(); ++i) {
    all += (i == 0 ? "(" : "; (") + std::to_string(i + 1) + ") " + messages_[i];
  }
  return Error::invalid(std::move(all));
}

Result<JsonObjectReader> JsonObjectReader::open(const nlohmann::json& value, std::string path,
                                                std::string name, Unsupported* unsupported) {
  if (!value.is_object()) {
    const std::string where = path.empty() ? "the body" : path;
    return Error::invalid(where + ": expected a JSON object (" + name + "), got " +
                          describe_json(value));
  }
  return JsonObjectReader(value, std::move(path), std::move(name), unsupported);
}

std::string JsonObjectReader::path_of(std::string_view key) const {
  return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
}

const nlohmann::json* JsonObjectReader::take(std::string_view key, bool keel_field) {
  (keel_field ? keel_fields_ : other_fields_).emplace_back(key);
  const auto it = object_->find(key);
  if (it == object_->end() || it->is_null()) {
    return nullptr;
  }
  return &*it;
}

Error JsonObjectReader::type_error(std::string_view key, const nlohmann::json& found,
                                   std::string_view expected, std::string_view hint) const {
  return Error::invalid(path_of(key) + ": expected " + std::string(expected) + ", got " +
                        describe_json(found) + "; give " + std::string(hint));
}

Result<std::optional<std::string>> JsonObjectReader::string(std::string_view key,
                                                            std::string_view hint) {
  const nlohmann::json* v = take(key, true);
  if (v == nullptr) {
    return std::optional<std::string>();
  }
  if (!v->is_string()) {
    return type_error(key, *v, "a string", hint);
  }
  std::string text = v->get<std::string>();
  // A path with a NUL would be stored whole but opened cut short (another file); no field of
  // Keel's (paths, names, the command line) can hold one.
  if (text.find('\0') != std::string::npos) {
    return Error::invalid(path_of(key) + ": contains a NUL character (\\u0000), which no path, "
                          "name or command line may hold; remove it");
  }
  return std::optional<std::string>(std::move(text));
}

Result<std::optional<bool>> JsonObjectReader::boolean(std::string_view key, std::string_view hint) {
  const nlohmann::json* v = take(key, true);
  if (v == nullptr) {
    return std::optional<bool>();
  }
  if (!v->is_boolean()) {
    return type_error(key, *v, "true or false", hint);
  }
  return std::optional<bool>(v->get<bool>());
}

Result<std::optional<std::uint64_t>> JsonObjectReader::unsigned_integer(std::string_view key,
                                                                        std::string_view hint) {
  const nlohmann::json* v = take(key, true);
  if (v == nullptr) {
    return std::optional<std::uint64_t>();
  }
  if (v->is_number_unsigned()) {
    return std::optional<std::uint64_t>(v->get<std::uint64_t>());
  }
  if (v->is_number_integer()) {  // parsed text is signed only when negative; built JSON may not be
    const std::int64_t signed_value = v->get<std::int64_t>();
    if (signed_value >= 0) {
      return std::optional<std::uint64_t>(static_cast<std::uint64_t>(signed_value));
    }
    return Error::invalid(path_of(key) + ": " + dump_json(*v) + " is negative; give " +
                          std::string(hint));
  }
  // Floats include integers too large for 64 bits ("1e20", "18446744073709551616").
  return type_error(key, *v, "an unsigned 64-bit integer", hint);
}

const nlohmann::json* JsonObjectReader::value(std::string_view key) { return take(key, true); }

void JsonObjectReader::accept_if(std::string_view key, Predicate neutral, std::string_view what,
                                 std::string_view fix) {
  const nlohmann::json* v = take(key, false);
  if (v == nullptr || neutral(*v)) {
    return;
  }
  unsupported(key, describe_json(*v) + " asks for " + std::string(what) +
                       ", which Keel does not support; " + std::string(fix));
}

void JsonObjectReader::unsupported(std::string_view key, std::string message) {
  sink().add(path_of(key) + ": " + message);
}

void JsonObjectReader::ignore(std::string_view key) { other_fields_.emplace_back(key); }

Status JsonObjectReader::finish() const {
  for (const auto& [key, unused] : object_->items()) {
    const bool read =
        std::find(keel_fields_.begin(), keel_fields_.end(), key) != keel_fields_.end() ||
        std::find(other_fields_.begin(), other_fields_.end(), key) != other_fields_.end();
    if (!read) {
      return Error::invalid(
          path_of(excerpt(key)) + ": unknown field; " + name_ + " takes " + join(keel_fields_) +
          (other_fields_.empty() ? std::string()
                                 : " (and, from cloud-hypervisor, " + join(other_fields_) + ")"));
    }
  }
  return shared_ != nullptr ? ok_status() : own_.status();
}

bool is_false(const nlohmann::json& value) { return value.is_boolean() && !value.get<bool>(); }
bool is_true(const nlohmann::json& value) { return value.is_boolean() && value.get<bool>(); }
bool is_zero(const nlohmann::json& value) {
  return value.is_number_integer() && value.get<std::int64_t>() == 0;
}
bool is_empty_array(const nlohmann::json& value) { return value.is_array() && value.empty(); }
bool is_never(const nlohmann::json& /*value*/) { return false; }

bool is_all_false_object(const nlohmann::json& value) {
  if (!value.is_object()) {
    return false;
  }
  return std::all_of(value.begin(), value.end(),
                     [](const nlohmann::json& member) { return is_false(member); });
}

bool is_console_off(const nlohmann::json& value) {
  if (!value.is_object()) {
    return false;
  }
  for (const auto& [key, member] : value.items()) {
    if (key == "mode") {
      if (member != "Off") {
        return false;
      }
    } else if (!member.is_null() && !(key == "iommu" && is_false(member))) {
      return false;
    }
  }
  return value.contains("mode");
}

}  // namespace keel::api
