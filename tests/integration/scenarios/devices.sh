#!/bin/sh
# Runs inside the emulated host: keel boots Debian's cloud kernel with its root on a virtio-blk
# disk (an ext4 image): a first run writes a token and 8 MiB of data, while it runs a second
# keel on the same image is refused and keel-remote reads the disk's counters; a second run
# finds the token and the data; a read-only run cannot write. Then bad disk arguments.
# Reports facts only; tests/integration/testbed_devices.sh checks them.
. /keel/testbed.sh

kernel=/keel/guest/vmlinuz
initramfs=/keel/guest/initramfs.cpio.gz
image=/tmp/root.img
cp /keel/guest/root.img "$image"
sock=/tmp/keel-api.sock

# run NAME MODE DISK_OPTIONS [KEEL ARGS...]: boots with the disk, waits for the guest's report,
# runs $during (if set) while the guest waits, powers it off; reports the guest's lines.
run() {
  name=$1 mode=$2 disk=$3
  shift 3
  out=/tmp/$name.out
  fifo=/tmp/$name.in
  rm -f "$fifo" "$out" "$sock"
  mkfifo "$fifo"
  # shellcheck disable=SC2086 # $launcher is words or nothing
  ${launcher:-} keel --kernel "$kernel" --initramfs "$initramfs" --memory "${memory:-size=512M}" --serial tty \
    --cmdline "console=ttyS0 root=/dev/vda keel.disk=$mode" --disk "$disk" \
    ${1+"$@"} <"$fifo" >"$out" 2>&1 &
  pid=$!
  exec 3>"$fifo"
  [ -n "${launched:-}" ] && $launched
  up=timeout
  if wait_for "$out" "KEEL-GUEST waiting" 1 150; then
    up=ok
    [ -n "${during:-}" ] && $during
    echo poweroff >&3
    # With an API socket keel outlives its guest (as cloud-hypervisor does): end it through
    # the API once the guest is off.
    if [ -S "$sock" ] && wait_for "$out" "KEEL-GUEST powering-off" 1 60; then
      sleep 1
      timeout 30 keel-remote --api-socket "$sock" shutdown-vmm >/dev/null 2>&1
    fi
  fi
  reap "$pid" 60
  status=$?
  exec 3>&-
  result "run=$name up=$up keel_exit=$status error=$(grep -m1 -a '^keel: ' "$out" | tr ' ' '_')" \
    "$(grep -m1 'KEEL-GUEST root-mounted' "$out" | sed 's/^.*KEEL-GUEST //')" \
    "$(grep -m1 'KEEL-GUEST rootfs' "$out" | sed 's/^.*KEEL-GUEST rootfs //')" \
    "$(grep -m1 'KEEL-GUEST \(written\|found\|ro\|net\) ' "$out" | sed 's/^.*KEEL-GUEST //')"
  echo "---- $name console (last 30 lines)"
  tail -n 30 "$out"
}

# While the first run holds the image: a second keel on it must be refused, fast; the API
# lists the disk and counts its I/O.
while_running() {
  timeout 60 keel --kernel "$kernel" --initramfs "$initramfs" --disk "path=$image" \
    </dev/null >/tmp/second.out 2>&1
  result "second_keel_exit=$? message=$(head -n 1 /tmp/second.out | tr ' ' '_')"
  result "info=$(timeout 30 keel-remote --api-socket "$sock" --json info 2>&1 | tr -d '\n ')"
  result "counters=$(timeout 30 keel-remote --api-socket "$sock" --json counters 2>&1 | tr -d '\n ')"
}

sum_before=$(sha256sum "$image" | cut -c1-64)
during=while_running
run write write "path=$image" --api-socket "path=$sock"
during=
sum_written=$(sha256sum "$image" | cut -c1-64)
run check check "path=$image,num_queues=2"
sum_checked=$(sha256sum "$image" | cut -c1-64)
run ro ro "path=$image,readonly=on"
result "image changed_by_write=$([ "$sum_before" != "$sum_written" ] && echo yes || echo no)" \
  "unchanged_by_ro=$([ "$sum_checked" = "$(sha256sum "$image" | cut -c1-64)" ] && echo yes || echo no)"

