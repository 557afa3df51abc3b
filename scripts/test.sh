#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to a green test run: installs what is missing,
# builds, then runs the unit tests and the testbed integration tests through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
ctest --test-dir build --output-on-failure "$@"
