#!/usr/bin/env bash
# ctest testbed.hostile: a guest writes random and boundary values to Keel's port I/O, PCI
# configuration space and MMIO (tests/integration/guest/hostile_test.cpp), with seeds 1, 2 and 3
# (fixed, so that a failure replays); then, with seeds 4 and 5 and the edu behind the virtual
# IOMMU, it drives the virtio-iommu function as a hostile driver (registers, bring-ups, random
# descriptors, rings and requests, notifications). Keel must keep running: the guest reaches its
# power-off, keel exits 0, no sanitizer report; every read of something nobody decodes is
# all-ones or zeros, the host bridge still answers, and the virtio-iommu function still answers
# after its reset. With seed 6 it drives a virtio-blk disk the same way (queue workers serving
# while it scribbles and resets), and with seed 7 a virtio-net link and a virtio-vsock device.
# Every run has a virtio-rng on the bus.
#
# usage: testbed_hostile.sh RUN SCENARIO GUEST_INIT KEEL HOSTILE_TEST
set -euo pipefail
(($# == 5)) || { echo "usage: $0 RUN SCENARIO GUEST_INIT KEEL HOSTILE_TEST" >&2; exit 2; }
run=$1 scenario=$2 guest_init=$3 keel=$4 hostile=$5
testbed=$(dirname -- "$run")

# shellcheck source=testbed_lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/testbed_lib.sh"

work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT
kdir=$("$testbed/host-kernel.sh")
"$testbed/build-guest-initramfs.sh" --init "$guest_init" --file "$hostile:/bin/hostile_test" \
  -o "$work/initramfs.cpio.gz"

status=0
markers=$("$run" --timeout 1200 --bin "$keel" --guest-kernel "$kdir/vmlinuz" \
  --guest-initramfs "$work/initramfs.cpio.gz" "$scenario") || status=$?
printf '%s\n' "$markers"
expect "the testbed run exits 0 with no DMAR fault (got $status)" test "$status" -eq 0

runs=0
virtio_runs=0
blk_runs=0
net_runs=0
while IFS= read -r line; do
  [[ -n $line ]] || continue
  runs=$((runs + 1))
  seed=$(field "$line" run)
  if [[ $(field "$line" phases) == virtio ]]; then
    virtio_runs=$((virtio_runs + 1))
    expect "seed $seed: the guest drove the virtio-iommu function (virtio=$(field "$line" virtio))" \
      test "$(field "$line" virtio)" -gt 10000
  elif [[ $(field "$line" phases) == net,vsock ]]; then
    net_runs=$((net_runs + 1))
    expect "seed $seed: the guest drove the virtio-net and virtio-vsock functions (net=$(field "$line" net) vsock=$(field "$line" vsock))" \
      test "$(field "$line" net)" -gt 10000 -a "$(field "$line" vsock)" -gt 10000
  elif [[ $(field "$line" phases) == blk ]]; then
    blk_runs=$((blk_runs + 1))
    expect "seed $seed: the guest drove the virtio-blk function (blk=$(field "$line" blk))" \
      test "$(field "$line" blk)" -gt 10000
  else
    expect "seed $seed: the guest's writes ran (pio=$(field "$line" pio) pci=$(field "$line" pci) mmio=$(field "$line" mmio))" \
      test "$(field "$line" pio)" -gt 10000 -a "$(field "$line" pci)" -gt 10000 -a "$(field "$line" mmio)" -ge 10000
    expect "seed $seed: every MMIO window was reached (mmio_windows=$(field "$line" mmio_windows))" \
      test "$(field "$line" mmio_windows)" = 3
  fi
  expect "seed $seed: reads of undecoded ports and MMIO gave only all-ones or zeros ($(field "$line" reads) reads, result=$(field "$line" result))" \
    test "$(field "$line" result)" = ok
  expect "seed $seed: the host bridge still answers ($(field "$line" host_bridge))" \
    test -n "$(field "$line" host_bridge)"
  expect "seed $seed: the guest reached its power-off" test "$(field "$line" powered_off)" = 1
  expect "seed $seed: keel exits 0 (got '$(field "$line" keel_exit)')" test "$(field "$line" keel_exit)" = 0
  expect "seed $seed: no sanitizer report in keel's log" test "$(field "$line" sanitizer_reports)" = 0
done < <(grep '^KEEL-TESTBED result run=' <<<"$markers" || true)
expect "seven hostile runs reported (got $runs)" test "$runs" -eq 7
expect "two of them against the virtual IOMMU (got $virtio_runs)" test "$virtio_runs" -eq 2
expect "one against a virtio-blk disk (got $blk_runs)" test "$blk_runs" -eq 1
expect "one against a virtio-net link and a virtio-vsock device (got $net_runs)" test "$net_runs" -eq 1
finish testbed.hostile
