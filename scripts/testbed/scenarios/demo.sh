# shellcheck shell=sh
# The README's run command (scripts/run.sh) runs this inside the emulated host: first what the
# host offers (inventory.sh, carried as /keel/inventory.sh), then Keel booting a Linux guest,
# with the guest's own report of what it sees.
# shellcheck source=../scenario-lib.sh
. /keel/testbed.sh

[ -f /keel/inventory.sh ] && sh /keel/inventory.sh

report ""
if [ ! -f /keel/guest/vmlinuz ] || [ ! -f /keel/guest/initramfs.cpio.gz ]; then
  report "No guest kernel carried: nothing to boot."
  exit 0
fi
cmd="keel --kernel /keel/guest/vmlinuz --initramfs /keel/guest/initramfs.cpio.gz --cpus boot=2 --memory size=512M --serial file=/tmp/guest.log"
report "Booting a Linux guest: $cmd"
start=$(cut -d' ' -f1 /proc/uptime)
# shellcheck disable=SC2086
timeout 300 $cmd </dev/null 2>/tmp/keel.err
status=$?
end=$(cut -d' ' -f1 /proc/uptime)
grep '^KEEL-GUEST' /tmp/guest.log | while IFS= read -r line; do report "    guest: ${line#KEEL-GUEST }"; done
if [ "$status" -ne 0 ]; then
  report "keel exited with status $status: $(head -n 3 /tmp/keel.err)"
  exit 1
fi
report "The guest powered off; keel exited 0 after $(awk "BEGIN{printf \"%.1f\", $end-$start}") s."
exit 0
