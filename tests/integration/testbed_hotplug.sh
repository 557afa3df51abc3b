#!/usr/bin/env bash
# ctest testbed.hotplug: inside the emulated host (two edu devices, dma_entry_limit=30) keel
# boots Debian's cloud kernel with edu0 passed through and changes the running guest through
# the API (tests/integration/scenarios/hotplug.sh):
#  - the guest registers keel's 31 ACPI hot-plug slots (acpiphp);
#  - edu1 hot-added: vm.add-device answers with its guest BDF; the guest finds it without a
#    rescan and runs the edu DMA round trip on it and on edu0; vm.info shows a second container,
#    eager, one entry, consistent; edu1 is busy for anyone else;
#  - the VM rebooted: the new one has both edus from the start (edu1 in a container of its own,
#    its mode not edu0's), DMA on both;
#  - edu1 removed: the guest ejects it, vm.info drops it and its container, and a fresh
#    container on edu1 reads the whole limit again;
#  - dma_entry_limit lowered to 0: the hot-add is refused with the numbers and the fix, nothing
#    is left mapped or held (a fresh container opens), edu0 still does DMA, vm.info unchanged;
#  - a virtio disk hot-added: the guest mounts its ext4, reads the token, writes a file that
#    reaches the image; removed, the guest's /dev/vda goes;
#  - a virtio-net link hot-added over a TAP keel creates: guest and host ping each other; removed,
#    the guest's eth0 and keel's TAP go;
#  - the event monitor (--event-monitor) wrote each step as a JSON line, the refusal with its
#    numbers and each new container with its budget;
#  - memory hot-plug: a guest with 256 MiB of boot RAM and 768 MiB of virtio-mem grows to 1 GiB
#    (vm.resize), its MemTotal follows, edu0's eager container maps each plugged 128 MiB block
#    as one entry (7 in all, the kernel agreeing), and the edu's DMA runs between pages of the new
#    memory; shrunk to 512 MiB, the guest gives blocks back and their entries go; with a budget
#    of 4 entries the growth is limited to 640 MiB and says why;
#  - no DMAR fault, keel exits 0 and gives every entry back.
#
# usage: testbed_hotplug.sh RUN SCENARIO GUEST_INIT KEEL KEEL_REMOTE VFIO_PROBE EDU_TEST
set -euo pipefail
(($# == 7)) || {
  echo "usage: $0 RUN SCENARIO GUEST_INIT KEEL KEEL_REMOTE VFIO_PROBE EDU_TEST" >&2
  exit 2
}
run=$1 scenario=$2 guest_init=$3 keel=$4 remote=$5 probe=$6 edu_test=$7
testbed=$(dirname -- "$run")
limit=30

# shellcheck source=testbed_lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/testbed_lib.sh"
need_tools mkfs.ext4

work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT
kdir=$("$testbed/host-kernel.sh")
files=(--file "$kdir/guest-modules.load:/lib/modules/guest-modules.load"
  --file "$kdir/modules/uio.ko:/lib/modules/uio.ko"
  --file "$kdir/modules/uio_pci_generic.ko:/lib/modules/uio_pci_generic.ko"
  --file "$edu_test:/bin/edu_test")
while read -r ko _; do
  files+=(--file "$kdir/modules/$ko:/lib/modules/$ko")
done <"$kdir/guest-modules.load"
"$testbed/build-guest-initramfs.sh" --init "$guest_init" "${files[@]}" -o "$work/initramfs.cpio.gz"
token=hot-token-$RANDOM$RANDOM
mkdir -p "$work/disk"
echo "$token" >"$work/disk/token"
mkfs.ext4 -q -F -L keelhot -d "$work/disk" "$work/hot.img" 16M

status=0
markers=$("$run" --timeout 900 --edu 2 --append "vfio_iommu_type1.dma_entry_limit=$limit" \
  --bin "$keel" --bin "$remote" --bin "$probe" --file "$work/hot.img:/keel/guest/hot.img" \
  --guest-kernel "$kdir/vmlinuz" --guest-initramfs "$work/initramfs.cpio.gz" "$scenario") ||
  status=$?
printf '%s\n' "$markers"
expect "the testbed run exits 0 with no DMAR fault (got $status)" test "$status" -eq 0

head=$(grep '^KEEL-TESTBED result limit=' <<<"$markers" || true)
expect "the emulated host runs with dma_entry_limit=$limit" test "$(field "$head" limit)" = "$limit"
dev1=$(field "$head" dev1)
expect "the guest booted" grep -q "result booted=yes" <<<"$markers"
expect "no guest step timed out" test -z "$(grep 'result timeout=' <<<"$markers" || true)"
up=$(grep -m1 'KEEL-GUEST up ' <<<"$markers" || true)
expect "the guest registered 31 hot-plug slots (got '$(field "$up" slots)')" test "$(field "$up" slots)" = 31

ok() { expect "$1: keel-remote exits 0 (got '$(exit_of "$1")': $(out_of "$1"))" test "$(exit_of "$1")" = 0; }
probe_of() { grep "^KEEL-TESTBED result probe=$1 " <<<"$markers" || true; }
# edu_round N: the lines the guest printed for its Nth "edu" command (the guest's DMA results).
edu_round() {
  awk -v n="$1" '/^KEEL-TESTBED result guest KEEL-GUEST edus=/ {r++}
    r == n && /^KEEL-TESTBED result guest KEEL-GUEST (edus=|edu bdf=)/' <<<"$markers"
}

# 0. the baseline: edu0 does DMA; a fresh container on edu1 reads the whole limit
r=$(edu_round 1)
expect "round 1: one edu, its DMA round trip ok ($r)" test "$(grep -c 'dma=ok' <<<"$r")" = 1
expect "before: a fresh container on $dev1 reads avail=$limit" \
  test "$(field "$(probe_of before)" dma_avail)" = "$limit"

# 1. hot-add
ok add
expect "add: the answer names edu1 and its guest BDF ($(out_of add))" \
  test "$(json add .id)" = edu1 -a -n "$(json add '.bdf // empty')"
r=$(edu_round 2)
expect "round 2: the guest found the hot-added edu without a rescan ($r)" grep -q 'edus=2 want=2' <<<"$r"
expect "round 2: DMA round trips ok on both ($r)" test "$(grep -c 'dma=ok' <<<"$r")" = 2
expect "round 2: both interrupts reached the guest ($r)" test "$(grep -c 'irq=ok' <<<"$r")" = 2
ok info-added
expect "info-added: two containers" test "$(json info-added '.dma | length')" = 2
d='.dma[] | select(.devices[0].id == "edu1")'
expect "info-added: edu1's container read avail_at_open=$limit" test "$(json info-added "$d | .avail_at_open")" = "$limit"
expect "info-added: edu1's container is eager with one entry, consistent" \
  test "$(json info-added "$d | \"\(.mode),\(.entries_used),\(.consistent)\"")" = "eager,1,true"
