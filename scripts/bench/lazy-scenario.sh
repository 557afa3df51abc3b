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
# With LAZY_IOMMUFD=1 (the iommufd host kernel), each run also measures iommufd:
#   raw-iommufd    iommufd_probe --map-bench: the emulated host's own IOMMU_IOAS_MAP +
#                  IOMMU_IOAS_UNMAP of one 4 KiB page on the edu's cdev, LAZY_COUNT times
#   lazy-bench-iommufd  the guest bench with backend=iommufd (the type1 one says backend=type1)
# Reports "result sample ..." lines; scripts/bench/lazy computes the figures.
. /keel/testbed.sh

count=${LAZY_COUNT:-200}
runs=${LAZY_RUNS:-3}
set -- $(edu_devices)
dev=$1

# guest NAME MAPPING GUEST_ARGS [BACKEND]: one keel boot; reports the guest's lines and vm.info's
# dma. BACKEND (--device backend=) defaults to type1.
guest() {
  name=$1 mapping=$2 args=$3 backend=${4:-type1}
  sock=/tmp/$name.sock out=/tmp/$name.out fifo=/tmp/$name.in
  rm -f "$fifo" "$out" "$sock"
  mkfifo "$fifo"
  keel -v --kernel /keel/guest/vmlinuz --initramfs /keel/guest/initramfs.cpio.gz --memory size=256M \
    --serial tty --api-socket "path=$sock" \
    --cmdline "console=ttyS0 quiet vfio_iommu_type1.allow_unsafe_interrupts=1 keel_lazy=$args" \
    --device "path=/sys/bus/pci/devices/$dev,id=edu0,iommu=on,dma_mapping=$mapping,backend=$backend" \
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
  if [ "${LAZY_IOMMUFD:-0}" = 1 ]; then
    result "sample what=raw-iommufd run=$r $(timeout 600 iommufd_probe --map-bench "$count" "$dev" 2>&1 | tr '\n' ' ')"
    guest lazy-bench-iommufd lazy "--bench,$count" iommufd
  fi
  r=$((r + 1))
done
# The same edu workload (8 mappings, each with a DMA round trip), eager and lazy.
guest eager eager "--pages,8"
guest lazy lazy "--pages,8"
# One guest request for a 256 KiB buffer: the host entries it costs.
guest buffer lazy "--buffer,256"

# qemu_guest NAME GUEST_ARGS: the same guest under QEMU 7.2 with its own virtio-iommu in front of
# the edu (vfio-pci); reports the guest's lines.
qemu_guest() {
  name=$1 args=$2
  out=/tmp/$name.out
  rm -f "$out"
  qemu-system-x86_64 -L /keel/share/qemu -M q35 -accel kvm -cpu host -smp 1 -m 256M -nodefaults \
    -no-user-config -display none -monitor none -serial "file:$out" -no-reboot \
    -kernel /keel/guest/vmlinuz -initrd /keel/guest/initramfs.cpio.gz \
    -append "console=ttyS0 vfio_iommu_type1.allow_unsafe_interrupts=1 keel_lazy=$args" \
    -device virtio-iommu-pci -device "vfio-pci,host=$dev" </dev/null >"/tmp/$name.qemu" 2>&1 &
  pid=$!
  finished=no
  wait_for "$out" "KEEL-GUEST lazy-finished" 1 300 && finished=yes
  result "sample what=$name finished=$finished qemu_errors=$(grep -c -i 'error\|fail' "/tmp/$name.qemu")"
  grep -a "KEEL-GUEST lazy phase=" "$out" | tr -d '\r' | while IFS= read -r line; do
    result "sample what=$name ${line#*KEEL-GUEST lazy }"
  done
  kill "$pid" 2>/dev/null
  reap "$pid" 10
}

# DESIGN.md §1's scenario: a budget of 24 entries, the guest keeps 40 pages mapped; Keel, then
# QEMU. What each tells the guest, and how many of the granted mappings move data.
limit_file=/sys/module/vfio_iommu_type1/parameters/dma_entry_limit
saved_limit=$(cat "$limit_file")
echo 24 >"$limit_file"
guest keel-budget lazy "--hold,40"
if command -v qemu-system-x86_64 >/dev/null; then
  qemu_guest qemu-budget "--hold,40"
fi
echo "$saved_limit" >"$limit_file"
exit 0
