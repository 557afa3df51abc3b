#!/usr/bin/env bash
# ctest realhost.vfio: the device-independent passthrough checks on a real host with a real PCI
# function, named by KEEL_REAL_DEVICE=/sys/bus/pci/devices/DDDD:BB:DD.F (bound to vfio-pci, its
# IOMMU group viable). Needs /dev/kvm and an IOMMU. Checks that the guest sees the device's IDs
# and BAR sizes, that keel's DMA numbers match the kernel's (avail_at_open = the container's
# budget, avail_now = avail_at_open - planned entries, consistent), and that after keel exits a
# fresh container has its whole budget back. Exits 77 (ctest: skipped) without KEEL_REAL_DEVICE.
#
# usage: realhost_vfio.sh KEEL VFIO_PROBE GUEST_INIT TESTBED_DIR
set -euo pipefail
(($# == 4)) || { echo "usage: $0 KEEL VFIO_PROBE GUEST_INIT TESTBED_DIR" >&2; exit 2; }
keel=$1 probe=$2 guest_init=$3 testbed=$4
if [[ -z ${KEEL_REAL_DEVICE:-} ]]; then
  echo "skipped: set KEEL_REAL_DEVICE=/sys/bus/pci/devices/DDDD:BB:DD.F (bound to vfio-pci) to run"
  exit 77
fi
# shellcheck source=testbed_lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/testbed_lib.sh"

dev=${KEEL_REAL_DEVICE%/}
bdf=${dev##*/}
work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT
# A guest kernel and initramfs of your own may be given; by default Debian's cloud kernel and a
# busybox initramfs are built as in the testbed.
kernel=${KEEL_REAL_KERNEL:-$("$testbed/host-kernel.sh")/vmlinuz}
initramfs=${KEEL_REAL_INITRAMFS:-}
if [[ -z $initramfs ]]; then
  initramfs="$work/initramfs.cpio.gz"
  "$testbed/build-guest-initramfs.sh" --init "$guest_init" -o "$initramfs"
fi

before=$("$probe" "$bdf")
limit=$(field "$before" dma_avail)
echo "host: $bdf $(cat "$dev/vendor"):$(cat "$dev/device"), a fresh container has dma_avail=$limit"

status=0
timeout 600 "$keel" -v --kernel "$kernel" --initramfs "$initramfs" --memory size=512M \
  --serial "file=$work/console" --device "path=$dev" </dev/null 2>"$work/log" || status=$?
cat "$work/log"
grep '^KEEL-GUEST' "$work/console" || true
expect "keel exits 0 after the guest powers off (got $status)" test "$status" -eq 0

line=$(grep 'msg="DMA budget"' "$work/log" | sed 's/reason="[^"]*"//' || true)
planned=$(field "$line" planned_entries)
expect "avail_at_open equals the container's budget ($limit)" test "$(field "$line" avail_at_open)" = "$limit"
expect "avail_now = avail_at_open - planned entries ($planned)" test "$(field "$line" avail_now)" = "$((limit - planned))"
expect "consistent=true" test "$(field "$line" consistent)" = true

# The guest's view: the device's IDs and every BAR's size as the host sees them.
host_bars=""
i=0
while read -r start end _; do
  [ "$i" -lt 6 ] || break
  size=0
  [ "$((end))" -ne 0 ] && size=$((end - start + 1))
  host_bars="$host_bars${host_bars:+,}$size"
  i=$((i + 1))
done <"$dev/resource"
id="$(cat "$dev/vendor"):$(cat "$dev/device")"
guest=$(tr -d '\r' <"$work/console" | grep "^KEEL-GUEST pci .* id=$id " | head -n 1 || true)
expect "the guest sees $id" test -n "$guest"
expect "the guest's class matches ($(field "$guest" class))" test "$(field "$guest" class)" = "$(cat "$dev/class")"
expect "the guest's BAR sizes match the host's ($host_bars)" test "$(field "$guest" bars)" = "$host_bars"

after=$("$probe" "$bdf")
expect "after keel exits a fresh container reads dma_avail=$limit again" test "$(field "$after" dma_avail)" = "$limit"
finish realhost.vfio
