#pragma once

#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <yaml-cpp/yaml.h>
#include <nlohmann/json.hpp>

namespace keel::api::test {

// Checks JSON against api/openapi.yaml. It implements exactly the part of OpenAPI 3.0 and JSON
// Schema that the file uses: $ref (to components), type (object, array, string, integer,
// boolean, number), properties, required, additionalProperties (false or a schema), items,
// enum, nullable, minimum and format int64; description, default and other annotations are
// skipped. Any other keyword is reported as a problem, so the file cannot use a rule this
// validator would silently ignore.
class OpenApiValidator {
 public:
  // Loads the YAML file; `load_error()` says what went wrong, if anything.
  explicit OpenApiValidator(const std::string& path);
  const std::string& load_error() const { return load_error_; }

  // Every (path, method) the file documents: ("/vm.boot", "put").
  std::vector<std::pair<std::string, std::string>> operations() const;

  // Problems with an answer to `method` on `path` ("/vm.info", "get"): the status must be
  // documented for the operation, a response with content must carry JSON that validates
  // against its schema, one without content an empty body. Empty: valid.
  std::vector<std::string> check_response(const std::string& path, const std::string& method,
                                          unsigned status, const std::string& body) const;
  // Problems with `value` against components/schemas/<name>.
  std::vector<std::string> check_schema(const std::string& name, const nlohmann::json& value) const;

 private:
  YAML::Node resolve(const YAML::Node& node, std::vector<std::string>& problems) const;
  void check(const YAML::Node& schema, const nlohmann::json& value, const std::string& where,
             std::vector<std::string>& problems) const;

  YAML::Node root_;
  std::string load_error_;
};

// "put" for "PUT": the spec's methods are lower case, the route table's upper.
inline std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return out;
}

}  // namespace keel::api::test
