#include <CLI/CLI.hpp>

#include "base/version.hpp"

int main(int argc, char** argv) {
  CLI::App app{"keel-remote: drive a running keel through its REST API on a Unix socket"};
  app.set_version_flag("--version", std::string("keel-remote ") + keel::kVersion);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  return 0;
}