# The network: keel (in a network namespace of its own, so nothing leaves it) creates the TAP
# keeltap0 with the host side 169.254.20.1/16; the host serves a file the guest fetches, pings
# the guest and fetches the guest's file; checksums on both sides.
mkdir -p /tmp/www
dd if=/dev/urandom of=/tmp/www/host.bin bs=1M count=4 2>/dev/null
host_sha=$(sha256sum /tmp/www/host.bin | cut -c1-64)
net_up() {
  n=0
  while [ "$(readlink "/proc/$pid/ns/net")" = "$(readlink /proc/self/ns/net)" ] && [ "$n" -lt 50 ]; do
    sleep 0.1
    n=$((n + 1))
  done
  nsenter -t "$pid" -n ip link set lo up
  nsenter -t "$pid" -n httpd -f -p 8080 -h /tmp/www &
  httpd_pid=$!
}
net_host_side() {
  ping=failed
  nsenter -t "$pid" -n ping -c 3 -W 5 169.254.20.2 >/dev/null 2>&1 && ping=ok
  rm -f /tmp/guest.bin
  nsenter -t "$pid" -n wget -q -O /tmp/guest.bin http://169.254.20.2:8080/guest.bin
  result "net_host ping=$ping host_sha=$host_sha fetched_sha=$(sha256sum /tmp/guest.bin 2>/dev/null | cut -c1-64)" \
    "tap=$(nsenter -t "$pid" -n ip link show keeltap0 >/dev/null 2>&1 && echo present || echo none)" \
    "counters=$(timeout 30 keel-remote --api-socket "$sock" --json counters 2>&1 | tr -d '\n ')"
}
# vsock and an eagerly mapped edu (passed through) in the same run: the host's echo listener on keel's PATH_5000 (reached by the guest),
# and a host program through keel's socket to the guest's echo listener on port 1234.
vsock_sock=/tmp/keel-vsock.sock
rm -f "$vsock_sock" "${vsock_sock}_5000"
vsock_probe host-echo "${vsock_sock}_5000" &
echo_pid=$!
net_and_vsock_host_side() {
  net_host_side
  result "edu_info info=$(timeout 30 keel-remote --api-socket "$sock" --json info 2>&1 | tr -d '\n ')"
  got=$(timeout 120 vsock_probe host-send "$vsock_sock" 1234 4194304 2>&1 | tail -n 1)
  result "vsock_host ${got#vsock_probe }" "socket=$([ -S "$vsock_sock" ] && echo present || echo none)" \
    "counters=$(timeout 30 keel-remote --api-socket "$sock" --json counters 2>&1 | tr -d '\n ')"
}
# virtio-fs in the same run: QEMU 7.2's virtiofsd (the emulated host's Debian) shares /tmp/share;
# the guest reads the host's file and writes one of its own. Guest memory is shared with it.
mkdir -p /tmp/share
dd if=/dev/urandom of=/tmp/share/host.bin bs=1M count=2 2>/dev/null
share_sha=$(sha256sum /tmp/share/host.bin | cut -c1-64)
fs_sock=/tmp/virtiofsd.sock
virtiofsd --socket-path="$fs_sock" -o source=/tmp/share -o cache=none -o sandbox=chroot \
  >/tmp/virtiofsd.log 2>&1 &
vfsd_pid=$!
n=0
while [ ! -S "$fs_sock" ] && [ "$n" -lt 100 ]; do
  sleep 0.1
  n=$((n + 1))
done
launcher="unshare -n" launched=net_up during=net_and_vsock_host_side memory=size=512M,shared=on
run net net "path=$image" --net "tap=keeltap0,ip=169.254.20.1,mask=255.255.0.0" \
  --vsock "cid=3,socket=$vsock_sock" --rng --api-socket "path=$sock" \
  --fs "tag=keelshare,socket=$fs_sock" \
  --device "path=/sys/bus/pci/devices/$(edu_devices | head -n 1),dma_mapping=eager"
launcher= launched= during= memory=
# virtiofsd serves one front end: it ends when keel does.
vfsd_gone=no
n=0
while [ "$n" -lt 50 ]; do
  kill -0 "$vfsd_pid" 2>/dev/null || { vfsd_gone=yes; break; }
  sleep 0.1
  n=$((n + 1))
done
[ "$vfsd_gone" = yes ] || kill "$vfsd_pid" 2>/dev/null
wait "$vfsd_pid" 2>/dev/null
result "fs_host share_sha=$share_sha guest_file_sha=$(sha256sum /tmp/share/guest.bin 2>/dev/null | cut -c1-64)" \
  "virtiofsd_gone=$vfsd_gone"
result "fs_guest $(grep -m1 -a 'KEEL-GUEST fs ' /tmp/net.out | sed 's/^.*KEEL-GUEST fs //')"
echo "---- virtiofsd log (last 10 lines)"
tail -n 10 /tmp/virtiofsd.log
result "vsock_guest $(grep -m1 -a 'KEEL-GUEST vsock-out' /tmp/net.out | sed 's/^.*vsock-out //; s/vsock_probe //')"
result "rng_guest $(grep -m1 -a 'KEEL-GUEST rng ' /tmp/net.out | sed 's/^.*KEEL-GUEST rng //')"
result "vsock_after socket=$([ -e "$vsock_sock" ] && echo present || echo none)"
kill "$echo_pid" 2>/dev/null
wait "$echo_pid" 2>/dev/null
kill "$httpd_pid" 2>/dev/null
wait "$httpd_pid" 2>/dev/null
result "net_outside tap=$(ip link show keeltap0 >/dev/null 2>&1 && echo present || echo none)"

# bad NAME DISK: keel must refuse fast with a message and leave no process behind.
bad() {
  timeout 60 keel --kernel "$kernel" --initramfs "$initramfs" --disk "$2" </dev/null >/tmp/bad.out 2>&1
  status=$?
  result "bad=$1 keel_exit=$status stray=$(pidof keel | wc -w) message=$(head -n 1 /tmp/bad.out | tr ' ' '_')"
}
ln -s "$image" /tmp/link.img
mkfifo /tmp/fifo.img
bad symlink path=/tmp/link.img
bad fifo path=/tmp/fifo.img
bad missing path=/tmp/missing.img
bad queues "path=$image,num_queues=99"
echo "---- done"
exit 0
