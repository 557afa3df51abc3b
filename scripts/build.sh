#!/usr/bin/env bash
# Configures and builds the whole tree (keel, keel-remote, the tests):
#   scripts/build.sh            Debug with AddressSanitizer and UBSan, into build/ (the tests run
#                               on it)
#   scripts/build.sh --release  Release without sanitizers, keel and keel-remote static PIE
#                               executables, into build-release/ (the main job and the
#                               benchmarks run it; what a packager gets). With KEEL_CXX set
#                               (a C++ compiler), into build-release-<compiler>/.
# Both compile with warnings as errors. Extra arguments go to the build tool (targets, -v).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/keel.sh
. scripts/lib/keel.sh
dir=build
cfg=(-DCMAKE_BUILD_TYPE=Debug -DKEEL_SANITIZE=ON)
if [[ ${1:-} == --release ]]; then
  shift
  dir=$(release_dir "${KEEL_CXX:-}")
  cfg=(-DCMAKE_BUILD_TYPE=Release -DKEEL_SANITIZE=OFF -DKEEL_STATIC=ON)
  [[ -z ${KEEL_CXX:-} ]] || cfg+=("-DCMAKE_CXX_COMPILER=$KEEL_CXX")
fi
# Configured every time (a second or two when nothing changed), so a tree configured
# differently before is put right.
cmake -S . -B "$dir" -G Ninja "${cfg[@]}" -DKEEL_TESTS=ON >/dev/null
cmake --build "$dir" -- -j"$(nproc)" "$@"
