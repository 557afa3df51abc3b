#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>

#include "base/log.hpp"
#include "base/version.hpp"

int main(int argc, char** argv) {
  CLI::App app{"keel: a KVM virtual machine monitor with DMA-budget-aware VFIO passthrough"};
  app.set_version_flag("--version", std::string("keel ") + keel::kVersion);
  int verbosity = 0;
  app.add_flag("-v", verbosity, "More log output (-v info, -vv debug); quiet by default");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 prints --help/--version itself and returns 0 for them; usage errors exit 2.
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  keel::log::set_level(verbosity >= 2   ? keel::log::Level::kDebug
                       : verbosity == 1 ? keel::log::Level::kInfo
                                        : keel::log::Level::kWarn);
  std::fprintf(stderr, "keel: no payload given; run `keel --help` for the options\n");
  return 2;
}
