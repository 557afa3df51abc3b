#!/usr/bin/env bash
# Configures and builds Keel into build/ (Debug, ASan + UBSan: the configuration the tests use).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Debug -DKEEL_SANITIZE=ON >/dev/null
fi
cmake --build build -- -j"$(nproc)"