expect "info-added: edu1 listed at $(json add .bdf)" \
  test "$(json info-added '.device_tree.edu1.pci_bdf')" = "$(json add .bdf)"
expect "added: $dev1 is busy for anyone else ($(probe_of added))" grep -qi busy <<<"$(probe_of added)"

# 1b. reboot: the hot-added device is the new VM's from the start, in a container of its own
# (its mode, auto, is not edu0's eager)
ok reboot
r=$(edu_round 3)
expect "round 3: after the reboot the guest has both edus at boot, DMA ok on both ($r)" \
  test "$(grep -c 'dma=ok' <<<"$r")" = 2
expect "info-rebooted: two containers, edu1's own, consistent" \
  test "$(json info-rebooted '[.dma[] | select(.consistent)] | length')" = 2

# 2. hot-remove
ok remove
g=$(grep '^KEEL-TESTBED result gone=edu1 ' <<<"$markers" || true)
expect "remove: the guest ejected edu1 and vm.info dropped it ($g)" test "$(field "$g" listed)" = 0
r=$(edu_round 4)
expect "round 4: one edu left, its DMA ok ($r)" test "$(grep -c 'dma=ok' <<<"$r")" = 1 -a -n "$(grep 'edus=1 want=1' <<<"$r")"
ok info-removed
expect "info-removed: one container again" test "$(json info-removed '.dma | length')" = 1
expect "removed: a fresh container on $dev1 reads avail=$limit again ($(probe_of removed))" \
  test "$(field "$(probe_of removed)" dma_avail)" = "$limit"

