#!/bin/sh
# Runs inside the emulated host: keel boots each carried guest kernel with the boot-init
# initramfs, reboots it once through the guest, then powers it off; then keel is given bad input.
# Reports facts only; tests/integration/testbed_boot.sh checks them.
. /keel/testbed.sh

initramfs=/keel/guest/initramfs.cpio.gz

# boot NAME KERNEL [KEEL ARGS...]: boot, reboot from inside the guest, power off; report what
# was seen.
boot() {
  name=$1 kernel=$2
  shift 2
  out=/tmp/$name.out
  fifo=/tmp/$name.in
  rm -f "$fifo" "$out"
  mkfifo "$fifo"
  start=$(cut -d' ' -f1 /proc/uptime)
  keel --kernel "$kernel" --initramfs "$initramfs" --cpus boot=2 --serial tty \
    ${1+"$@"} <"$fifo" >"$out" 2>&1 &
  pid=$!
  exec 3>"$fifo"
  first=timeout
  hugepages_used=0
  if wait_for "$out" "KEEL-GUEST waiting" 1 150; then
    first=ok
    hugepages_used=$(awk '/^HugePages_Total/ {t=$2} /^HugePages_Free/ {f=$2} END {print t-f}' /proc/meminfo)
    echo reboot >&3
  fi
  second=timeout
  if [ "$first" = ok ] && wait_for "$out" "KEEL-GUEST waiting" 2 150; then
    second=ok
    echo poweroff >&3
  fi
  reap "$pid" 60
  status=$?
  exec 3>&-
  end=$(cut -d' ' -f1 /proc/uptime)
  ups=$(grep -c "KEEL-GUEST up" "$out")
  line=$(grep -m1 "KEEL-GUEST up" "$out")
  # The kernel's own console lines (written while it polls the UART, coalesced by KVM), whole.
  banners=$(grep -c "Linux version [0-9]" "$out")
  cmdlines=$(tr -d '\r' <"$out" | grep -c "Kernel command line: console=ttyS0\$")
  result "guest=$name first_boot=$first second_boot=$second boots=$ups keel_exit=$status" \
    "kernel_banners=$banners kernel_cmdline_lines=$cmdlines" \
    "hugepages_used=$hugepages_used" \
    "$(echo "$line" | sed 's/^.*KEEL-GUEST up //')" "seconds=$(awk "BEGIN{print $end-$start}")"
  echo "---- $name console (last 40 lines)"
  tail -n 40 "$out"
}

# bad NAME ARGS...: keel must fail fast with a message and leave no process behind.
bad() {
  name=$1
  shift
  echo "---- bad input: $name"
  timeout 120 keel "$@" >/tmp/bad.out 2>&1 </dev/null
  status=$?
  msg=$(head -n 1 /tmp/bad.out | tr ' ' '_')
  left=$(pidof keel | wc -w)
  result "bad=$name keel_exit=$status stray=$left message=$msg"
}

bad missing-kernel --kernel /nonexistent/vmlinuz --initramfs "$initramfs"
head -c 65536 /dev/urandom >/tmp/corrupt-kernel
bad corrupt-kernel --kernel /tmp/corrupt-kernel --initramfs "$initramfs"
bad memory-zero --kernel /keel/guest/vmlinuz --memory size=0
# No hugepages reserved yet: refused with the numbers, never a SIGBUS at the guest's first touch.
bad hugepages-short --kernel /keel/guest/vmlinuz --initramfs "$initramfs" --memory size=512M,hugepages=on

[ -f /keel/guest/vmlinuz ] && boot bzimage /keel/guest/vmlinuz --memory size=512M
# Guest RAM from a hugetlbfs-backed memfd: reserve 2 MiB pages for 512 MiB. Reserved before the
# PVH boot without hugepages=on too, so that "it used none" means something.
echo 256 >/proc/sys/vm/nr_hugepages
result "hugepages_reserved=$(sed -n 's/^HugePages_Total: *//p' /proc/meminfo)"
[ -f /keel/guest/vmlinux-pvh ] && boot pvh /keel/guest/vmlinux-pvh --memory size=512M --rng
[ -f /keel/guest/vmlinux-pvh ] &&
  boot pvh-hugepages /keel/guest/vmlinux-pvh --memory size=512M,shared=on,hugepages=on
echo "---- done"
exit 0
