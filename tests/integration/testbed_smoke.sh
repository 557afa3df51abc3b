#!/usr/bin/env bash
# ctest testbed.smoke: boots the emulated host twice, with different dma_entry_limit values and
# edu counts, and checks from outside that what the kernel reported inside matches what was
# passed in: DMA_AVAIL, the number of MAP_DMA calls that succeeded before ENOSPC, the cap order,
# the vfio-pci binding, an edu DMA round trip, KVM and keel --version.
#
# The first boot also runs unit.vmm_kvm_test's binary inside, where /dev/kvm works: the tiny
# guest, the KVM fault sweep and the VMM's control paths run on every CI run.
#
# usage: testbed_smoke.sh RUN SCENARIO KEEL KEEL_REMOTE VFIO_PROBE VMM_KVM_TEST
set -euo pipefail
(($# == 6)) || { echo "usage: $0 RUN SCENARIO KEEL KEEL_REMOTE VFIO_PROBE VMM_KVM_TEST" >&2; exit 2; }
run=$1 scenario=$2 keel=$3 keel_remote=$4 probe=$5 kvm_test=$6

# shellcheck source=testbed_lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/testbed_lib.sh"

boot() {
  local limit=$1 edu=$2 markers status=0
  local extra=()
  [[ -z ${3:-} ]] || extra=(--bin "$3")
  echo "== emulated host: dma_entry_limit=$limit, $edu edu device(s)"
  markers=$("$run" --timeout 600 --edu "$edu" --append "vfio_iommu_type1.dma_entry_limit=$limit" \
    --bin "$keel" --bin "$keel_remote" --bin "$probe" "${extra[@]}" "$scenario") || status=$?
  printf '%s\n' "$markers"
  expect "limit=$limit: the driver exits 0 (got $status)" test "$status" -eq 0
  expect "limit=$limit: the scenario reported exit=0" grep -qx 'KEEL-TESTBED exit=0' <<<"$markers"
  expect "limit=$limit: no DMAR faults" grep -qx 'KEEL-TESTBED dmar-faults=0' <<<"$markers"
  expect "limit=$limit: /dev/kvm works" grep -qx 'KEEL-TESTBED result kvm api=12 vm=ok' <<<"$markers"
  expect "limit=$limit: keel --version ran" grep -qE '^KEEL-TESTBED result keel_version=.+' <<<"$markers"
  local count
  count=$(field "$(grep '^KEEL-TESTBED result edu_count=' <<<"$markers" || true)" edu_count)
  expect "limit=$limit: $edu edu device(s) seen (got '${count}')" test "$count" = "$edu"

  local lines groups=() line n=0
  lines=$(grep '^KEEL-TESTBED result edu=' <<<"$markers" || true)
  while IFS= read -r line; do
    [[ -n $line ]] || continue
    n=$((n + 1))
    local bdf
    bdf=$(field "$line" edu)
    groups+=("$(field "$line" group)")
    expect "$bdf: bound to vfio-pci" test "$(field "$line" driver)" = vfio-pci
    expect "$bdf: caps in type1 order 2,3,1" test "$(field "$line" caps)" = 2,3,1
    expect "$bdf: dma_avail=$limit (got '$(field "$line" dma_avail)')" test "$(field "$line" dma_avail)" = "$limit"
    expect "$bdf: $limit maps succeeded (got '$(field "$line" mapped)')" test "$(field "$line" mapped)" = "$limit"
    expect "$bdf: map $((limit + 1)) failed with ENOSPC (got '$(field "$line" stop)')" test "$(field "$line" stop)" = ENOSPC
    expect "$bdf: avail 0 when full (got '$(field "$line" avail_full)')" test "$(field "$line" avail_full)" = 0
    expect "$bdf: avail back to $limit after unmap (got '$(field "$line" avail_after_unmap)')" test "$(field "$line" avail_after_unmap)" = "$limit"
    expect "$bdf: the edu DMA round trip through the IOMMU worked (dma=$(field "$line" dma))" test "$(field "$line" dma)" = ok
    expect "$bdf: the MSI window is a hole in the IOVA ranges" grep -q '0xfedfffff,0xfef00000-' <<<"$(field "$line" iova_ranges)"
  done <<<"$lines"
  expect "limit=$limit: one probe line per edu device ($n of $edu)" test "$n" -eq "$edu"
  local distinct
  distinct=$(printf '%s\n' "${groups[@]}" | sort -u | grep -c . || true)
  expect "limit=$limit: each edu device has its own IOMMU group" test "$distinct" -eq "$edu"
  if [[ -n ${3:-} ]]; then
    local unit
    unit=$(grep '^KEEL-TESTBED result kvm_unit ' <<<"$markers" || true)
    expect "vmm_kvm_test ran inside with /dev/kvm and passed (got '$unit')" \
      test "$(field "$unit" status)" = 0
    expect "vmm_kvm_test: every test case passed ($(field "$unit" summary))" \
      grep -q '^All_tests_passed' <<<"$(field "$unit" summary)"
  fi
}

boot 24 1 "$kvm_test"
boot 50 2
finish testbed.smoke
