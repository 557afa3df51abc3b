# shellcheck shell=sh
# Inventory scenario (runs inside the emulated host; busybox sh): tells a person what the
# emulated host offers Keel: kernel, IOMMU, KVM, and for every edu device its IOMMU group, its
# driver and the DMA budget (VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL) of a container holding its group.
# The text leaves as "report" markers (scripts/testbed/run --report prints just the text); each
# device is also a "result" marker. Uses /keel/bin/vfio_probe when it is carried.
# shellcheck source=../scenario-lib.sh
. /keel/testbed.sh
set -u

# Page sizes from a bitmap such as 0x40201000, as "4K,2M,1G".
page_sizes() {
  bits=$(($1))
  text=
  shift_by=0
  while [ "$bits" -ne 0 ] && [ "$shift_by" -lt 63 ]; do
    if [ $((bits & 1)) -eq 1 ]; then
      size=$((1 << shift_by))
      if [ "$size" -ge $((1 << 30)) ]; then
        unit="$((size >> 30))G"
      elif [ "$size" -ge $((1 << 20)) ]; then
        unit="$((size >> 20))M"
      else
        unit="$((size >> 10))K"
      fi
      text="${text:+$text,}$unit"
    fi
    bits=$((bits >> 1))
    shift_by=$((shift_by + 1))
  done
  echo "${text:-none}"
}

field() {
  for tok in $1; do
    case $tok in
      "$2"=*) echo "${tok#*=}" ;;
    esac
  done
}

mem_kb=$(sed -n 's/^MemTotal: *\([0-9]*\).*/\1/p' /proc/meminfo)
report "Emulated host: Linux $(uname -r), $(grep -c ^processor /proc/cpuinfo) vCPUs, $((mem_kb / 1024)) MiB RAM"
if dmesg | grep -q 'DMAR: IOMMU enabled'; then
  iommu="Intel VT-d enabled"
else
  iommu="no Intel VT-d"
fi
if dmesg | grep -q 'Enabled IRQ remapping'; then
  iommu="$iommu, interrupt remapping on"
else
  iommu="$iommu, interrupt remapping off"
fi
report "IOMMU: $iommu"
if [ -c /dev/kvm ] && [ -x "$KEEL_BIN/vfio_probe" ] && kvm=$(vfio_probe --kvm 2>&1); then
  report "KVM: /dev/kvm works ($kvm)"
elif [ -c /dev/kvm ]; then
  report "KVM: /dev/kvm present (not probed)"
else
  report "KVM: no /dev/kvm"
fi
report "vfio_iommu_type1.dma_entry_limit = $(cat /sys/module/vfio_iommu_type1/parameters/dma_entry_limit 2>/dev/null || echo '?')"
if [ -d "$KEEL_BIN" ]; then
  report "Keel binaries in $KEEL_BIN: $(cd "$KEEL_BIN" && echo *)"
fi

count=0
for bdf in $(edu_devices); do
  count=$((count + 1))
  dev=/sys/bus/pci/devices/$bdf
  driver=$(driver_of "$bdf")
  group=$(iommu_group_of "$bdf")
  read -r start end _ <"$dev/resource"
  bar0=$(((end - start + 1) >> 10))
  members=
  for member in "/sys/kernel/iommu_groups/$group/devices"/*; do
    members="$members ${member##*/}"
  done
  report "edu $bdf (1234:11e8, BAR0 ${bar0} KiB): driver $driver, IOMMU group $group (/dev/vfio/$group; devices:$members)"
  if [ ! -x "$KEEL_BIN/vfio_probe" ]; then
    report "    DMA budget: unknown (carry build/bin/vfio_probe with --bin)"
    continue
  fi
  if ! line=$(vfio_probe "$bdf" 2>&1); then
    report "    DMA budget: vfio_probe failed: $line"
    fail "vfio_probe $bdf"
    continue
  fi
  result "edu=$bdf" "driver=$driver" "$line"
  ranges=$(field "$line" iova_ranges | sed 's/,/, /g')
  report "    DMA budget: $(field "$line" dma_avail) MAP_DMA entries available to a new container"
  report "    capabilities $(field "$line" caps); IOVA page sizes $(page_sizes "$(field "$line" pgsizes)"); IOVA ranges $ranges"
done
[ "$count" -gt 0 ] || report "No edu devices (run with --edu N)."
exit "$failures"
