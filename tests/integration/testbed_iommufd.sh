#!/usr/bin/env bash
# ctest testbed.iommufd: Keel's iommufd calls against a real kernel. The emulated host boots a
# kernel built from linux-source-6.12 with IOMMUFD and the VFIO device cdev (run --host-kernel
# iommufd; built once, about 11 minutes, then cached) with two edus (scenarios/iommufd.sh):
#   - /dev/iommu and one cdev per vfio-pci device exist;
#   - for each edu, iommufd_probe binds the cdev, attaches it to a new IOAS, reads the IOVA ranges
#     (the x86 MSI window left out), maps 70 000 separate 4 KiB pages where type1 stops at its
#     dma_entry_limit (65 535, checked on the same device and kernel), unmaps them all, and moves
#     data through the IOAS with the edu's DMA engine;
#   - pinned memory is charged to the user's RLIMIT_MEMLOCK: with 1 MiB and no CAP_IPC_LOCK, the
#     257th page is refused with ENOMEM;
#   - keel on that kernel: with backend=auto both edus go to one iommufd IOAS (the report says
#     so and why), the eager plan maps guest RAM, and the Debian guest's edu_test moves data and
#     takes interrupts through them;
#   - one edu behind the virtual IOMMU, mapped lazily: the guest's own VFIO holds 70 000 separate
#     4 KiB mappings on iommufd (peak_entries >= 70 000, no refusal, the sampled ones move data);
#     the same guest on type1 is refused before dma_entry_limit (65 535, less the progress
#     reserve) with ENOMEM in the guest, and vm.info names the backend and why;
#   - 1 MiB of RLIMIT_MEMLOCK without CAP_IPC_LOCK: keel refuses backend=iommufd with the numbers
#     and the fix;
#   - no DMAR fault (run's default).
#
# usage: testbed_iommufd.sh RUN SCENARIO IOMMUFD_PROBE VFIO_PROBE MEMLOCK_EXEC KEEL KEEL_REMOTE
#          EDU_INIT EDU_TEST LAZY_INIT LAZY_TEST
set -euo pipefail
(($# == 11)) || {
  echo "usage: $0 RUN SCENARIO IOMMUFD_PROBE VFIO_PROBE MEMLOCK_EXEC KEEL KEEL_REMOTE EDU_INIT EDU_TEST LAZY_INIT LAZY_TEST" >&2
  exit 2
}
run=$1 scenario=$2 iommufd_probe=$3 vfio_probe=$4 memlock_exec=$5 keel=$6 keel_remote=$7
edu_init=$8 edu_test=$9 lazy_init=${10} lazy_test=${11}
testbed=$(dirname -- "$run")
# The guest holds more mappings than type1's default limit (65 535) allows; each is a
# virtio-iommu round trip (1 500 took about 7 s with the boot).
hold=70000

# shellcheck source=testbed_lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/testbed_lib.sh"

work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT
# Two guests: Debian's kernel with uio for edu_test (as testbed.vfio), and the built guest
# kernel (virtio-iommu and VFIO) for lazy_test (as testbed.lazy).
kdir=$("$testbed/host-kernel.sh")
edu_initramfs "$testbed" "$kdir" "$edu_init" "$edu_test" "$work/edu-initramfs.cpio.gz"
lazy_kernel="$("$testbed/build-guest-kernel.sh")/bzImage"
"$testbed/build-guest-initramfs.sh" --init "$lazy_init" --file "$lazy_test:/bin/lazy_test" \
  -o "$work/lazy-initramfs.cpio.gz"

status=0
# tsc=unstable: KVM is built into this kernel and would take the TCG CPU's TSC rate before the
# kernel refines it; every guest would then run on a wrong TSC rate.
markers=$("$run" --host-kernel iommufd --timeout 2700 --edu 2 --memory 3G --append "tsc=unstable" \
  --env KEEL_GUESTS=1 --env "KEEL_HOLD=$hold" \
  --bin "$iommufd_probe" --bin "$vfio_probe" --bin "$memlock_exec" --bin "$keel" --bin "$keel_remote" \
  --file "$kdir/vmlinuz:/keel/guest/edu-vmlinuz" --file "$work/edu-initramfs.cpio.gz:/keel/guest/edu-initramfs.cpio.gz" \
  --file "$lazy_kernel:/keel/guest/lazy-vmlinuz" --file "$work/lazy-initramfs.cpio.gz:/keel/guest/lazy-initramfs.cpio.gz" \
  "$scenario") || status=$?
printf '%s\n' "$markers"
expect "the testbed run exits 0 (got $status)" test "$status" -eq 0
line() { grep "^KEEL-TESTBED result $1" <<<"$markers" | head -n 1 || true; }

k=$(line "kernel ")
expect "the host kernel has /dev/iommu ($k)" test "$(field "$k" dev_iommu)" = yes
expect "a cdev per vfio-pci device ($(field "$k" cdevs))" \
  test "$(tr ',' '\n' <<<"$(field "$k" cdevs)" | grep -c '^vfio[0-9]')" -ge 2
for bdf in $(grep -o '^KEEL-TESTBED result iommufd bdf=[^ ]*' <<<"$markers" | sed 's/.*bdf=//'); do
  l=$(line "iommufd bdf=$bdf ")
  expect "$bdf: bound and attached through its cdev ($l)" test -n "$(field "$l" ioas)" -a -n "$(field "$l" devid)"
  expect "$bdf: the IOVA ranges leave the MSI window out ($(field "$l" iova_ranges))" \
    test "$(cut -d, -f1 <<<"$(field "$l" iova_ranges)")" = 0x0-0xfedfffff
  expect "$bdf: 4 KiB alignment ($(field "$l" alignment))" test "$(field "$l" alignment)" = 0x1000
  expect "$bdf: pinned pages charged to the user by default" test "$(field "$l" charged)" = user
  expect "$bdf: 70000 separate mappings, more than type1 allows ($(field "$l" mapped) $(field "$l" stop))" \
    test "$(field "$l" mapped):$(field "$l" stop)" = 70000:ok
  expect "$bdf: a DMA round trip through the IOAS ($(field "$l" dma))" test "$(field "$l" dma)" = ok
done
expect "both edus were probed" test "$(grep -c '^KEEL-TESTBED result iommufd bdf=' <<<"$markers")" = 2
t=$(line "type1 ")
expect "type1 on the same kernel stops at dma_entry_limit ($(field "$t" mapped) $(field "$t" stop))" \
  test "$(field "$t" mapped):$(field "$t" stop)" = 65535:ENOSPC
m=$(line "memlock ")
expect "1 MiB of RLIMIT_MEMLOCK pins 256 pages, the 257th is ENOMEM ($m)" \
  test "$(field "$m" mapped):$(field "$m" stop)" = 256:ENOMEM
# keel, eager, backend=auto: iommufd for both edus in one IOAS.
e=$(line "run=eager keel_exit=")
expect "eager: keel exits 0 after the guest powers off ($(field "$e" keel_exit))" test "$(field "$e" keel_exit)" = 0
expect "eager: backend iommufd ($(field "$e" backend))" test "$(field "$e" backend)" = iommufd
expect "eager: avail_source says iommufd counts no entries ($(field "$e" source))" test "$(field "$e" source)" = iommufd
expect "eager: mode eager ($(field "$e" mode))" test "$(field "$e" mode)" = eager
expect "eager: both edus in one IOAS" grep -q "devices=0000:00:0[12].0,0000:00:0[12].0" <<<"$e"
r=$(line "run=eager backend_reason=")
expect "eager: auto chose iommufd and says why ($r)" grep -q "backend_reason=iommufd_(auto:" <<<"$r"
for bdf in $(grep -o 'KEEL-TESTBED result run=eager guest edu bdf=[^ ]*' <<<"$markers" | sed 's/.*bdf=//'); do
  g=$(line "run=eager guest edu bdf=$bdf ")
  expect "eager: guest $bdf: edu DMA round trip through iommufd ($(field "$g" dma))" grep -q '^ok' <<<"$(field "$g" dma)"
  expect "eager: guest $bdf: edu interrupt ($(field "$g" irq))" grep -q '^ok' <<<"$(field "$g" irq)"
done
expect "eager: the guest saw 2 edu devices" grep -q "result run=eager guest edu devices=2" <<<"$markers"

# keel, lazy, the guest holding more mappings than type1 allows.
h=$(line "run=hold-iommufd phase=hold ")
expect "iommufd: the guest finished ($(line "run=hold-iommufd finished="))" grep -q "finished=yes" <<<"$(line "run=hold-iommufd finished=")"
expect "iommufd: all $hold mappings granted, none refused ($h)" \
  test "$(field "$h" granted):$(field "$h" errno)" = "$hold:none"
expect "iommufd: every sampled mapping moved data ($(field "$h" moved) of $(field "$h" tried))" \
  test "$(field "$h" moved)" = "$(field "$h" tried)" -a "$(field "$h" tried)" -gt 1
i=$(line "run=hold-iommufd info ")
expect "iommufd: vm.info reports backend iommufd ($i)" test "$(field "$i" backend)" = iommufd
expect "iommufd: vm.info avail_source iommufd" test "$(field "$i" avail_source)" = iommufd
expect "iommufd: vm.info peak_entries >= $hold ($(field "$i" peak_entries))" test "$(field "$i" peak_entries)" -ge "$hold"
expect "iommufd: no refusal ($i)" test "$(field "$i" refused_budget):$(field "$i" enospc):$(field "$i" enomem)" = 0:0:0
expect "iommufd: keel exits 0 ($(line "run=hold-iommufd keel_exit="))" grep -q "keel_exit=0" <<<"$(line "run=hold-iommufd keel_exit=")"
t=$(line "run=hold-type1 phase=hold ")
expect "type1: the guest finished" grep -q "finished=yes" <<<"$(line "run=hold-type1 finished=")"
expect "type1: the kernel's limit, 65535, for that run" grep -q "run=hold-type1 limit=65535" <<<"$markers"
expect "type1: refused before 65535 with ENOMEM in the guest ($t)" \
  test "$(field "$t" errno)" = ENOMEM -a "$(field "$t" granted)" -lt 65535
expect "type1: after freeing half, a MAP works again ($(field "$t" after))" test "$(field "$t" after)" = ok
ti=$(line "run=hold-type1 info ")
expect "type1: vm.info says type1, as requested ($ti)" test "$(field "$ti" backend)" = vfio-type1v2
expect "type1: refusals counted as budget refusals ($(field "$ti" refused_budget))" test "$(field "$ti" refused_budget)" -ge 1
expect "type1: the budget binds: peak_entries <= 65535 ($(field "$ti" peak_entries))" test "$(field "$ti" peak_entries)" -le 65535

# keel refused for memlock on iommufd.
m2=$(line "run=memlock keel_exit=")
expect "memlock: keel refuses ($(field "$m2" keel_exit))" test "$(field "$m2" keel_exit)" = 1
msg=$(line "run=memlock message=")
expect "memlock: the message has the numbers and the fix ($msg)" \
  grep -q "RLIMIT_MEMLOCK_of_1_MiB.*ulimit_-l_524288" <<<"$msg"
finish testbed.iommufd
