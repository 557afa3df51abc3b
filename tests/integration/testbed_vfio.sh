#!/usr/bin/env bash
# ctest testbed.vfio: keel passes the emulated host's edu devices through to a Linux guest.
#  1. dma_entry_limit=24, two edu devices in one container: the guest sees both, reads BAR0's
#     identification register, runs an edu DMA round trip with fresh data and gets the edu's
#     interrupt through uio_pci_generic; keel reports avail_at_open=24, one planned entry, eager,
#     avail_now=23, consistent; no DMAR fault; after keel exits a fresh container reads 24 again.
#     With RLIMIT_MEMLOCK of 1 MiB and no CAP_IPC_LOCK keel refuses with a memlock message.
#  2. dma_entry_limit=0 (smaller than the plan of 1): eager and auto both refuse with the
#     numbers, and nothing is mapped; a device unbound from vfio-pci is refused with the fix.
#
# usage: testbed_vfio.sh RUN SCENARIO GUEST_INIT KEEL VFIO_PROBE EDU_TEST
set -euo pipefail
(($# == 6)) || { echo "usage: $0 RUN SCENARIO GUEST_INIT KEEL VFIO_PROBE EDU_TEST" >&2; exit 2; }
run=$1 scenario=$2 guest_init=$3 keel=$4 probe=$5 edu_test=$6
testbed=$(dirname -- "$run")
# The Release keel, under its own seccomp lists (the default --seccomp true).
[[ -x $keel ]] || { echo "testbed.vfio: $keel is missing: scripts/build.sh --release builds it" >&2; exit 1; }
if ldd "$keel" | grep -q 'libasan\|libubsan'; then
  echo "testbed.vfio: $keel is a sanitizer build; give the Release keel" >&2
  exit 1
fi

# shellcheck source=testbed_lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/testbed_lib.sh"

work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT
kdir=$("$testbed/host-kernel.sh")
edu_initramfs "$testbed" "$kdir" "$guest_init" "$edu_test" "$work/initramfs.cpio.gz"

boot() {
  local limit=$1 edu=$2 case=$3 status=0
  markers=$("$run" --timeout 900 --edu "$edu" --append "vfio_iommu_type1.dma_entry_limit=$limit" \
    --env "KEEL_CASE=$case" --bin "$keel" --bin "$probe" --bin /usr/bin/setpriv \
    --guest-kernel "$kdir/vmlinuz" --guest-initramfs "$work/initramfs.cpio.gz" "$scenario") || status=$?
  printf '%s\n' "$markers"
  expect "limit=$limit: the testbed run exits 0 with no DMAR fault (got $status)" test "$status" -eq 0
  expect "limit=$limit: the scenario saw limit $limit" grep -qx "KEEL-TESTBED result limit=$limit" <<<"$markers"
}

line_of() { grep "^KEEL-TESTBED result run=$1 keel_exit=" <<<"$markers" || true; }

# ---- 1: two devices, a budget of 24
boot 24 2 run
auto=$(line_of auto)
expect "auto: keel exits 0 after the guest powers off (got '$(field "$auto" keel_exit)')" test "$(field "$auto" keel_exit)" = 0
expect "auto: avail_at_open=24" test "$(field "$auto" avail_at_open)" = 24
expect "auto: source=capability" test "$(field "$auto" source)" = capability
expect "auto: one planned entry for 512 MiB of RAM (got '$(field "$auto" planned_entries)')" test "$(field "$auto" planned_entries)" = 1
expect "auto: mode=eager" test "$(field "$auto" mode)" = eager
expect "auto: avail_now=23 (got '$(field "$auto" avail_now)')" test "$(field "$auto" avail_now)" = 23
expect "auto: consistent=true" test "$(field "$auto" consistent)" = true
expect "auto: both devices in one container" grep -q "devices=0000:00:0[12].0,0000:00:0[12].0" <<<"$auto"
for bdf in $(grep -o 'KEEL-TESTBED result run=auto guest pci [^ ]*' <<<"$markers" | awk '{print $6}'); do
  pci=$(grep "result run=auto guest pci $bdf " <<<"$markers" || true)
  expect "guest $bdf: ids 1234:11e8" test "$(field "$pci" id)" = 0x1234:0x11e8
  expect "guest $bdf: class 0x00ff00" test "$(field "$pci" class)" = 0x00ff00
  start=$(field "$pci" bar0_start) end=$(field "$pci" bar0_end)
  expect "guest $bdf: BAR0 is 1 MiB ($start-$end)" test $((end - start + 1)) -eq $((1 << 20))
  expect "guest $bdf: bound to uio_pci_generic" test "$(field "$pci" driver)" = uio_pci_generic
  edu=$(grep "result run=auto guest edu bdf=$bdf " <<<"$markers" || true)
  expect "guest $bdf: BAR0 register 0 reads 0x010000ed" test "$(field "$edu" reg0)" = 0x010000ed
  expect "guest $bdf: edu DMA round trip ($(field "$edu" dma))" grep -q '^ok' <<<"$(field "$edu" dma)"
  expect "guest $bdf: edu interrupt reached the guest ($(field "$edu" irq))" grep -q '^ok' <<<"$(field "$edu" irq)"
done
expect "the guest saw 2 edu devices" grep -q "result run=auto guest edu devices=2" <<<"$markers"
for after in auto memlock; do
  n=$(grep -c "^KEEL-TESTBED result after=$after .*dma_avail=24 " <<<"$markers" || true)
  expect "after $after: a fresh container reads avail=24 for both devices (got $n)" test "$n" -eq 2
done
memlock=$(line_of memlock)
expect "memlock: keel refuses (exit '$(field "$memlock" keel_exit)')" test "$(field "$memlock" keel_exit)" = 1
msg=$(grep "^KEEL-TESTBED result run=memlock message=" <<<"$markers" || true)
expect "memlock: the message names the memlock limit ($msg)" grep -qi "memlock" <<<"$msg"

# ---- 2: a budget smaller than the plan
boot 0 1 refuse
for mode in eager auto; do
  line=$(line_of "$mode")
  msg=$(grep "^KEEL-TESTBED result run=$mode message=" <<<"$markers" || true)
  expect "limit=0 $mode: keel refuses (exit '$(field "$line" keel_exit)')" test "$(field "$line" keel_exit)" = 1
  expect "limit=0 $mode: the message has the numbers and the fix ($msg)" grep -q "dma_entry_limit" <<<"$msg"
  expect "limit=0 $mode: the guest never ran" test -z "$(grep "result run=$mode guest" <<<"$markers" || true)"
  n=$(grep -c "^KEEL-TESTBED result after=$mode .*dma_avail=0 " <<<"$markers" || true)
  expect "limit=0 $mode: nothing stays mapped (fresh container avail=0)" test "$n" -eq 1
done

line=$(line_of unbound)
msg=$(grep "^KEEL-TESTBED result run=unbound message=" <<<"$markers" || true)
expect "unbound device: keel refuses (exit '$(field "$line" keel_exit)')" test "$(field "$line" keel_exit)" = 1
expect "unbound device: the message names the device and the vfio-pci fix ($msg)" \
  grep -q "0000:00:01.0.*vfio-pci" <<<"$msg"

finish testbed.vfio
