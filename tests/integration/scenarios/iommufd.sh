#!/bin/sh
# Runs inside the emulated host booted with the iommufd host kernel (run --host-kernel iommufd,
# --edu 2): Keel's iommufd calls (iommufd_probe) against the real kernel, beside type1 on the same
# kernel. Reports facts only; tests/integration/testbed_iommufd.sh checks them.
#  - per edu: /dev/iommu and the device cdev; bind, IOAS, attach, IOVA ranges; 70 000 separate
#    4 KiB mappings (more than type1's dma_entry_limit of 65 535 allows) then unmapped; a DMA
#    round trip through the IOAS
#  - type1, same device: 70 000 mappings asked for, one VFIO_IOMMU_MAP_DMA each
#  - memlock: without CAP_IPC_LOCK and with 1 MiB of RLIMIT_MEMLOCK, pages mapped until refused
# Then keel itself on that kernel (KEEL_GUESTS=1: the host command line has tsc=unstable):
#  - eager: both edus with backend=auto, which takes iommufd; the Debian guest's edu_test does
#    DMA and interrupts through them (/keel/guest/edu-*);
#  - hold-iommufd / hold-type1: one edu behind the virtual IOMMU, mapped lazily; the guest's own
#    VFIO (the built guest kernel, /keel/guest/lazy-*) holds KEEL_HOLD separate 4 KiB mappings,
#    on iommufd and then on type1 with dma_entry_limit set to KEEL_TYPE1_LIMIT for that run
#    (default: the kernel's, 65 535);
#    vm.info read at the end;
#  - memlock: 1 MiB of RLIMIT_MEMLOCK without CAP_IPC_LOCK, backend=iommufd: refused.
. /keel/testbed.sh

set -- $(edu_devices)
edu=$1
result "kernel release=$(uname -r) dev_iommu=$([ -c /dev/iommu ] && echo yes || echo no)" \
  "cdevs=$(ls /dev/vfio/devices 2>/dev/null | tr '\n' ',')"
for dev in "$@"; do
  result "iommufd bdf=$dev $(timeout 900 iommufd_probe --maps 70000 --dma "$dev" 2>&1 | tr '\n' ' ')"
done
result "type1 $(timeout 900 vfio_probe --fill --max-maps 70000 "$1" 2>&1 | tr '\n' ' ')"
result "memlock $(timeout 300 memlock_exec 1048576 iommufd_probe --maps 1000 "$1" 2>&1 | tr '\n' ' ')"
[ "${KEEL_GUESTS:-0}" = 1 ] || exit 0

# The DMA report line keel logs at startup, as key=value fields (without the free-text reason).
dma_line() {
  grep 'msg="DMA budget"' "$1" | head -n 1 | sed 's/reason="[^"]*"//'
}

# eager: both edus in one IOAS; the guest powers off after edu_test.
devices=
for bdf in "$@"; do devices="$devices --device path=/sys/bus/pci/devices/$bdf"; done
# shellcheck disable=SC2086 # separate words
timeout 600 keel -v --kernel /keel/guest/edu-vmlinuz --initramfs /keel/guest/edu-initramfs.cpio.gz \
  --cpus boot=2 --memory size=512M --serial file=/tmp/eager.console $devices </dev/null 2>/tmp/eager.log
