#!/bin/sh
# Runs inside the emulated host: keel starts idle with --api-socket, and everything after that
# goes through keel-remote: ping, create (with the first edu device), cold add and remove of the
# second, boot, info, counters, pause, resume, shutdown, boot again, and vmm.shutdown. Between
# steps a fresh container on an edu device keel does not hold, and on keel's device once keel
# let it go, reads the kernel's DMA_AVAIL. Reports facts only; tests/integration/testbed_api.sh
# checks them.
. /keel/testbed.sh

sock=/tmp/keel-api.sock
console=/tmp/guest.console
set -- $(edu_devices)
dev0=$1 dev1=$2
result "limit=$(cat /sys/module/vfio_iommu_type1/parameters/dma_entry_limit) dev0=$dev0 dev1=$dev1"

# pinned WHEN: what the kernel counts as keel's locked and pinned memory (VFIO pins guest RAM it
# maps and charges it to locked_vm): the live process's own record that entries were given back.
pinned() {
  result "pinned=$1 vmlck_kb=$(awk '/^VmLck:/ {print $2}' "/proc/$pid/status") vmpin_kb=$(awk '/^VmPin:/ {print $2}' "/proc/$pid/status")"
}


cat >/tmp/vm.json <<EOF
{
  "cpus": {"boot_vcpus": 2},
  "memory": {"size": 536870912},
  "payload": {"kernel": "/keel/guest/vmlinuz", "initramfs": "/keel/guest/initramfs.cpio.gz",
              "cmdline": "console=ttyS0"},
  "serial": {"mode": "File", "file": "$console"},
  "devices": [{"path": "/sys/bus/pci/devices/$dev0", "id": "edu0", "dma_mapping": "eager"}]
}
EOF

keel -v --api-socket "path=$sock" </dev/null >/tmp/keel.out 2>/tmp/keel.log &
pid=$!
n=0
while [ ! -S "$sock" ] && [ "$n" -lt 150 ]; do sleep 0.2; n=$((n + 1)); done
result "socket=$([ -S "$sock" ] && echo yes || echo no) mode=$(stat -c %a "$sock" 2>/dev/null)"

pinned idle
api ping ping
api info-empty info
api boot-empty boot
api create create /tmp/vm.json
api create-again create /tmp/vm.json
api add add-device "path=/sys/bus/pci/devices/$dev1,id=edu1"
api add-again add-device "path=/sys/bus/pci/devices/$dev1,id=edu1"
api add-missing add-device "path=/sys/bus/pci/devices/0000:00:1f.7,id=ghost"
api info-created info
api remove remove-device edu1
api remove-again remove-device edu1
api boot boot
booted=no
wait_for "$console" "KEEL-GUEST waiting" 1 180 && booted=yes
result "guest=first booted=$booted"
pinned running
api info-running info
api counters counters
api boot-twice boot
api add-running add-device "path=/sys/bus/pci/devices/$dev1,id=edu1,iommu=on"
probe running "$dev1"
probe running-held "$dev0"
api pause pause
api info-paused info
api resume resume
api info-resumed info
api shutdown shutdown
api info-shutdown info
pinned after-shutdown
probe after-shutdown "$dev0"
api boot-again boot
booted=no
wait_for "$console" "KEEL-GUEST waiting" 2 180 && booted=yes
result "guest=second booted=$booted"
api info-again info
# vm.nmi: every vCPU takes an NMI; Linux, which cannot attribute it, says so and carries on.
api nmi nmi
nmi=no
wait_for "$console" "NMI received for unknown reason" 2 60 && nmi=yes
result "nmi_logged=$nmi cpu0=$(grep -c 'NMI received for unknown reason .* on CPU 0' "$console") cpu1=$(grep -c 'NMI received for unknown reason .* on CPU 1' "$console")"
# vm.power-button: the guest's init powers off on KEY_POWER, as logind or acpid would.
api power-button power-button
pressed=no
wait_for "$console" "KEEL-GUEST power-button pressed" 1 60 && pressed=yes
state=none
n=0
while [ "$n" -lt 150 ]; do
  state=$(keel-remote --api-socket "$sock" --json info 2>/dev/null | tr -d ' \n' |
    sed -n 's/.*"state":"\([A-Za-z]*\)".*/\1/p')
  [ "$state" = Shutdown ] && break
  sleep 0.2
  n=$((n + 1))
done
result "guest_saw_button=$pressed state_after_button=$state"
api nmi-off nmi
api power-button-off power-button
api shutdown-vmm shutdown-vmm
n=0
while kill -0 "$pid" 2>/dev/null && [ "$n" -lt 150 ]; do sleep 0.2; n=$((n + 1)); done
kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
wait "$pid"
result "keel_exit=$? socket_left=$([ -e "$sock" ] && echo yes || echo no)"
probe after-exit "$dev0"
echo "---- keel log"
cat /tmp/keel.log
echo "---- guest console (last 30 lines)"
tail -n 30 "$console" 2>/dev/null
exit 0
