# shellcheck shell=sh
# The README's run command (scripts/run.sh) runs this inside the emulated host: first what the
# host offers (inventory.sh, carried as /keel/inventory.sh), then Keel booting a Linux guest with
# the edu devices passed through (the first mapped eagerly, the second behind the virtual IOMMU,
# lazily), what Keel negotiated for each (keel-remote info), and the guest's own report of what
# it sees.
# shellcheck source=../scenario-lib.sh
. /keel/testbed.sh

[ -f /keel/inventory.sh ] && sh /keel/inventory.sh

report ""
if [ ! -f /keel/guest/vmlinuz ] || [ ! -f /keel/guest/initramfs.cpio.gz ]; then
  report "No guest kernel carried: nothing to boot."
  exit 0
fi
set -- $(edu_devices)
devices=
[ $# -ge 1 ] && devices="--device path=/sys/bus/pci/devices/$1,id=edu0"
# The second edu behind Keel's virtual IOMMU, mapped lazily: nothing pinned until the guest's
# IOMMU driver maps something.
[ $# -ge 2 ] && devices="$devices --device path=/sys/bus/pci/devices/$2,id=edu1,iommu=on,dma_mapping=lazy"
sock=/tmp/keel.sock
cmd="keel --kernel /keel/guest/vmlinuz --initramfs /keel/guest/initramfs.cpio.gz --cpus boot=2 --memory size=512M --serial file=/tmp/guest.log --api-socket path=$sock $devices"
report "Booting a Linux guest: $cmd"
start=$(cut -d' ' -f1 /proc/uptime)
# shellcheck disable=SC2086
timeout 300 $cmd </dev/null 2>/tmp/keel.err &
pid=$!
# While it runs: what Keel negotiated with the host for each VFIO container (keel-remote info).
n=0
while [ ! -S "$sock" ] && [ "$n" -lt 300 ]; do sleep 0.2; n=$((n + 1)); done
report ""
report "What Keel reports while the guest runs (keel-remote info):"
timeout 60 keel-remote --api-socket "$sock" info 2>&1 | while IFS= read -r line; do report "    $line"; done
report ""
wait_for /tmp/guest.log "KEEL-GUEST ok" 1 240
timeout 60 keel-remote --api-socket "$sock" shutdown-vmm >/dev/null 2>&1
reap "$pid" 60
status=$?
end=$(cut -d' ' -f1 /proc/uptime)
grep '^KEEL-GUEST' /tmp/guest.log | while IFS= read -r line; do report "    guest: ${line#KEEL-GUEST }"; done
if [ "$status" -ne 0 ]; then
  report "keel exited with status $status: $(head -n 3 /tmp/keel.err)"
  exit 1
fi
report "The guest powered off; keel exited 0 after $(awk "BEGIN{printf \"%.1f\", $end-$start}") s."
exit 0