result "run=eager keel_exit=$? $(dma_line /tmp/eager.log)"
result "run=eager backend_reason=$(grep -o 'backend_reason="[^"]*"' /tmp/eager.log | head -n 1 | cut -d'"' -f2 | tr ' ' '_')"
grep '^KEEL-GUEST' /tmp/eager.console 2>/dev/null | while IFS= read -r line; do
  result "run=eager guest ${line#KEEL-GUEST }"
done
echo "---- eager: keel log"; cat /tmp/eager.log
echo "---- eager: guest console (last 20 lines)"; tail -n 20 /tmp/eager.console

# hold NAME BACKEND: the guest holds KEEL_HOLD mappings through the virtual IOMMU.
hold() {
  name=$1 backend=$2
  sock=/tmp/$name.sock out=/tmp/$name.out fifo=/tmp/$name.in
  rm -f "$fifo" "$out" "$sock"
  mkfifo "$fifo"
  start=$(date +%s)
  keel -v --kernel /keel/guest/lazy-vmlinuz --initramfs /keel/guest/lazy-initramfs.cpio.gz \
    --memory size=1G --serial tty --api-socket "path=$sock" \
    --cmdline "console=ttyS0 vfio_iommu_type1.allow_unsafe_interrupts=1 vfio_iommu_type1.dma_entry_limit=1000000 keel_lazy=--pages,2,--hold,$KEEL_HOLD,--hold-sample,5000" \
    --device "path=/sys/bus/pci/devices/$edu,id=edu0,iommu=on,dma_mapping=lazy,backend=$backend" \
    <"$fifo" >"$out" 2>"/tmp/$name.log" &
  pid=$!
  exec 3>"$fifo"
  finished=no n=0
  while [ "$n" -lt 1500 ] && kill -0 "$pid" 2>/dev/null; do  # (not past keel's end)
    grep -q "KEEL-GUEST lazy-finished" "$out" && { finished=yes; break; }
    sleep 1
    n=$((n + 1))
  done
  result "run=$name finished=$finished seconds=$(($(date +%s) - start))"
  grep -a "KEEL-GUEST lazy " "$out" | tr -d '\r' | while IFS= read -r line; do
    result "run=$name ${line#*KEEL-GUEST lazy }"
  done
  # vm.info's DMA report, flattened to key=value for the check.
  timeout 60 keel-remote --api-socket "$sock" --json info >/tmp/$name.info 2>&1
  result "run=$name info $(tr -d ' \n' </tmp/$name.info | grep -o '"dma":\[.*' |
    grep -o '"\(backend\|backend_reason\|avail_source\|binding_limit\|mode\|peak_entries\|entries_used\|enospc\|enomem\|refused_budget\|refused_reserve\)":[^,}]*' |
    sed 's/"\([a-z_]*\)":"\{0,1\}\([^"]*\)"\{0,1\}/\1=\2/' | tr '\n' ' ')"
  # (A keel that already ended reads no more: writing would end this script with SIGPIPE.)
  kill -0 "$pid" 2>/dev/null && echo poweroff >&3
  wait_for "/tmp/$name.log" "guest powered off" 1 120
  timeout 120 keel-remote --api-socket "$sock" shutdown-vmm >/dev/null 2>&1
  reap "$pid" 120
  status=$?
  exec 3>&-
  result "run=$name keel_exit=$status"
  echo "---- $name: keel log (last 20 lines)"; tail -n 20 "/tmp/$name.log"
  echo "---- $name: guest console (last 20 lines)"; tail -n 20 "$out" | tr -d '\r'
}
hold hold-iommufd iommufd
limit_file=/sys/module/vfio_iommu_type1/parameters/dma_entry_limit
saved_limit=$(cat "$limit_file")
[ -z "${KEEL_TYPE1_LIMIT:-}" ] || echo "$KEEL_TYPE1_LIMIT" >"$limit_file"
result "run=hold-type1 limit=$(cat "$limit_file")"
hold hold-type1 type1
echo "$saved_limit" >"$limit_file"

# memlock: 1 MiB cannot pin 512 MiB of guest RAM on iommufd either.
timeout 120 memlock_exec 1048576 keel --kernel /keel/guest/edu-vmlinuz \
  --initramfs /keel/guest/edu-initramfs.cpio.gz --memory size=512M \
  --device "path=/sys/bus/pci/devices/$edu,backend=iommufd" </dev/null 2>/tmp/memlock.log
result "run=memlock keel_exit=$?"
result "run=memlock message=$(grep -v '^level=' /tmp/memlock.log | head -n 1 | tr ' ' '_')"
exit 0
