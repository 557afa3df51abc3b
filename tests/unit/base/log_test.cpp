#include "base/log.hpp"

#include <catch2/catch.hpp>

namespace keel::log {
namespace {

TEST_CASE("log lines are logfmt with quoting where needed") {
  const std::string line = format(Level::kInfo, "vfio", "container opened",
                                  {{"avail_at_open", 24}, {"source", "capability"}, {"ok", true}});
  CHECK(line == "level=info component=vfio msg=\"container opened\" avail_at_open=24 source=capability ok=true\n");

  CHECK(format(Level::kWarn, "api", "bad \"json\"\n", {{"path", "a=b"}, {"empty", ""}}) ==
        "level=warn component=api msg=\"bad \\\"json\\\"\\n\" path=\"a=b\" empty=\"\"\n");
  CHECK(format(Level::kError, "x", "y", {{"ctl", std::string(1, '\x01')}}) ==
        "level=error component=x msg=y ctl=\"\\x01\"\n");
}

TEST_CASE("log level threshold filters lines") {
  const Level saved = level();
  set_level(Level::kWarn);
  CHECK(enabled(Level::kError));
  CHECK(enabled(Level::kWarn));
  CHECK_FALSE(enabled(Level::kInfo));
  set_level(Level::kDebug);
  CHECK(enabled(Level::kDebug));
  set_level(saved);
}

}  // namespace
}  // namespace keel::log
