#include "openapi_validator.hpp"

#include <cstdint>
#include <limits>
#include <set>

namespace keel::api::test {
namespace {

const std::set<std::string> kKeywords = {
    "$ref",  "type", "properties", "required", "additionalProperties",
    "items", "enum", "nullable",   "minimum",  "format"};
const std::set<std::string> kAnnotations = {"description", "default", "example", "deprecated",
                                            "title"};

bool has_type(const nlohmann::json& value, const std::string& type) {
  return (type == "object" && value.is_object()) || (type == "array" && value.is_array()) ||
         (type == "string" && value.is_string()) ||
         (type == "integer" && value.is_number_integer()) ||
         (type == "number" && value.is_number()) || (type == "boolean" && value.is_boolean());
}

}  // namespace

OpenApiValidator::OpenApiValidator(const std::string& path) {
  try {
    root_ = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    load_error_ = path + ": " + e.what();
    return;
  }
  if (!root_["paths"].IsMap() || !root_["components"]["schemas"].IsMap()) {
    load_error_ = path + ": no paths or components/schemas";
  }
}

std::vector<std::pair<std::string, std::string>> OpenApiValidator::operations() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& path : root_["paths"]) {
    for (const auto& method : path.second) {
      out.emplace_back(path.first.as<std::string>(), method.first.as<std::string>());
    }
  }
  return out;
}

YAML::Node OpenApiValidator::resolve(const YAML::Node& node,
                                     std::vector<std::string>& problems) const {
  YAML::Node current = node;
  for (int hops = 0; current.IsMap() && current["$ref"]; ++hops) {
    if (hops > 8 || current.size() != 1) {
      problems.push_back("$ref with siblings or a loop");
      return YAML::Node();
    }
    const std::string ref = current["$ref"].as<std::string>();
    const std::string prefix = "#/components/";
    if (ref.rfind(prefix, 0) != 0) {
      problems.push_back("unsupported $ref " + ref);
      return YAML::Node();
    }
    const std::string rest = ref.substr(prefix.size());
    const std::size_t slash = rest.find('/');
    YAML::Node target = root_["components"][rest.substr(0, slash)][rest.substr(slash + 1)];
    if (!target) {
      problems.push_back("dangling $ref " + ref);
      return YAML::Node();
    }
    current = target;
  }
  return current;
}

void OpenApiValidator::check(const YAML::Node& raw, const nlohmann::json& value,
                             const std::string& where, std::vector<std::string>& problems) const {
  const YAML::Node schema = resolve(raw, problems);
  if (!schema.IsMap()) {
    problems.push_back(where + ": schema is not a map");
    return;
  }
  for (const auto& entry : schema) {
    const std::string key = entry.first.as<std::string>();
    if (kKeywords.count(key) == 0 && kAnnotations.count(key) == 0) {
      std::string problem = where;
      problem += ": the validator does not implement keyword ";
      problem += key;
      problems.push_back(std::move(problem));
    }
  }
  if (value.is_null()) {
    if (!(schema["nullable"] && schema["nullable"].as<bool>())) {
      problems.push_back(where + ": null, and the schema is not nullable");
    }
    return;
  }
  if (schema["type"]) {
    const std::string type = schema["type"].as<std::string>();
    if (!has_type(value, type)) {
      problems.push_back(where + ": expected " + type + ", got " + value.dump());
      return;
    }
  }
  if (schema["format"] && schema["format"].as<std::string>() == "int64" &&
      value.is_number_unsigned() &&
      value.get<std::uint64_t>() >
          static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    problems.push_back(where + ": " + value.dump() + " does not fit int64");
  }
  if (schema["minimum"] && value.is_number() &&
      value.get<double>() < schema["minimum"].as<double>()) {
    problems.push_back(where + ": " + value.dump() + " is below the minimum");
  }
  if (schema["enum"]) {
    bool found = false;
    for (const auto& option : schema["enum"]) {
      found = found || (value.is_string() && value.get<std::string>() == option.as<std::string>());
    }
    if (!found) {
      problems.push_back(where + ": " + value.dump() + " is not in the enum");
    }
  }
  if (value.is_object()) {
    if (schema["required"]) {
      for (const auto& name : schema["required"]) {
        if (!value.contains(name.as<std::string>())) {
          problems.push_back(where + ": required property " + name.as<std::string>() +
                             " is missing");
        }
      }
    }
    const YAML::Node properties = schema["properties"];
    const YAML::Node additional = schema["additionalProperties"];
    for (const auto& [key, member] : value.items()) {
      std::string at = where;
      at += ".";
      at += key;
      if (properties && properties[key]) {
        check(properties[key], member, at, problems);
      } else if (additional && additional.IsScalar()) {
        if (!additional.as<bool>()) {
          problems.push_back(at + ": not a documented property (additionalProperties: false)");
        }
      } else if (additional && additional.IsMap()) {
        check(additional, member, at, problems);
      }
    }
  }
  if (value.is_array() && schema["items"]) {
    for (std::size_t i = 0; i < value.size(); ++i) {
      check(schema["items"], value[i], where + "[" + std::to_string(i) + "]", problems);
    }
  }
}

std::vector<std::string> OpenApiValidator::check_schema(const std::string& name,
                                                        const nlohmann::json& value) const {
  std::vector<std::string> problems;
  const YAML::Node schema = root_["components"]["schemas"][name];
  if (!schema) {
    return {"no schema " + name};
  }
  check(schema, value, name, problems);
  return problems;
}

std::vector<std::string> OpenApiValidator::check_response(const std::string& path,
                                                          const std::string& method,
                                                          unsigned status,
                                                          const std::string& body) const {
  std::vector<std::string> problems;
  const std::string where = method + " " + path + " " + std::to_string(status);
  // yaml-cpp throws when indexing into a missing node: look each level up on its own.
  const YAML::Node item = root_["paths"][path];
  if (!item || !item.IsMap() || !item[method] || !item[method]["responses"].IsMap()) {
    return {where + ": operation not documented"};
  }
  const YAML::Node documented = item[method]["responses"][std::to_string(status)];
  if (!documented) {
    return {where + ": status not documented"};
  }
  const YAML::Node response = resolve(documented, problems);
  const YAML::Node content = response["content"];
  if (!content) {
    if (!body.empty()) {
      problems.push_back(where + ": documented without content, but the body is " + body);
    }
    return problems;
  }
  const YAML::Node schema = content["application/json"]["schema"];
  if (!schema) {
    return {where + ": content without an application/json schema"};
  }
  nlohmann::json value = nlohmann::json::parse(body, nullptr, false);
  if (value.is_discarded()) {
    return {where + ": the body is not JSON: " + body};
  }
  check(schema, value, where, problems);
  return problems;
}

}  // namespace keel::api::test
