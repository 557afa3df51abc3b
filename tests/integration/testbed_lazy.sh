#!/usr/bin/env bash
# ctest testbed.lazy: the edu device behind Keel's virtual IOMMU, driven by the guest's own VFIO
# (type1 over virtio-iommu) in the guest kernel built from linux-source-6.1. The emulated host
# runs with a small dma_entry_limit. Checks, from the scenario's markers (scenarios/lazy.sh):
#   - lazy run (memlock below guest RAM, no CAP_IPC_LOCK): auto picks lazy, with the reason; the
#     guest's DMA round trips through its mappings work; a DMA aimed at an IOVA it has just
#     unmapped is blocked (one DMAR fault, at exactly that address) and the buffer is untouched;
#     MAPs past the budget fail in the guest with an error, the guest frees some and carries on;
#     peak_entries never exceeds the limit, consistent stays true, refusals are counted as
#     budget refusals (not kernel failures), and after keel exits the kernel's count is back.
#   - eager run (as root): auto picks eager; the guest's translated mappings then switch the
#     container to lazy, and its round trips work.
#
# usage: testbed_lazy.sh RUN SCENARIO GUEST_INIT KEEL KEEL_REMOTE VFIO_PROBE MEMLOCK_EXEC LAZY_TEST
set -euo pipefail
(($# == 8)) || {
  echo "usage: $0 RUN SCENARIO GUEST_INIT KEEL KEEL_REMOTE VFIO_PROBE MEMLOCK_EXEC LAZY_TEST" >&2
  exit 2
}
run=$1 scenario=$2 guest_init=$3 keel=$4 keel_remote=$5 probe=$6 memlock_exec=$7 lazy_test=$8
testbed=$(dirname -- "$run")
limit=12

# shellcheck source=testbed_lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/testbed_lib.sh"

work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT
kernel="$("$testbed/build-guest-kernel.sh")/bzImage"
"$testbed/build-guest-initramfs.sh" --init "$guest_init" --file "$lazy_test:/bin/lazy_test" \
  -o "$work/initramfs.cpio.gz"

status=0
markers=$("$run" --timeout 900 --allow-dmar-faults \
  --append "vfio_iommu_type1.dma_entry_limit=$limit" \
  --bin "$keel" --bin "$keel_remote" --bin "$probe" --bin "$memlock_exec" \
  --guest-kernel "$kernel" --guest-initramfs "$work/initramfs.cpio.gz" "$scenario") ||
  status=$?
printf '%s\n' "$markers"
expect "the testbed run exits 0 (got $status)" test "$status" -eq 0
head=$(grep '^KEEL-TESTBED result limit=' <<<"$markers" || true)
expect "the emulated host runs with dma_entry_limit=$limit" test "$(field "$head" limit)" = "$limit"

# phase RUN PHASE: the guest's line for PHASE in RUN.
phase() { grep "^KEEL-TESTBED result run=$1 phase=$2 " <<<"$markers" || true; }
# info RUN AT FILTER: a jq filter on vm.info's first dma object, read at start or end.
info() {
  sed -n "s/^KEEL-TESTBED result run=$1 at=$2 info=//p" <<<"$markers" | jq -r ".dma[0]$3" 2>/dev/null || true
}
counter() {
  sed -n "s/^KEEL-TESTBED result run=$1 counters=//p" <<<"$markers" | jq -r ".dma$2" 2>/dev/null || true
}
after() { grep "^KEEL-TESTBED result run=$1 probe=after " <<<"$markers" || true; }

# ---- lazy run
expect "lazy: the guest finished" grep -q "^KEEL-TESTBED result run=lazy finished=yes" <<<"$markers"
expect "lazy: vm.info says mode lazy (got '$(info lazy start .mode)')" test "$(info lazy start .mode)" = lazy
expect "lazy: requested auto" test "$(info lazy start .requested_mode)" = auto
expect "lazy: the reason says why (got '$(info lazy start .reason)')" \
  grep -q "lazy (auto): eager does not fit" <<<"$(info lazy start .reason)"
expect "lazy: the reason names the memlock limit" grep -qi "memlock" <<<"$(info lazy start .reason)"
expect "lazy: the container opened with the limit (got '$(info lazy start .avail_at_open)')" \
  test "$(info lazy start .avail_at_open)" = "$limit"
setup=$(phase lazy setup)
expect "lazy: the guest's VFIO opened the edu behind virtio-iommu ($setup)" test "$(field "$setup" result)" = ok
rt=$(phase lazy roundtrip)
expect "lazy: DMA round trip through guest IOVAs ($rt)" test "$(field "$rt" result)" = ok
pages=$(phase lazy pages)
expect "lazy: 4 more mappings, each with a round trip ($pages)" test "$(field "$pages" result)" = ok
msi=$(phase lazy msi)
expect "lazy: the edu's MSI reached the guest's VFIO eventfd through Keel's MSI emulation and the host's VFIO, 5 of 5 ($msi)" \
  test "$(field "$msi" result),$(field "$msi" received)" = ok,5
fault=$(phase lazy fault)
expect "lazy: DMA to a just-unmapped IOVA left the buffer untouched ($fault)" test "$(field "$fault" result)" = ok
dmar=$(grep '^KEEL-TESTBED dmar-fault ' <<<"$markers" || true)
expect "lazy: exactly one DMAR fault (got $(grep -c . <<<"$dmar"))" test "$(grep -c . <<<"$dmar")" = 1
iova=$(field "$fault" iova)
expect "lazy: the fault is at the unmapped IOVA ${iova:-?} ($dmar)" \
  grep -qiE "fault addr ${iova:-none}( |$)" <<<"$dmar"
hold=$(phase lazy hold)
granted=$(field "$hold" granted)
expect "lazy: MAPs past the budget fail in the guest with ENOMEM, as the README promises ($hold)" \
  test "$(field "$hold" errno)" = ENOMEM
expect "lazy: some were granted before (got '$granted')" test "${granted:-0}" -gt 0
expect "lazy: every granted mapping moved data (moved $(field "$hold" moved) of $granted)" \
  test "$(field "$hold" moved)" = "$granted"
expect "lazy: after freeing some, a MAP works again with DMA through it ($hold)" test "$(field "$hold" after)" = ok
done_line=$(phase lazy done)
expect "lazy: the guest program completed ($done_line)" test "$(field "$done_line" result)" = ok
peak=$(info lazy end .peak_entries)
expect "lazy: peak_entries $peak never exceeded the limit $limit" test "${peak:-999}" -le "$limit"
expect "lazy: the 2 entries of dma_low_water stayed free (peak $peak)" test "${peak:-999}" -le $((limit - 2))
expect "lazy: the budget was used up to the reserve (peak $peak)" test "${peak:-0}" -ge $((limit - 3))
expect "lazy: consistent at the end" test "$(info lazy end .consistent)" = true
expect "lazy: the guest's program gone, its domain's mappings are released (entries $(info lazy end .entries_used), guest mappings $(info lazy end .guest_mappings))" \
  test "$(info lazy end .entries_used)" = 0 -a "$(info lazy end .guest_mappings)" = 0
expect "lazy: every guest map was unmapped (maps $(counter lazy .guest_maps), unmaps $(counter lazy .guest_unmaps))" \
  test "$(counter lazy .guest_maps)" = "$(counter lazy .guest_unmaps)" -a "$(counter lazy .guest_maps)" -gt 10
expect "lazy: failed_maps counts Keel's budget refusals (got '$(info lazy end .failed_maps.refused_budget)')" \
  test "$(info lazy end .failed_maps.refused_budget)" -ge 1
expect "lazy: apart from kernel ENOSPC, which never happened (got '$(info lazy end .failed_maps.enospc)')" \
  test "$(info lazy end .failed_maps.enospc)" = 0
expect "lazy: vm.info shows the low-water reserve (got '$(info lazy end .low_water)')" \
  test "$(info lazy end .low_water)" = 2
expect "lazy: vm.counters has budget refusals (got '$(counter lazy .refused_budget)')" \
  test "$(counter lazy .refused_budget)" -ge 1
events=$(sed -n 's/^KEEL-TESTBED result run=lazy event //p' <<<"$markers")
low=$(jq -c 'select(.event == "low-water")' <<<"$events" 2>/dev/null | head -n 1)
expect "lazy: the event monitor heard the low-water mark reached, with the entries ($low)" \
  test "$(jq -r '"\(.source),\(.properties.low_water),\(.properties.entries_used >= 1)"' <<<"$low" 2>/dev/null)" = "dma,2,true"
expect "lazy: and heard it cleared when the guest freed some" \
  test -n "$(jq -c 'select(.event == "low-water-cleared")' <<<"$events" 2>/dev/null)"
expect "lazy: and no kernel failure (got '$(counter lazy .kernel_failures)')" \
  test "$(counter lazy .kernel_failures)" = 0
expect "lazy: keel exits 0" grep -q "^KEEL-TESTBED result run=lazy keel_exit=0" <<<"$markers"
expect "lazy: after keel, a fresh container reads the whole limit ($(after lazy))" \
  test "$(field "$(after lazy)" dma_avail)" = "$limit"

# ---- eager run
expect "eager: the guest finished" grep -q "^KEEL-TESTBED result run=eager finished=yes" <<<"$markers"
expect "eager: vm.info says mode eager at start (got '$(info eager start .mode)')" \
  test "$(info eager start .mode)" = eager
expect "eager: the reason says auto chose it (got '$(info eager start .reason)')" \
  grep -q "eager (auto)" <<<"$(info eager start .reason)"
rt=$(phase eager roundtrip)
expect "eager: DMA round trip through guest IOVAs ($rt)" test "$(field "$rt" result)" = ok
expect "eager: the translated mappings switched the container to lazy (got '$(info eager end .mode)')" \
  test "$(info eager end .mode)" = lazy
expect "eager: consistent at the end" test "$(info eager end .consistent)" = true
rt=$(phase eager-rebooted roundtrip)
expect "eager: after a guest reboot (the VM built anew), the guest's round trip works again ($rt)" \
  test "$(field "$rt" result)" = ok
expect "eager: after the reboot, consistent (got '$(info eager-rebooted end .consistent)')" \
  test "$(info eager-rebooted end .consistent)" = true
expect "eager: after the reboot, nothing of the first boot is held (entries $(info eager-rebooted end .entries_used), guest mappings $(info eager-rebooted end .guest_mappings))" \
  test "$(info eager-rebooted end .entries_used)" = "$(info eager end .entries_used)"
expect "eager: keel exits 0" grep -q "^KEEL-TESTBED result run=eager keel_exit=0" <<<"$markers"
expect "eager: after keel, a fresh container reads the whole limit ($(after eager))" \
  test "$(field "$(after eager)" dma_avail)" = "$limit"

finish testbed.lazy
