// openapi_check PATH METHOD STATUS < BODY: checks one answer of the API against api/openapi.yaml
// (the same validator as openapi_test) and prints each problem; exits 1 when there is one.
// tests/integration/testbed_api.sh runs it on the answers keel gave in the emulated host.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <string>

#include "openapi_validator.hpp"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s PATH METHOD STATUS < BODY   (e.g. /vm.info get 200)\n", argv[0]);
    return 2;
  }
  const keel::api::test::OpenApiValidator spec(KEEL_OPENAPI_YAML);
  if (!spec.load_error().empty()) {
    std::fprintf(stderr, "openapi_check: %s\n", spec.load_error().c_str());
    return 2;
  }
  const std::string body{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
  const auto status = static_cast<unsigned>(std::strtoul(argv[3], nullptr, 10));
  const auto problems = spec.check_response(argv[1], argv[2], status, body);
  for (const auto& problem : problems) {
    std::printf("%s\n", problem.c_str());
  }
  return problems.empty() ? 0 : 1;
}
