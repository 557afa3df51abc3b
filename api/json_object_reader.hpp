#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.hpp"

namespace keel::api {

// Reads one JSON object field by field, with messages that name the field's full path
// ("devices[1].dma_mapping"), the value found and what to give instead, and refuses every field
// nobody read, as serde's deny_unknown_fields does. Absent and null fields read the same: "not
// set" (a null `initramfs` means no initramfs). Borrows the object: it must outlive the reader.
class JsonObjectReader {
 public:
  // `path` is the object's place in the body ("" for the body itself, "memory", "devices[0]");
  // `name` names the object in messages ("VmConfig"). EINVAL unless `value` is an object.
  static Result<JsonObjectReader> open(const nlohmann::json& value, std::string path,
                                       std::string name);

  // Each returns nullopt when the field is absent or null, EINVAL when it has another type (or,
  // for a string, holds a NUL character).
  // `hint` says what a good value looks like: "the path of a bzImage, e.g. /boot/vmlinuz".
  Result<std::optional<std::string>> string(std::string_view key, std::string_view hint);
  Result<std::optional<bool>> boolean(std::string_view key, std::string_view hint);
  Result<std::optional<std::uint64_t>> unsigned_integer(std::string_view key,
                                                        std::string_view hint);
  // The field's value for the caller to read itself, or nullptr when absent or null.
  const nlohmann::json* value(std::string_view key);

  // A cloud-hypervisor field Keel does not implement. Accepted when absent, null, or when
  // `neutral` holds for its value (it then asks for nothing Keel lacks); otherwise EINVAL:
  // "<path>: <value> asks for <what>, which Keel does not support; <fix>".
  using Predicate = bool (*)(const nlohmann::json&);
  Status accept_if(std::string_view key, Predicate neutral, std::string_view what,
                   std::string_view fix);
  // A cloud-hypervisor field accepted with any value and ignored.
  void ignore(std::string_view key);

  // EINVAL naming the first field that no call above read, and the fields this object takes.
  Status finish() const;

  // "memory.size" for key "size" of "memory"; "cpus" for key "cpus" of the body.
  std::string path_of(std::string_view key) const;

 private:
  JsonObjectReader(const nlohmann::json& object, std::string path, std::string name)
      : object_(&object), path_(std::move(path)), name_(std::move(name)) {}

  // Records `key` as read; the value, or nullptr when absent or null.
  const nlohmann::json* take(std::string_view key, bool keel_field);
  Error type_error(std::string_view key, const nlohmann::json& found, std::string_view expected,
                   std::string_view hint) const;

  const nlohmann::json* object_;
  std::string path_;
  std::string name_;
  std::vector<std::string> keel_fields_;   // read by string/boolean/unsigned_integer/value
  std::vector<std::string> other_fields_;  // cloud-hypervisor fields: accept_if/ignore
};

// Predicates for accept_if.
bool is_false(const nlohmann::json& value);
bool is_true(const nlohmann::json& value);
bool is_zero(const nlohmann::json& value);
bool is_empty_array(const nlohmann::json& value);
bool is_never(const nlohmann::json& value);  // only absence or null is neutral
// An object whose members are all false (cpus.features: {"amx": false}).
bool is_all_false_object(const nlohmann::json& value);
// A console that is off: {"mode": "Off"} and nothing else set.
bool is_console_off(const nlohmann::json& value);

}  // namespace keel::api
