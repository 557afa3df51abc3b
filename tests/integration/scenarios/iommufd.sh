#!/bin/sh
# Runs inside the emulated host booted with the iommufd host kernel (run --host-kernel iommufd,
# --edu 2): Keel's iommufd calls (iommufd_probe) against the real kernel, beside type1 on the same
# kernel. Reports facts only; tests/integration/testbed_iommufd.sh checks them.
#  - per edu: /dev/iommu and the device cdev; bind, IOAS, attach, IOVA ranges; 70 000 separate
#    4 KiB mappings (more than type1's dma_entry_limit of 65 535 allows) then unmapped; a DMA
#    round trip through the IOAS
#  - type1, same device: 70 000 mappings asked for, one VFIO_IOMMU_MAP_DMA each
#  - memlock: without CAP_IPC_LOCK and with 1 MiB of RLIMIT_MEMLOCK, pages mapped until refused
. /keel/testbed.sh

set -- $(edu_devices)
result "kernel release=$(uname -r) dev_iommu=$([ -c /dev/iommu ] && echo yes || echo no)" \
  "cdevs=$(ls /dev/vfio/devices 2>/dev/null | tr '\n' ',')"
for dev in "$@"; do
  result "iommufd bdf=$dev $(timeout 900 iommufd_probe --maps 70000 --dma "$dev" 2>&1 | tr '\n' ' ')"
done
result "type1 $(timeout 900 vfio_probe --fill --max-maps 70000 "$1" 2>&1 | tr '\n' ' ')"
result "memlock $(timeout 300 memlock_exec 1048576 iommufd_probe --maps 1000 "$1" 2>&1 | tr '\n' ' ')"
exit 0
