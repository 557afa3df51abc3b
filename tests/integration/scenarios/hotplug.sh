#!/bin/sh
# Runs inside the emulated host (two edu devices): keel boots Debian's cloud kernel with edu0
# passed through (eager) and an API socket; everything after the boot happens to the running
# guest: edu1 hot-added (the guest finds it through ACPI hot-plug and runs DMA on both), removed
# (the guest ejects it; a fresh container on edu1 reads the whole budget again), hot-added with a
# budget too short for its plan (refused; edu0 still does DMA), a virtio disk hot-added (mounted,
# read, written) and removed; then memory hot-plug (virtio-mem) with an ample and a short DMA
# budget. Reports facts only; tests/integration/testbed_hotplug.sh checks them.
. /keel/testbed.sh

sock=/tmp/keel-api.sock
out=/tmp/guest.out
fifo=/tmp/guest.in
limit_file=/sys/module/vfio_iommu_type1/parameters/dma_entry_limit
limit=$(cat "$limit_file")
set -- $(edu_devices)
dev0=$1 dev1=$2
result "limit=$limit dev0=$dev0 dev1=$dev1"
cp /keel/guest/hot.img /tmp/hot.img

# say N COMMAND: types COMMAND to the guest, waits for its Nth prompt.
say() {
  echo "$2" >&3
  wait_for "$out" "KEEL-GUEST waiting" "$1" 240 || result "timeout=$2"
}
# gone ID: waits (up to 60 s) until vm.info no longer lists device ID; reports how long.
gone() {
  start=$(cut -d' ' -f1 /proc/uptime)
  n=0
  while [ "$n" -lt 300 ]; do
    timeout 30 keel-remote --api-socket "$sock" --json info 2>/dev/null | grep -q "\"$1\"" || break
    sleep 0.2
    n=$((n + 1))
  done
  left=$(timeout 30 keel-remote --api-socket "$sock" --json info 2>/dev/null | grep -c "\"$1\"")
  result "gone=$1 listed=$left seconds=$(awk "BEGIN{print $(cut -d' ' -f1 /proc/uptime)-$start}")"
}

rm -f "$fifo" "$out" "$sock"
mkfifo "$fifo"
keel --kernel /keel/guest/vmlinuz --initramfs /keel/guest/initramfs.cpio.gz --memory size=512M \
  --cpus boot=1,max=3 --serial tty --cmdline "console=ttyS0" --api-socket "path=$sock" \
  --event-monitor path=/tmp/events.json \
  --device "path=/sys/bus/pci/devices/$dev0,id=edu0,dma_mapping=eager" <"$fifo" >"$out" 2>&1 &
pid=$!
exec 3>"$fifo"
booted=no
wait_for "$out" "KEEL-GUEST waiting" 1 300 && booted=yes
result "booted=$booted"
say 2 "edu 1"
probe before "$dev1"

# 1. hot-add edu1: the guest sees it and runs DMA on both
api add add-device "path=/sys/bus/pci/devices/$dev1,id=edu1"
say 3 "edu 2"
api info-added info
probe added "$dev1"

# 1b. a reboot keeps what was hot-added: the new VM has both edus from the start
api reboot reboot
wait_for "$out" "KEEL-GUEST waiting" 4 300 || result "timeout=reboot"
say 5 "edu 2"
api info-rebooted info

# 2. hot-remove: the guest ejects it, keel gives its container back
api remove remove-device edu1
gone edu1
say 6 "edu 1"
api info-removed info
probe removed "$dev1"

# 3. a budget too short for the new container's plan: refused, nothing left, edu0 unharmed
echo 0 >"$limit_file"
api add-short add-device "path=/sys/bus/pci/devices/$dev1,id=edu1"
probe short "$dev1"
echo "$limit" >"$limit_file"
say 7 "edu 1"
api info-short info
probe after-short "$dev1"

# 4. a virtio disk: hot-added, mounted and used, then removed
api add-disk add-disk "path=/tmp/hot.img,id=hotdisk"
say 8 disk
api remove-disk remove-device hotdisk
gone hotdisk
say 9 nodisk
# The guest's file reached the image (ext4 keeps a small file's data in a block of its own).
result "image_written=$(grep -a -c hot-plugged /tmp/hot.img)"

# 4b. a virtio-net link over a TAP keel creates: hot-added, pinged both ways, removed
api add-net add-net "tap=keelhot0,ip=169.254.40.1,mask=255.255.0.0,id=hotnet"
say 10 "net 169.254.40.2 169.254.40.1"
result "host_ping=$(ping -c 3 -W 5 169.254.40.2 2>&1 | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')"
api remove-net remove-device hotnet
gone hotnet
say 11 nonet
result "tap_left=$([ -e /sys/class/net/keelhot0 ] && echo yes || echo no)"

