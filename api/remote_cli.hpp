#pragma once

#include <ostream>

namespace keel::api {

// keel-remote: `keel-remote --api-socket PATH [--json] [--timeout S] COMMAND [ARG]`. Prints the
// answer for people (or the raw JSON with --json) on `out`, errors on `err`. Returns 0 when the
// API answered 2xx, 1 when it answered an error or could not be reached (the message is
// printed), 2 when the command line is wrong.
int remote_main(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

}  // namespace keel::api
