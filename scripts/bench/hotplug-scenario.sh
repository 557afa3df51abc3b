#!/bin/sh
# Runs inside the emulated host for scripts/bench/hotplug: the same guest (Debian's cloud kernel,
# tests/integration/guest/hotplug-init) under Keel and under QEMU 7.2 (q35, ACPI hot-plug on a
# PCIe root port, virtio-mem-pci), HOTPLUG_RUNS times each: the seconds from the request
# (vm.add-device / device_add) until the guest's driver is bound to the edu, and from the request
# (vm.resize / qom-set requested-size) until the guest's MemTotal has grown by 700 MiB. Stop
# watches on both sides poll every 20 ms. Reports samples only.
. /keel/testbed.sh

runs=${HOTPLUG_RUNS:-3}
set -- $(edu_devices)
dev1=$2
sock=/tmp/keel-api.sock
result "runs=$runs dev=$dev1 qemu=$(qemu-system-x86_64 --version 2>&1 | head -n1 | tr -s ' ()' '___')"
now() { cut -d' ' -f1 /proc/uptime; }
since() { awk "BEGIN{printf \"%.3f\", $(now) - $1}"; }
# seen FILE PATTERN COUNT: until PATTERN is in FILE COUNT times (20 ms polls, at most 120 s).
seen() {
  n=0
  while [ "$(grep -c "$2" "$1" 2>/dev/null)" -lt "$3" ] && [ "$n" -lt 6000 ]; do sleep 0.02; n=$((n + 1)); done
}
# ask PROMPTS COMMAND: types COMMAND to the guest after its PROMPTSth prompt.
ask() {
  wait_for "$gout" "KEEL-GUEST waiting" "$1" 240 || result "timeout=$2"
  echo "$2" >&3
}

# measure VMM: the runs against the guest on fd 3 / $gout; the VMM's own requests are the
# functions VMM_before N (first in each round), VMM_add N, VMM_remove N, VMM_grow, VMM_shrink.
measure() {
  vmm=$1
  prompt=1
  boot_kb=
  for i in $(seq "$runs"); do
    ask "$prompt" "bound 1"
    [ -z "$boot_kb" ] && boot_kb=$(sed -n 's/.*KEEL-GUEST up .*mem_kb=\([0-9]*\).*/\1/p' "$gout" | head -n1)
    "${vmm}_before" "$i"
    t0=$(now)
    "${vmm}_add" "$i"
    seen "$gout" "KEEL-GUEST bound=1" "$i"
    result "sample vmm=$vmm what=add run=$i seconds=$(since "$t0")"
    "${vmm}_remove" "$i"
    ask $((prompt + 1)) "bound 0"
    ask $((prompt + 2)) "mem $((boot_kb + 700 * 1024))"
    t0=$(now)
    "${vmm}_grow"
    seen "$gout" "KEEL-GUEST mem_kb=.* want_at_least" "$i"
    result "sample vmm=$vmm what=resize run=$i seconds=$(since "$t0")"
    "${vmm}_shrink"
    ask $((prompt + 3)) "memlow $((boot_kb + 100 * 1024))"
    prompt=$((prompt + 4))
  done
  ask "$prompt" poweroff
  sleep 2
}

# ---- Keel
gout=/tmp/keel-guest.out
rm -f /tmp/keel-guest.in "$gout" "$sock"
mkfifo /tmp/keel-guest.in
keel --kernel /keel/guest/vmlinuz --initramfs /keel/guest/initramfs.cpio.gz \
  --memory size=256M,hotplug_method=virtio-mem,hotplug_size=768M --serial tty \
  --cmdline "console=ttyS0 memhp_default_state=online_movable" --api-socket "path=$sock" \
  </tmp/keel-guest.in >"$gout" 2>&1 &
pid=$!
exec 3>/tmp/keel-guest.in
remote() { keel-remote --api-socket "$sock" "$@" >/dev/null 2>&1; }
# What starting keel-remote and one request cost here (part of each Keel figure).
keel_before() {
  t0=$(now)
  remote ping
  result "sample vmm=keel what=client run=$1 seconds=$(since "$t0")"
}
keel_add() { remote add-device "path=/sys/bus/pci/devices/$dev1,id=hot$1"; }
keel_remove() { remote remove-device "hot$1"; }
keel_grow() { remote resize --memory 1G; }
keel_shrink() { remote resize --memory 256M; }
measure keel
keel-remote --api-socket "$sock" shutdown-vmm >/dev/null 2>&1
reap "$pid" 60
exec 3>&-
grep -a 'KEEL-GUEST' "$gout" | tr -d '\r' | while read -r line; do result "keel guest $line"; done

# ---- QEMU 7.2: the guest's console on a pipe pair, the monitor on stdin
gout=/tmp/qemu-guest.out
rm -f /tmp/qg.in /tmp/qg.out /tmp/qmon "$gout"
mkfifo /tmp/qg.in /tmp/qg.out /tmp/qmon
qemu-system-x86_64 -L /keel/share/qemu -M q35 -accel kvm -cpu host -smp 1 -m 256M,maxmem=1G \
  -nodefaults -no-user-config -display none -no-reboot -serial pipe:/tmp/qg -monitor stdio \
  -kernel /keel/guest/vmlinuz -initrd /keel/guest/initramfs.cpio.gz \
  -append "console=ttyS0 memhp_default_state=online_movable" \
  -object memory-backend-ram,id=hmem0,size=768M \
  -device virtio-mem-pci,id=vmem0,memdev=hmem0,requested-size=0 \
  -device pcie-root-port,id=rp1,chassis=1,slot=1 </tmp/qmon >/tmp/qemu.log 2>&1 &
qpid=$!
exec 4>/tmp/qmon
cat /tmp/qg.out >"$gout" &
exec 3>/tmp/qg.in
qemu_before() { :; }
qemu_add() { echo "device_add vfio-pci,host=$dev1,bus=rp1,id=hot$1" >&4; }
qemu_remove() { echo "device_del hot$1" >&4; }
qemu_grow() { echo "qom-set vmem0 requested-size 805306368" >&4; }
qemu_shrink() { echo "qom-set vmem0 requested-size 0" >&4; }
measure qemu
(echo quit >&4) 2>/dev/null  # QEMU may be gone already (-no-reboot): not this shell's SIGPIPE
reap "$qpid" 60
exec 3>&- 4>&-
grep -a 'KEEL-GUEST' "$gout" | tr -d '\r' | while read -r line; do result "qemu guest $line"; done
echo "---- qemu log"
tail -n 20 /tmp/qemu.log
exit 0
