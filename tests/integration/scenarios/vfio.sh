#!/bin/sh
# Runs inside the emulated host: keel boots a guest with every edu device passed through, then
# is refused for a memlock limit below guest RAM; after each run a fresh container's DMA_AVAIL
# is read back. Reports facts only; tests/integration/testbed_vfio.sh checks them.
# Environment (--env): KEEL_CASE = run | refuse.
. /keel/testbed.sh

devices=""
for bdf in $(edu_devices); do
  devices="$devices --device path=/sys/bus/pci/devices/$bdf"
done
limit=$(cat /sys/module/vfio_iommu_type1/parameters/dma_entry_limit)
result "limit=$limit"

# The DMA report line keel logs at startup, as key=value fields.
dma_line() {
  grep 'msg="DMA budget"' "$1" | head -n 1 | sed 's/reason="[^"]*"//'
}

# avail of a fresh container for each edu: the kernel's count after keel is gone.
probe_after() {
  for bdf in $(edu_devices); do
    result "after=$1 edu=$bdf $(vfio_probe "$bdf" 2>&1 | tr '\n' ' ')"
  done
}

# run NAME MODE [PREFIX...]: boot the guest with the devices; report keel's status and logs.
run() {
  name=$1 mode=$2
  shift 2
  # shellcheck disable=SC2086
  timeout 300 "$@" keel -v --kernel /keel/guest/vmlinuz --initramfs /keel/guest/initramfs.cpio.gz \
    --cpus boot=2 --memory size=512M --serial file=/tmp/$name.console \
    $(echo $devices | sed "s/\(path=[^ ]*\)/\1,dma_mapping=$mode/g") </dev/null 2>/tmp/$name.log
  status=$?
  result "run=$name keel_exit=$status $(dma_line /tmp/$name.log)"
  result "run=$name message=$(grep -v '^level=' /tmp/$name.log | head -n 1 | tr ' ' '_')"
  grep '^KEEL-GUEST' /tmp/$name.console 2>/dev/null | while IFS= read -r line; do
    result "run=$name guest ${line#KEEL-GUEST }"
  done
  echo "---- $name: keel log"
  cat /tmp/$name.log
  echo "---- $name: guest console (last 30 lines)"
  tail -n 30 /tmp/$name.console 2>/dev/null
  probe_after "$name"
}

case "${KEEL_CASE:-run}" in
  run)
    run auto auto
    # Without CAP_IPC_LOCK, RLIMIT_MEMLOCK applies: 1 MiB cannot pin 512 MiB of guest RAM.
    # (util-linux setpriv is carried in $KEEL_BIN: busybox's has no --bounding-set.)
    run memlock auto sh -c 'ulimit -l 1024 && exec "$KEEL_BIN/setpriv" --inh-caps=-ipc_lock --bounding-set=-ipc_lock "$@"' sh
    ;;
  refuse)
    run eager eager
    run auto auto
    # A device that is not bound to vfio-pci: keel names it and says how to bind it.
    bdf=$(edu_devices | head -n 1)
    echo "$bdf" >/sys/bus/pci/drivers/vfio-pci/unbind
    run unbound auto
    echo "$bdf" >/sys/bus/pci/drivers/vfio-pci/bind
    ;;
esac
exit 0