# 3. a budget too short
expect "add-short: refused (exit '$(exit_of add-short)')" test "$(exit_of add-short)" != 0 -a -n "$(exit_of add-short)"
expect "add-short: the message names the numbers and dma_entry_limit ($(out_of add-short))" \
  grep -q "dma_entry_limit" <<<"$(out_of add-short)"
expect "add-short: nothing held: a fresh container on $dev1 opens ($(probe_of short))" \
  test "$(field "$(probe_of short)" dma_avail)" = 0
r=$(edu_round 5)
expect "round 5: edu0 still does DMA after the refusal ($r)" test "$(grep -c 'dma=ok' <<<"$r")" = 1
expect "round 5: and still gets its interrupt ($r)" test "$(grep -c 'irq=ok' <<<"$r")" = 1
ok info-short
expect "info-short: still one container, consistent" \
  test "$(json info-short '"\(.dma | length),\(.dma[0].consistent)"')" = "1,true"
expect "info-short: edu1 is not listed" test -z "$(json info-short '.device_tree.edu1 // empty')"

# 4. a virtio disk
ok add-disk
disk=$(grep -m1 'KEEL-GUEST disk=' <<<"$markers" || true)
expect "disk: the guest mounted the hot-added disk and used it ($disk)" test "$(field "$disk" disk)" = yes
expect "disk: it read the token written on the host" test "$(field "$disk" token)" = "$token"
ok remove-disk
g=$(grep '^KEEL-TESTBED result gone=hotdisk ' <<<"$markers" || true)
expect "remove-disk: vm.info dropped it ($g)" test "$(field "$g" listed)" = 0
gone=$(grep -m1 'KEEL-GUEST disk-gone=' <<<"$markers" || true)
expect "remove-disk: /dev/vda went away in the guest ($gone)" test "$(field "$gone" disk-gone)" = yes
written=$(grep '^KEEL-TESTBED result image_written=' <<<"$markers" || true)
expect "disk: the guest's file reached the image ($written)" test "$(field "$written" image_written)" -ge 1

# 5. the event monitor saw it all, in order
events=$(sed -n 's/^KEEL-TESTBED result event //p' <<<"$markers")
names=$(jq -r '.event' <<<"$events" 2>/dev/null | tr '\n' ' ')
expect "events: the monitor's lines are JSON objects ($names)" test -n "$names"
expect "events: the life of the VM in order ($names)" grep -q \
  "starting booting booted container-opened device-added container-opened rebooting booting booted container-opened container-opened device-eject-requested device-removed device-add-refused device-added device-eject-requested device-removed device-added device-eject-requested device-removed resize resize resize rebooting booting booted container-opened resize shutdown" <<<"$names"
refusal=$(jq -r 'select(.event == "device-add-refused") | .properties.error' <<<"$events" 2>/dev/null)
expect "events: the refusal carries the numbers ($refusal)" grep -q "dma_entry_limit" <<<"$refusal"
opened=$(jq -c 'select(.event == "container-opened") | .properties' <<<"$events" 2>/dev/null | tail -n 1)
expect "events: edu1's container: avail_at_open=$limit, one entry, eager ($opened)" \
  test "$(jq -r '"\(.avail_at_open),\(.entries_used),\(.mode)"' <<<"$opened")" = "$limit,1,eager"

