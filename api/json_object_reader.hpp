#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.hpp"

namespace keel::api {

// The fields of one request that ask for what Keel lacks, gathered so that one answer names
// them all: a client learns everything it must change from its first try.
class Unsupported {
 public:
  void add(std::string message) { messages_.push_back(std::move(message)); }
  bool empty() const { return messages_.empty(); }
  // OK when there are none; else EINVAL with the one message, or "N fields ask for what Keel
  // does not support: (1) ...; (2) ...".
  Status status() const;

 private:
  std::vector<std::string> messages_;
};

// Reads one JSON object field by field, with messages that name the field's full path
// ("devices[1].dma_mapping"), the value found and what to give instead, and refuses every field
// nobody read, as serde's deny_unknown_fields does. Absent and null fields read the same: "not
// set" (a null `initramfs` means no initramfs). Borrows the object: it must outlive the reader.
class JsonObjectReader {
 public:
  // `path` is the object's place in the body ("" for the body itself, "memory", "devices[0]");
  // `name` names the object in messages ("VmConfig"). EINVAL unless `value` is an object.
  // `unsupported`, when given, gathers what the object asks for that Keel lacks, for the
  // caller to report with the rest of the request's (it must outlive the reader); otherwise
  // finish() reports the object's own.
  static Result<JsonObjectReader> open(const nlohmann::json& value, std::string path,
                                       std::string name, Unsupported* unsupported = nullptr);

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
  // `neutral` holds for its value (it then asks for nothing Keel lacks); otherwise recorded as
  // unsupported: "<path>: <value> asks for <what>, which Keel does not support; <fix>".
  using Predicate = bool (*)(const nlohmann::json&);
  void accept_if(std::string_view key, Predicate neutral, std::string_view what,
                 std::string_view fix);
  // Records that field `key` (already read) asks for what Keel lacks: "<path>: <message>".
  void unsupported(std::string_view key, std::string message);
  // A cloud-hypervisor field accepted with any value and ignored.
  void ignore(std::string_view key);

  // EINVAL naming the first field that no call above read, and the fields this object takes;
  // then, without a shared Unsupported, EINVAL listing what the object asks for that Keel lacks.
  Status finish() const;

  // "memory.size" for key "size" of "memory"; "cpus" for key "cpus" of the body.
  std::string path_of(std::string_view key) const;

 private:
  JsonObjectReader(const nlohmann::json& object, std::string path, std::string name,
                   Unsupported* shared)
      : object_(&object), path_(std::move(path)), name_(std::move(name)), shared_(shared) {}
  Unsupported& sink() { return shared_ != nullptr ? *shared_ : own_; }

  // Records `key` as read; the value, or nullptr when absent or null.
  const nlohmann::json* take(std::string_view key, bool keel_field);
  Error type_error(std::string_view key, const nlohmann::json& found, std::string_view expected,
                   std::string_view hint) const;

  const nlohmann::json* object_;
  std::string path_;
  std::string name_;
  std::vector<std::string> keel_fields_;   // read by string/boolean/unsigned_integer/value
  std::vector<std::string> other_fields_;  // cloud-hypervisor fields: accept_if/ignore
  Unsupported* shared_;  // the request's, or null: own_
  Unsupported own_;
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
