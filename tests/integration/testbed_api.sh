#!/usr/bin/env bash
# ctest testbed.api: inside the emulated host (dma_entry_limit=30, two edu devices) keel starts
# idle with --api-socket and is driven only through keel-remote (tests/integration/scenarios/
# api.sh). Checked here: the socket's mode; every step's answer (wrong-state and duplicate
# requests refused with the right message); the `dma` object of vm.info against the kernel's
# numbers (avail_at_open = dma_entry_limit, one eager entry for 512 MiB, avail_now = limit - 1,
# consistent); a fresh container on the other device still reads the whole limit while keel
# maps, since the budget is per container; vm.shutdown and vmm.shutdown give every DMA entry
# back (a fresh container on keel's device reads the limit again); and each JSON answer
# validates against api/openapi.yaml.
#
# usage: testbed_api.sh RUN SCENARIO GUEST_INIT KEEL KEEL_REMOTE VFIO_PROBE OPENAPI_CHECK
set -euo pipefail
(($# == 7)) || {
  echo "usage: $0 RUN SCENARIO GUEST_INIT KEEL KEEL_REMOTE VFIO_PROBE OPENAPI_CHECK" >&2
  exit 2
}
run=$1 scenario=$2 guest_init=$3 keel=$4 keel_remote=$5 probe=$6 openapi_check=$7
testbed=$(dirname -- "$run")
limit=30

# shellcheck source=testbed_lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/testbed_lib.sh"

work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT
kdir=$("$testbed/host-kernel.sh")
# The guest's ACPI power button driver and evdev, which its init loads (guest/boot-init).
modules=()
for ko in button.ko evdev.ko; do
  modules+=(--file "$kdir/modules/$ko:/lib/modules/$ko")
done
"$testbed/build-guest-initramfs.sh" --init "$guest_init" "${modules[@]}" -o "$work/initramfs.cpio.gz"

status=0
markers=$("$run" --timeout 900 --edu 2 --append "vfio_iommu_type1.dma_entry_limit=$limit" \
  --bin "$keel" --bin "$keel_remote" --bin "$probe" \
  --guest-kernel "$kdir/vmlinuz" --guest-initramfs "$work/initramfs.cpio.gz" "$scenario") ||
  status=$?
printf '%s\n' "$markers"
expect "the testbed run exits 0 with no DMAR fault (got $status)" test "$status" -eq 0

head=$(grep '^KEEL-TESTBED result limit=' <<<"$markers" || true)
expect "the emulated host runs with dma_entry_limit=$limit" test "$(field "$head" limit)" = "$limit"
dev0=$(field "$head" dev0) dev1=$(field "$head" dev1)
sock=$(grep '^KEEL-TESTBED result socket=' <<<"$markers" || true)
expect "the API socket exists" test "$(field "$sock" socket)" = yes
expect "the API socket has mode 0600 (got '$(field "$sock" mode)')" test "$(field "$sock" mode)" = 600

# ok STEP [PATH]: the step succeeded; with PATH (e.g. /vm.info get) its answer validates.
ok() {
  expect "$1: keel-remote exits 0 (got '$(exit_of "$1")': $(out_of "$1"))" test "$(exit_of "$1")" = 0
  if (($# == 3)); then
    local body problems
    body=$(out_of "$1")
    local check_status=0
    problems=$("$openapi_check" "$2" "$3" 200 <<<"$body" 2>&1) || check_status=$?
    expect "$1: the answer validates against openapi.yaml (status $check_status: $problems)" \
      test "$check_status" = 0 -a -z "$problems"
  fi
}
# refused STEP PATTERN: the step failed and the message matches PATTERN.
refused() {
  expect "$1: refused (exit '$(exit_of "$1")')" test "$(exit_of "$1")" != 0 -a -n "$(exit_of "$1")"
  expect "$1: the message says '$2' (got: $(out_of "$1"))" grep -qiE -- "$2" <<<"$(out_of "$1")"
}

ok ping /vmm.ping get
expect "ping: the version is keel's" grep -q '^0\.' <<<"$(json ping .version)"
refused info-empty '404|no VM'
refused boot-empty '404|no VM'
ok create
refused create-again '409|already exists'
ok add
refused add-again '409|already'
refused add-missing '404|does not exist'
ok info-created /vm.info get
expect "info-created: state Created" test "$(json info-created .state)" = Created
expect "info-created: edu0 and edu1 configured" \
  test "$(json info-created '[.config.devices[].id] | join(",")')" = edu0,edu1
ok remove
refused remove-again '404|no device'
ok boot
expect "the guest booted" grep -q "result guest=first booted=yes" <<<"$markers"
ok info-running /vm.info get
expect "info-running: state Running" test "$(json info-running .state)" = Running
expect "info-running: one container" test "$(json info-running '.dma | length')" = 1
d='.dma[0]'
expect "dma: backend vfio-type1v2 or similar ($(json info-running "$d.backend"))" \
  test -n "$(json info-running "$d.backend")"
expect "dma: avail_source capability" test "$(json info-running "$d.avail_source")" = capability
expect "dma: avail_at_open = dma_entry_limit $limit (got $(json info-running "$d.avail_at_open"))" \
  test "$(json info-running "$d.avail_at_open")" = "$limit"
expect "dma: mode eager, requested eager" \
  test "$(json info-running "$d.mode"),$(json info-running "$d.requested_mode")" = eager,eager
expect "dma: one planned entry for 512 MiB (got $(json info-running "$d.planned_entries"))" \
  test "$(json info-running "$d.planned_entries")" = 1
expect "dma: entries_used 1 (got $(json info-running "$d.entries_used"))" \
  test "$(json info-running "$d.entries_used")" = 1
expect "dma: avail_now = $limit - 1, the kernel's count (got $(json info-running "$d.avail_now"))" \
  test "$(json info-running "$d.avail_now")" = $((limit - 1))
expect "dma: consistent" test "$(json info-running "$d.consistent")" = true
expect "dma: mapped_bytes = 512 MiB (got $(json info-running "$d.mapped_bytes"))" \
  test "$(json info-running "$d.mapped_bytes")" = 536870912
expect "dma: peak_entries 1" test "$(json info-running "$d.peak_entries")" = 1
expect "dma: no failed maps" test "$(json info-running "[$d.failed_maps[]] | add")" = 0
expect "dma: a reason is given" test -n "$(json info-running "$d.reason")"
expect "dma: the device is edu0 at host $dev0" \
  test "$(json info-running "$d.devices[0].id"),$(json info-running "$d.devices[0].host_bdf")" = "edu0,$dev0"
expect "dma: the IOVA ranges leave the MSI window out" \
  test "$(json info-running "[$d.iova_ranges[] | select(.end == 4276092927)] | length")" = 1
ok counters /vm.counters get
expect "counters: edu0's config space was read by the guest (got $(json counters .edu0.config_reads))" \
  test "$(json counters '.edu0.config_reads // 0')" -gt 0
expect "counters: dma entries_used 1" test "$(json counters .dma.entries_used)" = 1
refused boot-twice '409|running'
refused add-running '409|iommu=on cannot be hot-added'

# The budget is per container: keel's mapping does not touch a fresh container's on edu1,
# and keel's own device cannot be opened a second time while keel holds it.
p=$(grep "^KEEL-TESTBED result probe=running bdf=$dev1 " <<<"$markers" || true)
expect "while keel runs, a fresh container on $dev1 reads avail=$limit (got '$(field "$p" dma_avail)')" \
  test "$(field "$p" dma_avail)" = "$limit"
p=$(grep "^KEEL-TESTBED result probe=running-held " <<<"$markers" || true)
expect "while keel runs, $dev0 is busy for anyone else ($p)" grep -qi 'busy' <<<"$p"

ok pause
ok info-paused /vm.info get
expect "info-paused: state Paused" test "$(json info-paused .state)" = Paused
ok resume
expect "info-resumed: state Running" test "$(json info-resumed .state)" = Running
ok shutdown
ok info-shutdown /vm.info get
expect "info-shutdown: state Shutdown" test "$(json info-shutdown .state)" = Shutdown
expect "info-shutdown: no container left" test "$(json info-shutdown '.dma | length')" = 0
# Teardown proven on the live process: the 512 MiB VFIO pinned for the eager entry are given
# back while keel goes on running (a fresh container's budget, below, cannot tell: each container
# gets its own).
pin_kb() {
  local l lck pin
  l=$(grep "^KEEL-TESTBED result pinned=$1 " <<<"$markers" || true)
  lck=$(field "$l" vmlck_kb) pin=$(field "$l" vmpin_kb)
  [[ $lck =~ ^[0-9]+$ && $pin =~ ^[0-9]+$ ]] || { echo "missing"; return; }
  echo $((lck + pin))
}
expect "running: keel holds the guest's 512 MiB pinned (got $(pin_kb running) kB, idle $(pin_kb idle) kB)" \
  test "$(pin_kb running)" -ge "$(($(pin_kb idle | tr -dc 0-9) + 524288))"
expect "after vm.shutdown, keel (still running) holds no pinned memory beyond idle (got $(pin_kb after-shutdown) kB, idle $(pin_kb idle) kB)" \
  test "$(pin_kb after-shutdown)" -le "$(pin_kb idle)"
p=$(grep "^KEEL-TESTBED result probe=after-shutdown " <<<"$markers" || true)
expect "after vm.shutdown, a fresh container on $dev0 reads avail=$limit (got '$(field "$p" dma_avail)')" \
  test "$(field "$p" dma_avail)" = "$limit"
ok boot-again
expect "the guest booted again" grep -q "result guest=second booted=yes" <<<"$markers"
expect "info-again: entries_used 1 again" test "$(json info-again '.dma[0].entries_used')" = 1
expect "info-again: consistent" test "$(json info-again '.dma[0].consistent')" = true
ok nmi
n=$(grep '^KEEL-TESTBED result nmi_logged=' <<<"$markers" || true)
expect "vm.nmi: the guest logged an NMI on each of its 2 vCPUs ($n)" \
  test "$(field "$n" nmi_logged),$(field "$n" cpu0),$(field "$n" cpu1)" = yes,1,1
ok power-button
b=$(grep '^KEEL-TESTBED result guest_saw_button=' <<<"$markers" || true)
expect "vm.power-button: the guest's input layer reported KEY_POWER ($b)" \
  test "$(field "$b" guest_saw_button)" = yes
expect "vm.power-button: the guest powered off and the VM is Shutdown ($b)" \
  test "$(field "$b" state_after_button)" = Shutdown
refused nmi-off '405|shut down'
refused power-button-off '405|shut down'
ok shutdown-vmm
end=$(grep '^KEEL-TESTBED result keel_exit=' <<<"$markers" || true)
expect "vmm.shutdown ends keel with 0 (got '$(field "$end" keel_exit)')" test "$(field "$end" keel_exit)" = 0
expect "keel removed its socket" test "$(field "$end" socket_left)" = no
p=$(grep "^KEEL-TESTBED result probe=after-exit " <<<"$markers" || true)
expect "after vmm.shutdown, a fresh container on $dev0 reads avail=$limit (got '$(field "$p" dma_avail)')" \
  test "$(field "$p" dma_avail)" = "$limit"
finish testbed.api