# 6. memory hot-plug: 256 MiB + 768 MiB of virtio-mem, edu0 eager
gib=1073741824 mib=1048576
for name in ample short; do
  m=$(grep "^KEEL-TESTBED result mem=$name up=" <<<"$markers" || true)
  expect "mem $name: the guest came up ($m)" test "$(field "$m" up)" = yes
  ok "mem-$name-grow"
  expect "mem $name: at boot, memory_actual_size is the boot RAM" \
    test "$(json "mem-$name-info-boot" '.memory_actual_size')" = $((256 * mib))
  e=$(grep "^KEEL-TESTBED result mem=$name keel_exit=" <<<"$markers" || true)
  expect "mem $name: keel exits 0 ($e)" test "$(field "$e" keel_exit)" = 0
done
boot_kb=$(field "$(grep '^KEEL-TESTBED result mem=ample up=' <<<"$markers")" boot_kb)
grown=$(grep "^KEEL-TESTBED result mem-ample guest KEEL-GUEST mem_kb=.* want_at_least" <<<"$markers" || true)
expect "mem ample: the guest's MemTotal grew by at least 700 MiB ($boot_kb -> $(field "$grown" mem_kb))" \
  test "$(field "$grown" mem_kb)" -ge $((boot_kb + 700 * 1024))
expect "mem ample: vm.info's memory_actual_size is 1 GiB" \
  test "$(json mem-ample-info-grown .memory_actual_size)" = "$gib"
expect "mem ample: edu0's container holds one entry for boot RAM and one per 128 MiB plugged (7)" \
  test "$(json mem-ample-info-grown '.dma[0].entries_used')" = 7
expect "mem ample: the kernel agrees (avail_now $((limit - 7)), consistent)" \
  test "$(json mem-ample-info-grown '"\(.dma[0].avail_now),\(.dma[0].consistent)"')" = "$((limit - 7)),true"
high=$(grep "^KEEL-TESTBED result mem-ample guest KEEL-GUEST edu bdf=" <<<"$markers" || true)
src=$(sed -n 's/.*dma=ok_src=\(0x[0-9a-f]*\)_dst=\(0x[0-9a-f]*\).*/\1 \2/p' <<<"$high")
expect "mem ample: the edu's DMA round trip ran between pages of the new memory ($high)" \
  test -n "$src" -a "$(( ${src% *} >= 0x100000000 && ${src#* } >= 0x100000000 ))" = 1
ok mem-ample-shrink
shrunk=$(grep "^KEEL-TESTBED result mem-ample guest KEEL-GUEST mem_kb=.* want_at_most" <<<"$markers" || true)
expect "mem ample: shrunk, the guest gave memory back ($shrunk)" \
  test "$(field "$shrunk" mem_kb)" -le $((boot_kb + 300 * 1024))
expect "mem ample: vm.info's memory_actual_size is 512 MiB after the shrink" \
  test "$(json mem-ample-info-shrunk .memory_actual_size)" = $((512 * mib))
expect "mem ample: the unplugged ranges' entries are gone (3 left), consistent" \
  test "$(json mem-ample-info-shrunk '"\(.dma[0].entries_used),\(.dma[0].consistent)"')" = "3,true"
expect "mem ample: virtio-mem counted the plugs and unplugs" \
  test "$(json mem-ample-counters '._mem.plugged_bytes')" = $((256 * mib))
# The short budget: 4 entries, one taken by boot RAM: the growth is limited to 3 x 128 MiB.
expect "mem short: the resize was limited to 640 MiB" \
  test "$(json mem-short-info-grown .memory_actual_size)" = $((640 * mib))
expect "mem short: every entry used, none over, consistent" \
  test "$(json mem-short-info-grown '"\(.dma[0].entries_used),\(.dma[0].avail_now),\(.dma[0].consistent)"')" = "4,0,true"
