# shellcheck shell=sh
# Scenario of scripts/bench/lazy (runs inside the emulated host; busybox sh). Environment
# (--env): LAZY_COUNT (MAP+UNMAP pairs per measurement, default 200), LAZY_RUNS (default 3).
# For each run, alternately:
#   raw    vfio_probe --map-bench: the emulated host's own MAP_DMA + UNMAP_DMA of one 4 KiB page
#          on the edu's container, LAZY_COUNT times
#   guest  keel boots the guest with the edu behind the virtual IOMMU (iommu=on,
#          dma_mapping=lazy); the guest's VFIO maps and unmaps one 4 KiB page LAZY_COUNT times
#          (lazy_test --bench): each pair is two virtio-iommu requests and two host ioctls
# and once: an eager keel (dma_mapping=eager, the same guest) and a lazy one running the same
# edu workload, for the entries and pinned bytes each holds and the time it took; and a lazy one
# whose guest maps a 256 KiB buffer with one VFIO call, for the host entries that costs.
# Reports "result sample ..." lines; scripts/bench/lazy computes the figures.
. /keel/testbed.sh

count=${LAZY_COUNT:-200}
runs=${LAZY_RUNS:-3}
set -- $(edu_devices)
dev=$1

# guest NAME MAPPING GUEST_ARGS: one keel boot; reports the guest's lines and vm.info's dma.
guest() {
  name=$1 mapping=$2 args=$3
  sock=/tmp/$name.sock out=/tmp/$name.out fifo=/tmp/$name.in
  rm -f "$fifo" "$out" "$sock"
  mkfifo "$fifo"
  keel -v --kernel /keel/guest/vmlinuz --initramfs /keel/guest/initramfs.cpio.gz --memory size=256M \
    --serial tty --api-socket "path=$sock" \
    --cmdline "console=ttyS0 quiet vfio_iommu_type1.allow_unsafe_interrupts=1 keel_lazy=$args" \
    --device "path=/sys/bus/pci/devices/$dev,id=edu0,iommu=on,dma_mapping=$mapping" \
    <"$fifo" >"$out" 2>"/tmp/$name.log" &
  pid=$!
  exec 3>"$fifo"
  n=0
  while [ ! -S "$sock" ] && [ "$n" -lt 300 ]; do sleep 0.2; n=$((n + 1)); done
  start=$(timeout 60 keel-remote --api-socket "$sock" --json info 2>/dev/null | tr -d '\n')
  result "sample what=$name at=start info=$start"
  wait_for "$out" "KEEL-GUEST lazy-finished" 1 600
  grep -a "KEEL-GUEST lazy phase=" "$out" | tr -d '\r' | while IFS= read -r line; do
    result "sample what=$name ${line#*KEEL-GUEST lazy }"
  done
  info=$(timeout 60 keel-remote --api-socket "$sock" --json info 2>/dev/null | tr -d '\n')
  result "sample what=$name at=end info=$info"
  echo poweroff >&3
  wait_for "/tmp/$name.log" "guest powered off" 1 60
  timeout 60 keel-remote --api-socket "$sock" shutdown-vmm >/dev/null 2>&1
  reap "$pid" 60
  exec 3>&-
}

r=1
while [ "$r" -le "$runs" ]; do
  result "sample what=raw run=$r $(timeout 600 vfio_probe --map-bench "$count" "$dev" 2>&1 | tr '\n' ' ')"
  guest lazy-bench lazy "--bench,$count"
  r=$((r + 1))
done
# The same edu workload (8 mappings, each with a DMA round trip), eager and lazy.
guest eager eager "--pages,8"
guest lazy lazy "--pages,8"
# One guest request for a 256 KiB buffer: the host entries it costs.
guest buffer lazy "--buffer,256"
exit 0
