#!/usr/bin/env bash
# ctest testbed.dma_fault: proves the testbed's fault oracle. The edu copies a pattern through
# the IOMMU, then writes to an IOVA that is not mapped (vfio_probe --dma-fault). Checked from
# outside: with --allow-dmar-faults the run passes and reports exactly that one blocked write at
# that address; without it the driver fails because of the fault.
#
# usage: testbed_dma_fault.sh RUN SCENARIO VFIO_PROBE
set -euo pipefail
(($# == 3)) || { echo "usage: $0 RUN SCENARIO VFIO_PROBE" >&2; exit 2; }
run=$1 scenario=$2 probe=$3
# shellcheck source=testbed_lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/testbed_lib.sh"

echo "== fault allowed"
status=0
markers=$("$run" --timeout 240 --env KEEL_DMA_FAULT=1 --allow-dmar-faults --bin "$probe" "$scenario") || status=$?
printf '%s\n' "$markers"
line=$(grep '^KEEL-TESTBED result edu=' <<<"$markers" || true)
iova=$(field "$line" dma_fault_iova)
expect "the driver exits 0 (got $status)" test "$status" -eq 0
expect "the round trip worked (dma=$(field "$line" dma))" test "$(field "$line" dma)" = ok
expect "the probe sent the stray write (dma_fault_iova='$iova')" test -n "$iova"
expect "exactly one blocked DMA is reported" grep -qx 'KEEL-TESTBED dmar-faults=1' <<<"$markers"
expect "the fault names the write and its address $iova" \
  grep -qE "^KEEL-TESTBED dmar-fault .*DMA Write.* fault addr ${iova:-none} " <<<"$markers"

echo "== fault not allowed"
# This run is meant to fail: keep its logs in a directory of ours and remove them afterwards.
logs=$(mktemp -d)
trap 'rm -rf -- "$logs"' EXIT
status=0
"$run" --timeout 240 --env KEEL_DMA_FAULT=1 --out "$logs/run" --bin "$probe" "$scenario" \
  >/dev/null 2>"$logs/stderr" || status=$?
expect "the driver fails because of the fault (exit 1, got $status)" test "$status" -eq 1
expect "the driver says why" grep -q 'the IOMMU blocked 1 DMA' "$logs/stderr"

finish testbed.dma_fault