limited=$(sed -n 's/^KEEL-TESTBED result mem-short event //p' <<<"$markers" | jq -r 'select(.event == "resize") | .properties.limited // empty' 2>/dev/null)
expect "mem short: the resize event says it was limited and why ($limited)" grep -q "DMA entries" <<<"$limited"
high=$(grep "^KEEL-TESTBED result mem-short guest KEEL-GUEST edu bdf=" <<<"$markers" || true)
expect "mem short: the edu still does DMA in the memory it got ($high)" grep -q "dma=ok" <<<"$high"
expect "after the memory runs: a fresh container on edu0 reads avail=$limit" \
  test "$(field "$(probe_of after-mem)" dma_avail)" = "$limit"

# 4b. a virtio-net link
ok add-net
net=$(grep -m1 'KEEL-GUEST net=' <<<"$markers" || true)
expect "net: the guest found the hot-added link and got 3 pings back ($net)" \
  test "$(field "$net" net),$(field "$net" received)" = "up,3"
hp=$(grep '^KEEL-TESTBED result host_ping=' <<<"$markers" || true)
expect "net: the host got 3 pings back from the guest ($hp)" test "$(field "$hp" host_ping)" = 3
ok remove-net
gone=$(grep -m1 'KEEL-GUEST net-gone=' <<<"$markers" || true)
expect "net: removed, eth0 went away in the guest ($gone)" test "$(field "$gone" net-gone)" = yes
tl=$(grep '^KEEL-TESTBED result tap_left=' <<<"$markers" || true)
expect "net: keel's TAP went with the link ($tl)" test "$(field "$tl" tap_left)" = no

# 4c. vCPUs: 1 at boot, 3 possible
ok cpus-grow
grown=$(grep -m1 'KEEL-GUEST cpus=.*want=3' <<<"$markers" || true)
expect "cpus: the guest found both plugged vCPUs, onlined them, and runs on 3 ($grown)" \
  test "$(field "$grown" cpus),$(field "$grown" present),$(field "$grown" online)" = "3,3,0-2"
ok info-cpus-grown
expect "cpus: vm.info says 3 of at most 3" \
  test "$(json info-cpus-grown '"\(.config.cpus.boot_vcpus),\(.config.cpus.max_vcpus)"')" = "3,3"
ok cpus-shrink
shrunk=$(grep -m1 'KEEL-GUEST cpus=.*want_present=2' <<<"$markers" || true)
expect "cpus: asked back, the guest ejected the highest vCPU and runs on 2 ($shrunk)" \
  test "$(field "$shrunk" cpus),$(field "$shrunk" present),$(field "$shrunk" online)" = "2,2,0-1"
expect "cpus: vm.info says 2" test "$(json info-cpus-shrunk .config.cpus.boot_vcpus)" = 2
expect "cpus: more than max_vcpus is refused with the range ($(out_of cpus-over))" \
  grep -q "outside 1 to 3" <<<"$(out_of cpus-over)"
r=$(edu_round 6)
expect "cpus: edu0 still does DMA and gets its interrupt ($r)" \
  test "$(grep -c 'dma=ok' <<<"$r"),$(grep -c 'irq=ok' <<<"$r")" = "1,1"
ok cpus-regrow
ok cpus-reboot
rebooted=$(grep 'KEEL-GUEST cpus=.*want=3' <<<"$markers" | sed -n 3p)
expect "cpus: rebooted at max_vcpus, the guest starts with 3 vCPUs ($rebooted)" \
  test "$(field "$rebooted" cpus),$(field "$rebooted" present)" = "3,3"
ok cpus-shrink-rebooted
again=$(grep 'KEEL-GUEST cpus=.*want_present=2' <<<"$markers" | sed -n 2p)
expect "cpus: and can still give one back ($again)" \
  test "$(field "$again" cpus),$(field "$again" present)" = "2,2"

end=$(grep '^KEEL-TESTBED result keel_exit=' <<<"$markers" || true)
expect "keel exits 0 after vmm.shutdown (got '$(field "$end" keel_exit)')" test "$(field "$end" keel_exit)" = 0
expect "after exit: a fresh container on edu0 reads avail=$limit" \
  test "$(field "$(probe_of after-exit)" dma_avail)" = "$limit"

finish testbed.hotplug
