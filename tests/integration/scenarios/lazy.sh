#!/bin/sh
# Runs inside the emulated host: keel boots the guest kernel (virtio-iommu, VIOT and VFIO built
# in) with the edu device behind its virtual IOMMU (iommu=on, dma_mapping=auto); inside, the
# guest's own VFIO maps buffers and runs edu DMA through them (tests/integration/guest/lazy_test).
# Two runs:
#   lazy   without CAP_IPC_LOCK and a memlock limit below guest RAM: the eager plan does not
#          fit, auto picks lazy; the guest keeps more mappings than dma_entry_limit allows.
#   eager  as root: the eager plan fits and auto picks it; the guest's translated mappings
#          then switch the container to lazy.
# Each run reads vm.info while the guest is waiting and after its work, and a fresh container
# reads the kernel's DMA_AVAIL after keel has gone. Reports facts only;
# tests/integration/testbed_lazy.sh checks them.
. /keel/testbed.sh

set -- $(edu_devices)
dev=$1
limit=$(cat /sys/module/vfio_iommu_type1/parameters/dma_entry_limit)
result "limit=$limit dev=$dev"

# run NAME MEMLOCK GUEST_ARGS [DEVICE_OPTS [reboot]]: one boot; MEMLOCK "none" runs keel as
# plain root; DEVICE_OPTS are appended to --device; "reboot" reboots the guest once after its
# run (keel builds the VM anew: containers, virtual IOMMU) and reports the second run as
# NAME-rebooted.
run() {
  name=$1 memlock=$2 guest_args=$3 device_opts=${4:-} reboot=${5:-}
  sock=/tmp/$name.sock out=/tmp/$name.out fifo=/tmp/$name.in
  rm -f "$fifo" "$out" "$sock"
  mkfifo "$fifo"
  prefix=
  [ "$memlock" = none ] || prefix="memlock_exec $memlock"
  # shellcheck disable=SC2086 # the prefix is separate words
  $prefix keel -v --kernel /keel/guest/vmlinuz --initramfs /keel/guest/initramfs.cpio.gz \
    --memory size=256M --serial tty --api-socket "path=$sock" --event-monitor "path=/tmp/$name.events" \
    --cmdline "console=ttyS0 vfio_iommu_type1.allow_unsafe_interrupts=1 keel_lazy=$guest_args" \
    --device "path=/sys/bus/pci/devices/$dev,id=edu0,iommu=on$device_opts" <"$fifo" >"$out" 2>"/tmp/$name.log" &
  pid=$!
  exec 3>"$fifo"
  n=0
  while [ ! -S "$sock" ] && [ "$n" -lt 300 ]; do sleep 0.2; n=$((n + 1)); done
  result "run=$name at=start info=$(timeout 60 keel-remote --api-socket "$sock" --json info 2>&1 | tr '\n' ' ')"
  finished=no
  wait_for "$out" "KEEL-GUEST lazy-finished" 1 400 && finished=yes
  result "run=$name finished=$finished"
  grep -a "KEEL-GUEST lazy " "$out" | tr -d '\r' | while IFS= read -r line; do
    result "run=$name ${line#*KEEL-GUEST lazy }"
  done
  result "run=$name at=end info=$(timeout 60 keel-remote --api-socket "$sock" --json info 2>&1 | tr '\n' ' ')"
  result "run=$name counters=$(timeout 60 keel-remote --api-socket "$sock" --json counters 2>&1 | tr '\n' ' ')"
  if [ "$reboot" = reboot ]; then
    echo reboot >&3
    again=no
    wait_for "$out" "KEEL-GUEST lazy-finished" 2 400 && again=yes
    result "run=$name-rebooted finished=$again"
    # The second boot's lines: those after its "KEEL-GUEST up".
    tr -d '\r' <"$out" | awk '/KEEL-GUEST up/ {boots++} boots >= 2' | grep -a "KEEL-GUEST lazy " |
      while IFS= read -r line; do
        result "run=$name-rebooted ${line#*KEEL-GUEST lazy }"
      done
    result "run=$name-rebooted at=end info=$(timeout 60 keel-remote --api-socket "$sock" --json info 2>&1 | tr '\n' ' ')"
  fi
  # The guest powers off; keel, serving its API, stays until vmm.shutdown.
  echo poweroff >&3
  wait_for "/tmp/$name.log" "guest powered off" 1 60
  timeout 60 keel-remote --api-socket "$sock" shutdown-vmm >/dev/null 2>&1
  reap "$pid" 60
  status=$?
  exec 3>&-
  result "run=$name keel_exit=$status"
  while read -r line; do result "run=$name event $line"; done <"/tmp/$name.events"
  result "run=$name probe=after $(timeout 120 vfio_probe "$dev" 2>&1 | tr '\n' ' ')"
  echo "---- $name: keel log (last 30 lines)"
  tail -n 30 "/tmp/$name.log"
  echo "---- $name: guest console (last 30 lines)"
  tail -n 30 "$out" | tr -d '\r'
}

# 64 MiB of memlock for 256 MiB of guest RAM: eager cannot pin it all.
# Two entries kept free (dma_low_water): the guest's MAPs stop there, before the kernel's limit.
run lazy 67108864 "--pages,4,--fault-probe,--hold,$((limit * 2)),--msi,5" ",dma_low_water=2"
run eager none "--pages,2" "" reboot
exit 0
