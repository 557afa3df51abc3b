#!/usr/bin/env bash
# ctest testbed.devices: inside the emulated host, keel boots Debian's cloud kernel (its virtio
# modules in the initramfs) with its root on a virtio-blk disk, an ext4 image built here:
#  - a first run writes a token and 8 MiB of random data; meanwhile a second keel on the same
#    image is refused (the image is locked) and vm.info / vm.counters show the disk and its I/O;
#  - a second run (two queues) finds the token and the data, read back past the page cache;
#  - a read-only run cannot write, through the file system or to the raw disk, and the image
#    is unchanged;
#  - a virtio-net link over a TAP keel creates in a network namespace of its own, host side
#    169.254.20.1/16: guest and host ping each other and fetch 4 MiB from each other over HTTP
#    (TCP both ways), checksums compared; vm.counters counts the bytes;
#  - in the same run, virtio-vsock through keel's hybrid socket: a host program connects to a
#    guest listener (CONNECT <port>) and the guest connects out to a host listener (PATH_<port>),
#    4 MiB each way and echoed back equal; the socket is gone when keel ends; and the guest reads
#    its hwrng (virtio-rng);
#  - in the same run, virtio-fs: QEMU 7.2's virtiofsd in the emulated host shares a directory;
#    the guest mounts it (mount -t virtiofs), reads the host's 2 MiB file and writes its own, both
#    checksummed on both sides; vm.info lists the share; virtiofsd ends with keel;
#  - a symlink, a FIFO, a missing file and a bad queue count are refused with a message.
#
# usage: testbed_devices.sh RUN SCENARIO INITRAMFS_INIT ROOTFS_INIT KEEL KEEL_REMOTE VSOCK_PROBE
set -euo pipefail
(($# == 7)) || { echo "usage: $0 RUN SCENARIO INITRAMFS_INIT ROOTFS_INIT KEEL KEEL_REMOTE VSOCK_PROBE" >&2; exit 2; }
run=$1 scenario=$2 initramfs_init=$3 rootfs_init=$4 keel=$5 remote=$6 probe=$7
testbed=$(dirname -- "$run")

# shellcheck source=testbed_lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/testbed_lib.sh"
need_tools mkfs.ext4 busybox

work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT
kdir=$("$testbed/host-kernel.sh")
modules=(--file "$kdir/guest-modules.load:/lib/modules/guest-modules.load")
while read -r ko _; do
  modules+=(--file "$kdir/modules/$ko:/lib/modules/$ko")
done <"$kdir/guest-modules.load"
"$testbed/build-guest-initramfs.sh" --init "$initramfs_init" "${modules[@]}" -o "$work/initramfs.cpio.gz"

# The root disk: static busybox and the test's /sbin/init on ext4, built without mounting.
root=$work/rootfs
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp}
cp -- "$(command -v busybox)" "$root/bin/busybox"
cp -- "$rootfs_init" "$root/sbin/init"
cp -- "$probe" "$root/bin/vsock_probe"
chmod 0755 "$root/sbin/init"
mkfs.ext4 -q -F -L keelroot -d "$root" "$work/root.img" 48M

status=0
markers=$("$run" --timeout 900 --memory 2G --bin "$keel" --bin "$remote" --bin "$probe" \
  --bin /usr/lib/qemu/virtiofsd \
  --guest-kernel "$kdir/vmlinuz" --guest-initramfs "$work/initramfs.cpio.gz" \
  --file "$work/root.img:/keel/guest/root.img" "$scenario") || status=$?
printf '%s\n' "$markers"
expect "the testbed run exits 0 (got $status)" test "$status" -eq 0

line() { grep "^KEEL-TESTBED result $1" <<<"$markers" | head -n 1 || true; }
write=$(line "run=write ")
check=$(line "run=check ")
ro=$(line "run=ro ")
for name in write check ro; do
  l=$(line "run=$name ")
  expect "$name: the guest came up from its disk (got '$(field "$l" up)')" test "$(field "$l" up)" = ok
  expect "$name: power-off ends keel with 0 (got '$(field "$l" keel_exit)')" test "$(field "$l" keel_exit)" = 0
  expect "$name: the initramfs mounted /dev/vda (got '$(field "$l" root)')" grep -q '^/dev/vda' <<<"$(field "$l" root)"
done
expect "write: root is /dev/vda, ext4, read-write" grep -q "root=/dev/vda:ext4:rw" <<<"$write"
token=$(field "$write" token)
sum=$(field "$write" data_sha)
expect "write: a token was written (got '$token')" test "${#token}" -eq 36
expect "write: 8 MiB were written (sha '$sum')" test "${#sum}" -eq 64
expect "check: the token is on the disk (got '$(field "$check" token)')" test "$(field "$check" token)" = "$token"
expect "check: the data is on the disk (got '$(field "$check" data_sha)')" test "$(field "$check" data_sha)" = "$sum"
expect "check: read past the page cache too (got '$(field "$check" data_sha_uncached)')" \
  test "$(field "$check" data_sha_uncached)" = "$sum"
expect "ro: the disk is read-only in the guest" test "$(field "$ro" disk_ro)" = 1
expect "ro: root mounted read-only" grep -q "root=/dev/vda:ext4:ro" <<<"$ro"
expect "ro: a file-system write fails" test "$(field "$ro" fs_write)" = refused
expect "ro: a raw write fails" test "$(field "$ro" raw_write)" = refused
img=$(line "image ")
expect "the image changed by the writing run" test "$(field "$img" changed_by_write)" = yes
expect "the image unchanged by the read-only run" test "$(field "$img" unchanged_by_ro)" = yes

second=$(line "second_keel_exit=")
expect "a second keel on the image is refused with exit 1 (got '$(field "$second" second_keel_exit)')" \
  test "$(field "$second" second_keel_exit)" = 1
expect "...saying it is in use ($(field "$second" message))" grep -q "is_in_use" <<<"$(field "$second" message)"
info=$(field "$(line "info=")" info)
expect "vm.info lists the disk with its guest address ($info)" \
  grep -q '"id":"_disk0","pci_bdf":"0000:00:[0-9a-f][0-9a-f].0"' <<<"$info"
expect "vm.info carries the DiskConfig" grep -q '"disks":\[{[^]]*"path":"/tmp/root.img"' <<<"$info"
counters=$(field "$(line "counters=")" counters)
read_bytes=$(grep -o '"_disk0":{[^}]*}' <<<"$counters" | grep -o '"read_bytes":[0-9]*' | cut -d: -f2)
write_bytes=$(grep -o '"_disk0":{[^}]*}' <<<"$counters" | grep -o '"write_bytes":[0-9]*' | cut -d: -f2)
expect "vm.counters: the disk read its root (read_bytes '${read_bytes:-}')" test "${read_bytes:-0}" -gt 0
expect "vm.counters: 8 MiB and more written (write_bytes '${write_bytes:-}')" test "${write_bytes:-0}" -ge 8388608

# The network (keel and its TAP in a namespace of their own).
net=$(line "run=net ")
host=$(line "net_host ")
expect "net: the guest came up and keel ended with 0 ($(field "$net" up), $(field "$net" keel_exit))" \
  test "$(field "$net" up):$(field "$net" keel_exit)" = ok:0
expect "net: the guest pings the host (got '$(field "$net" ping)')" test "$(field "$net" ping)" = ok
expect "net: the host pings the guest (got '$(field "$host" ping)')" test "$(field "$host" ping)" = ok
expect "net: 4 MiB host to guest over TCP, checksums equal ($(field "$net" got_sha) vs $(field "$host" host_sha))" \
  test -n "$(field "$host" host_sha)" -a "$(field "$net" got_sha)" = "$(field "$host" host_sha)"
expect "net: 4 MiB guest to host over TCP, checksums equal ($(field "$host" fetched_sha) vs $(field "$net" served_sha))" \
  test -n "$(field "$net" served_sha)" -a "$(field "$host" fetched_sha)" = "$(field "$net" served_sha)"
expect "net: keel created the TAP in its namespace (got '$(field "$host" tap)')" test "$(field "$host" tap)" = present
expect "net: the TAP is not in the emulated host's own namespace" \
  test "$(field "$(line "net_outside ")" tap)" = none
netc=$(field "$host" counters)
rx=$(grep -o '"_net0":{[^}]*}' <<<"$netc" | grep -o '"rx_bytes":[0-9]*' | cut -d: -f2)
tx=$(grep -o '"_net0":{[^}]*}' <<<"$netc" | grep -o '"tx_bytes":[0-9]*' | cut -d: -f2)
expect "vm.counters: _net0 received the host's 4 MiB (rx_bytes '${rx:-}')" test "${rx:-0}" -ge 4194304
expect "vm.counters: _net0 sent the guest's 4 MiB (tx_bytes '${tx:-}')" test "${tx:-0}" -ge 4194304

# Beside them, in the network run: an edu passed through, mapped eagerly, the budget consistent.
edu=$(field "$(line "edu_info ")" info)
expect "net run: the edu is mapped eagerly beside the virtio devices ($edu)" \
  grep -q '"mode":"eager"' <<<"$edu"
expect "net run: the DMA accounting is consistent with the kernel's" grep -q '"consistent":true' <<<"$edu"
# vsock and rng, in the network run.
vh=$(line "vsock_host ")
vg=$(line "vsock_guest ")
expect "vsock: the host's CONNECT 1234 was answered OK <port> (got '$(field "$vh" ok)')" \
  grep -q '^OK_[0-9]' <<<"$(field "$vh" ok)"
expect "vsock: host to guest listener, 4 MiB echoed back equal ($vh)" \
  test "$(field "$vh" sent):$(field "$vh" received):$(field "$vh" equal)" = 4194304:4194304:yes
expect "vsock: guest to the host's PATH_5000, 4 MiB echoed back equal ($vg)" \
  test "$(field "$vg" sent):$(field "$vg" received):$(field "$vg" equal)" = 4194304:4194304:yes
expect "vsock: keel's socket exists while it runs" test "$(field "$vh" socket)" = present
expect "vsock: and is removed when keel ends" test "$(field "$(line "vsock_after ")" socket)" = none
vc=$(field "$vh" counters)
vrx=$(grep -o '"_vsock0":{[^}]*}' <<<"$vc" | grep -o '"rx_bytes":[0-9]*' | cut -d: -f2)
vtx=$(grep -o '"_vsock0":{[^}]*}' <<<"$vc" | grep -o '"tx_bytes":[0-9]*' | cut -d: -f2)
expect "vm.counters: _vsock0 carried 8 MiB to the guest (rx_bytes '${vrx:-}')" test "${vrx:-0}" -ge 8388608
expect "vm.counters: _vsock0 carried 8 MiB from the guest (tx_bytes '${vtx:-}')" test "${vtx:-0}" -ge 8388608
rng=$(line "rng_guest ")
expect "rng: the guest's hwrng is virtio-rng (got '$(field "$rng" current)')" \
  grep -q '^virtio_rng' <<<"$(field "$rng" current)"
expect "rng: the guest read 32 bytes from /dev/hwrng, not all zero ($(field "$rng" hex))" \
  grep -q '^[0-9a-f]\{64\}$' <<<"$(field "$rng" hex)"
expect "rng: ... not all zero" grep -q '[1-9a-f]' <<<"$(field "$rng" hex)"

# virtio-fs, in the network run.
fsh=$(line "fs_host ")
fsg=$(line "fs_guest ")
expect "fs: the guest mounted the share (got '$(field "$fsg" mount)')" test "$(field "$fsg" mount)" = ok
expect "fs: the guest read the host's 2 MiB file equal ($(field "$fsg" read_sha) vs $(field "$fsh" share_sha))" \
  test -n "$(field "$fsh" share_sha)" -a "$(field "$fsg" read_sha)" = "$(field "$fsh" share_sha)"
expect "fs: the host has the guest's 2 MiB file equal ($(field "$fsh" guest_file_sha) vs $(field "$fsg" written_sha))" \
  test "$(field "$fsg" written_sha)" != none -a "$(field "$fsh" guest_file_sha)" = "$(field "$fsg" written_sha)"
expect "fs: vm.info lists the share with its guest address" \
  grep -q '"id":"_fs0","pci_bdf":"0000:00:[0-9a-f][0-9a-f].0"' <<<"$edu"
expect "fs: vm.info carries the FsConfig" grep -q '"fs":\[{"id":"_fs0"[^]]*"tag":"keelshare"' <<<"$edu"
expect "fs: virtiofsd ended with keel (got '$(field "$fsh" virtiofsd_gone)')" \
  test "$(field "$fsh" virtiofsd_gone)" = yes

for bad in symlink:1:symbolic_link fifo:1:not_a_regular_file missing:1:missing.img queues:2:num_queues=99; do
  IFS=: read -r name want words <<<"$bad"
  l=$(line "bad=$name ")
  expect "$name: keel exits $want (got '$(field "$l" keel_exit)')" test "$(field "$l" keel_exit)" = "$want"
  expect "$name: no keel left (got '$(field "$l" stray)')" test "$(field "$l" stray)" = 0
  expect "$name: the message says why ($(field "$l" message))" grep -q "$words" <<<"$(field "$l" message)"
done

finish testbed.devices
