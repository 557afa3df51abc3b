#!/usr/bin/env bash
# ctest testbed.boot: inside the emulated host, keel boots the Debian cloud kernel (bzImage) and
# the guest kernel built from linux-source-6.1 (PVH vmlinux) with 2 vCPUs and 512 MiB, the
# latter also on shared hugepage memory; each guest reboots once and then powers off. Bad
# kernels and sizes must fail cleanly.
#
# usage: testbed_boot.sh RUN SCENARIO GUEST_INIT KEEL
set -euo pipefail
(($# == 4)) || { echo "usage: $0 RUN SCENARIO GUEST_INIT KEEL" >&2; exit 2; }
run=$1 scenario=$2 guest_init=$3 keel=$4
testbed=$(dirname -- "$run")

# shellcheck source=testbed_lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/testbed_lib.sh"

work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT
bzimage="$("$testbed/host-kernel.sh")/vmlinuz"
pvh="$("$testbed/build-guest-kernel.sh")/vmlinux"
"$testbed/build-guest-initramfs.sh" --init "$guest_init" -o "$work/initramfs.cpio.gz"

status=0
markers=$("$run" --timeout 600 --memory 2G --bin "$keel" --guest-kernel "$bzimage" \
  --file "$pvh:/keel/guest/vmlinux-pvh" --guest-initramfs "$work/initramfs.cpio.gz" \
  "$scenario") || status=$?
printf '%s\n' "$markers"
expect "the testbed run exits 0 (got $status)" test "$status" -eq 0

for guest in bzimage pvh pvh-hugepages; do
  line=$(grep "^KEEL-TESTBED result guest=$guest " <<<"$markers" || true)
  expect "$guest: a result line" test -n "$line"
  expect "$guest: first boot reached init" test "$(field "$line" first_boot)" = ok
  expect "$guest: reboot booted it again" test "$(field "$line" second_boot)" = ok
  expect "$guest: two boots seen (got '$(field "$line" boots)')" test "$(field "$line" boots)" = 2
  expect "$guest: the kernel's banner on the console once per boot (got '$(field "$line" kernel_banners)')" \
    test "$(field "$line" kernel_banners)" = 2
  expect "$guest: its command line line intact once per boot (got '$(field "$line" kernel_cmdline_lines)')" \
    test "$(field "$line" kernel_cmdline_lines)" = 2
  expect "$guest: power-off ends keel with 0 (got '$(field "$line" keel_exit)')" test "$(field "$line" keel_exit)" = 0
  expect "$guest: the guest sees 2 CPUs (got '$(field "$line" cpus)')" test "$(field "$line" cpus)" = 2
  mem=$(field "$line" mem_kb)
  expect "$guest: MemTotal within 10% of 512 MiB (got '${mem}' kB)" \
    test "${mem:-0}" -ge $((524288 * 90 / 100)) -a "${mem:-0}" -le 524288
  expect "$guest: the PCI host bridge is enumerated (got '$(field "$line" host_bridge)')" \
    test "$(field "$line" host_bridge)" = 0x8086:0x0d57
done

hp=$(grep "^KEEL-TESTBED result guest=pvh-hugepages " <<<"$markers" || true)
expect "256 hugepages were reserved for the hugepages boot" grep -qx "KEEL-TESTBED result hugepages_reserved=256" <<<"$markers"
expect "hugepages=on: the guest's RAM came from hugepages (used '$(field "$hp" hugepages_used)')" \
  test "$(field "$hp" hugepages_used)" -gt 0
expect "without hugepages=on none are used" test "$(field "$(grep "guest=pvh " <<<"$markers")" hugepages_used)" = 0
# --rng: the PVH guest's kernel (built with HW_RANDOM_VIRTIO) picks the virtio-rng device and
# reads entropy through it: 64 bytes, not all zero.
rng=$(grep "^KEEL-TESTBED result guest=pvh " <<<"$markers" || true)
expect "--rng: the guest's hwrng is virtio-rng (got '$(field "$rng" hwrng)')" \
  grep -q '^virtio_rng' <<<"$(field "$rng" hwrng)"
hex=$(field "$rng" hwrng_hex | tr -d '\r')
expect "--rng: the guest read 64 bytes from /dev/hwrng (got ${#hex} hex digits)" test "${#hex}" = 128
expect "--rng: the bytes are not all zero" grep -q '[1-9a-f]' <<<"$hex"
expect "without --rng there is no hwrng (got '$(field "$(grep "guest=pvh-hugepages " <<<"$markers")" hwrng)')" \
  test "$(field "$(grep "guest=pvh-hugepages " <<<"$markers")" hwrng)" = none

# Each with the exit status the README promises (1: the VM could not be built; 2: usage), so a
# run that hung and was killed by timeout (124) fails.
for bad in missing-kernel:1 corrupt-kernel:1 memory-zero:2 hugepages-short:1; do
  want=${bad#*:} bad=${bad%:*}
  line=$(grep "^KEEL-TESTBED result bad=$bad " <<<"$markers" || true)
  expect "$bad: a result line" test -n "$line"
  code=$(field "$line" keel_exit)
  expect "$bad: keel exits $want (got '$code')" test "$code" = "$want"
  expect "$bad: no keel process left (got '$(field "$line" stray)')" test "$(field "$line" stray)" = 0
  expect "$bad: a message on the first line" grep -q "message=keel:_" <<<"$line"
done
msg() { field "$(grep "^KEEL-TESTBED result bad=$1 " <<<"$markers" || true)" message; }
expect "missing kernel names the path" grep -q "/nonexistent/vmlinuz" <<<"$(msg missing-kernel)"
expect "corrupt kernel says what is wrong" grep -qi "bzImage\|ELF\|format" <<<"$(msg corrupt-kernel)"
expect "size=0 names the option" grep -q "size=0" <<<"$(msg memory-zero)"
expect "size=0 is a usage error (exit 2)" grep -q "keel_exit=2" <<<"$(grep "bad=memory-zero" <<<"$markers")"
expect "hugepages=on without hugepages gives the numbers and the fix ($(msg hugepages-short))" \
  grep -q "needs_256_free_2_MiB_hugepages.*nr_hugepages" <<<"$(msg hugepages-short)"

finish testbed.boot
