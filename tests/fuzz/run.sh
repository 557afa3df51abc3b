#!/usr/bin/env bash
# Builds the libFuzzer targets with clang into build-fuzz/ (-DKEEL_FUZZ=ON, the whole tree
# instrumented with -fsanitize=fuzzer-no-link,address,undefined) and runs each one for SECONDS
# (default 30) from its seed corpus, then prints its executions and crashes.
#   tests/fuzz/run.sh [SECONDS] [FUZZER...]
# New inputs go to build-fuzz/corpus/NAME, crashes to build-fuzz/artifacts/NAME/, the full log to
# build-fuzz/logs/NAME.log. Exit status: 0 when no fuzzer crashed, 1 otherwise. A crash is
# replayed with: build-fuzz/bin/NAME build-fuzz/artifacts/NAME/crash-...
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${1:-30}
shift || true
build=build-fuzz

# Each fuzzer and its seed corpus in the repository.
declare -A seeds=(
  [api_request_fuzzer]=tests/fuzz/api/corpus/request
  [api_http_fuzzer]=tests/fuzz/api/corpus/http
  [iommu_fuzzer]=tests/fuzz/virtio/corpus
  [virtio_pci_fuzzer]=tests/fuzz/virtio/corpus-pci
  [blk_fuzzer]=tests/fuzz/virtio/corpus-blk
  [vsock_fuzzer]=tests/fuzz/virtio/corpus-vsock
  [net_fuzzer]=tests/fuzz/virtio/corpus-net
  [vfio_info_fuzzer]=tests/fuzz/vfio/corpus
  [kernel_image_fuzzer]=tests/fuzz/boot/corpus
  [uart_fuzzer]=tests/fuzz/devices/corpus
  [passthrough_config_fuzzer]=tests/fuzz/vfio/corpus-pt
)
fuzzers=("$@")
if [ ${#fuzzers[@]} -eq 0 ]; then
  fuzzers=(api_request_fuzzer api_http_fuzzer iommu_fuzzer virtio_pci_fuzzer blk_fuzzer vsock_fuzzer net_fuzzer vfio_info_fuzzer
    kernel_image_fuzzer uart_fuzzer passthrough_config_fuzzer)
fi

if ! grep -q 'KEEL_FUZZ' CMakeLists.txt; then
  echo "fuzz: CMakeLists.txt has no KEEL_FUZZ switch (if(KEEL_FUZZ) add_subdirectory(tests/fuzz) endif())" >&2
  exit 2
fi
if [ ! -f "$build/build.ninja" ]; then
  CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DKEEL_FUZZ=ON \
    -DKEEL_TESTS=OFF -DKEEL_SANITIZE=OFF \
    -DCMAKE_CXX_FLAGS="-O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
fi
cmake --build "$build" --target "${fuzzers[@]}"

status=0
for name in "${fuzzers[@]}"; do
  corpus="$build/corpus/$name"
  artifacts="$build/artifacts/$name"
  log="$build/logs/$name.log"
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  before=$(find "$artifacts" -type f | wc -l)
  echo "fuzz: $name for ${seconds}s (seeds: ${seeds[$name]})"
  set +e
  "$build/bin/$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" "${seeds[$name]}" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -1)
  found=$(($(find "$artifacts" -type f | wc -l) - before))
  inputs=$(find "$corpus" -type f | wc -l)
  echo "fuzz: $name: ${execs:-?} executions, $found crashes, corpus $inputs inputs, exit $rc"
  if [ "$rc" -ne 0 ] || [ "$found" -ne 0 ]; then
    status=1
    grep -E 'ERROR|property violated|SUMMARY|Test unit written' "$log" | head -20 || true
  fi
done
exit "$status"