# 4c. vCPUs (ACPI vCPU hot-plug): two plugged and onlined by the guest, then one asked back and
# ejected; edu0's DMA still works.
api cpus-grow resize --cpus 3
say 12 "cpus 3"
api info-cpus-grown info
api cpus-shrink resize --cpus 2
say 13 "cpusgone 2"
api info-cpus-shrunk info
api cpus-over resize --cpus 4
say 14 "edu 1"
# A reboot at max_vcpus keeps the count (boot_vcpus follows vm.resize) and hot-plug: it shrinks.
api cpus-regrow resize --cpus 3
say 15 "cpus 3"
api cpus-reboot reboot
wait_for "$out" "KEEL-GUEST waiting" 16 300 || result "timeout=cpus-reboot"
say 17 "cpus 3"
api cpus-shrink-rebooted resize --cpus 2
say 18 "cpusgone 2"

echo poweroff >&3
wait_for "$out" "KEEL-GUEST powering-off" 1 60
sleep 1
api shutdown-vmm shutdown-vmm
reap "$pid" 60
result "keel_exit=$?"
exec 3>&-
probe after-exit "$dev0"
# The event monitor's lines, as markers.
while read -r line; do result "event $line"; done </tmp/events.json
# The guest's own lines, as markers (the test reads its DMA results and waits from them).
grep -a 'KEEL-GUEST' "$out" | tr -d '\r' | while read -r line; do result "guest $line"; done
echo "---- keel and guest output (last 80 lines)"
tail -n 80 "$out"

# 5. memory hot-plug (virtio-mem): 256 MiB of boot RAM and 768 MiB hot-pluggable, edu0 eager.
# mem_run NAME LIMIT: with dma_entry_limit LIMIT, grows the guest to 1 GiB, runs the edu DMA in
# the new memory; with "ample" shrinks it to 512 MiB again.
mem_run() {
  name=$1
  echo "$2" >"$limit_file"
  out=/tmp/mem-$name.out
  fifo=/tmp/mem-$name.in
  rm -f "$fifo" "$out" "$sock"
  mkfifo "$fifo"
  keel --kernel /keel/guest/vmlinuz --initramfs /keel/guest/initramfs.cpio.gz \
    --memory size=256M,hotplug_method=virtio-mem,hotplug_size=768M --serial tty \
    --cmdline "console=ttyS0 memhp_default_state=online_movable" --api-socket "path=$sock" \
    --event-monitor "path=/tmp/mem-$name.events" \
    --device "path=/sys/bus/pci/devices/$dev0,id=edu0,dma_mapping=eager" <"$fifo" >"$out" 2>&1 &
  pid=$!
  exec 3>"$fifo"
  up=no
  wait_for "$out" "KEEL-GUEST waiting" 1 300 && up=yes
  boot_kb=$(sed -n 's/.*KEEL-GUEST up .*mem_kb=\([0-9]*\).*/\1/p' "$out" | head -n 1)
  result "mem=$name up=$up boot_kb=${boot_kb:-0}"
  api "mem-$name-info-boot" info
  start=$(cut -d' ' -f1 /proc/uptime)
  api "mem-$name-grow" resize --memory 1G
  # All of it when the budget allows (at least 700 MiB more), else what was granted.
  if [ "$name" = ample ]; then want=$((boot_kb + 700 * 1024)); else want=$((boot_kb + 350 * 1024)); fi
  say 2 "mem $want"
  result "mem=$name grown_seconds=$(awk "BEGIN{print $(cut -d' ' -f1 /proc/uptime)-$start}")"
  api "mem-$name-info-grown" info
  say 3 "edu-high 0x100000000"
  if [ "$name" = ample ]; then
    api "mem-$name-shrink" resize --memory 512M
    say 4 "memlow $((boot_kb + 300 * 1024))"
    sleep 1
    api "mem-$name-info-shrunk" info
    api "mem-$name-counters" counters
  fi
  echo poweroff >&3
  wait_for "$out" "KEEL-GUEST powering-off" 1 60
  sleep 1
  api "mem-$name-shutdown-vmm" shutdown-vmm
  reap "$pid" 60
  result "mem=$name keel_exit=$?"
  exec 3>&-
  while read -r line; do result "mem-$name event $line"; done <"/tmp/mem-$name.events"
  grep -a 'KEEL-GUEST' "$out" | tr -d '\r' | while read -r line; do result "mem-$name guest $line"; done
  echo "---- mem-$name output (last 60 lines)"
  tail -n 60 "$out"
}
mem_run ample "$limit"
mem_run short 4
echo "$limit" >"$limit_file"
probe after-mem "$dev0"
exit 0
