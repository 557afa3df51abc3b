#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to a green test run: installs what is missing,
# builds the Release tree (it must compile with warnings as errors, and the main job runs it)
# and the sanitizer tree, then runs the unit tests and the testbed integration tests through
# ctest on the sanitizer build. Extra arguments go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh --release
scripts/build.sh
ctest --test-dir build --output-on-failure "$@"
