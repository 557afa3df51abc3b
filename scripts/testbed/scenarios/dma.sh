# shellcheck shell=sh
# DMA scenario (runs inside the emulated host; busybox sh): for every edu device, has the edu's
# DMA engine copy a pattern RAM -> device -> RAM through a VFIO container (vfio_probe --dma).
# With KEEL_DMA_FAULT=1 (run --env KEEL_DMA_FAULT=1) it then makes the edu write to an IOVA
# that is not mapped, which the emulated IOMMU must block: the driver's DMAR-fault report is the
# oracle being tested. Needs /keel/bin/vfio_probe.
# shellcheck source=../scenario-lib.sh
. /keel/testbed.sh
set -u

mode=--dma
[ "${KEEL_DMA_FAULT:-0}" = 1 ] && mode=--dma-fault
count=0
for bdf in $(edu_devices); do
  count=$((count + 1))
  if line=$(vfio_probe "$mode" "$bdf"); then
    result "edu=$bdf" "$line"
  else
    fail "vfio_probe $mode $bdf"
  fi
done
[ "$count" -gt 0 ] || fail "no edu device"
result edu_count=$count
exit "$failures"
