#!/usr/bin/env bash
# ctest testbed.iommufd: Keel's iommufd calls against a real kernel. The emulated host boots a
# kernel built from linux-source-6.12 with IOMMUFD and the VFIO device cdev (run --host-kernel
# iommufd; built once, about 11 minutes, then cached) with two edus (scenarios/iommufd.sh):
#   - /dev/iommu and one cdev per vfio-pci device exist;
#   - for each edu, iommufd_probe binds the cdev, attaches it to a new IOAS, reads the IOVA ranges
#     (the x86 MSI window left out), maps 70 000 separate 4 KiB pages where type1 stops at its
#     dma_entry_limit (65 535, checked on the same device and kernel), unmaps them all, and moves
#     data through the IOAS with the edu's DMA engine;
#   - pinned memory is charged to the user's RLIMIT_MEMLOCK: with 1 MiB and no CAP_IPC_LOCK, the
#     257th page is refused with ENOMEM;
#   - no DMAR fault (run's default).
#
# usage: testbed_iommufd.sh RUN SCENARIO IOMMUFD_PROBE VFIO_PROBE MEMLOCK_EXEC
set -euo pipefail
(($# == 5)) || { echo "usage: $0 RUN SCENARIO IOMMUFD_PROBE VFIO_PROBE MEMLOCK_EXEC" >&2; exit 2; }
run=$1 scenario=$2 iommufd_probe=$3 vfio_probe=$4 memlock_exec=$5

# shellcheck source=testbed_lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/testbed_lib.sh"

status=0
markers=$("$run" --host-kernel iommufd --timeout 1500 --edu 2 \
  --bin "$iommufd_probe" --bin "$vfio_probe" --bin "$memlock_exec" "$scenario") || status=$?
printf '%s\n' "$markers"
expect "the testbed run exits 0 (got $status)" test "$status" -eq 0
line() { grep "^KEEL-TESTBED result $1" <<<"$markers" | head -n 1 || true; }

k=$(line "kernel ")
expect "the host kernel has /dev/iommu ($k)" test "$(field "$k" dev_iommu)" = yes
expect "a cdev per vfio-pci device ($(field "$k" cdevs))" \
  test "$(tr ',' '\n' <<<"$(field "$k" cdevs)" | grep -c '^vfio[0-9]')" -ge 2
for bdf in $(grep -o '^KEEL-TESTBED result iommufd bdf=[^ ]*' <<<"$markers" | sed 's/.*bdf=//'); do
  l=$(line "iommufd bdf=$bdf ")
  expect "$bdf: bound and attached through its cdev ($l)" test -n "$(field "$l" ioas)" -a -n "$(field "$l" devid)"
  expect "$bdf: the IOVA ranges leave the MSI window out ($(field "$l" iova_ranges))" \
    test "$(cut -d, -f1 <<<"$(field "$l" iova_ranges)")" = 0x0-0xfedfffff
  expect "$bdf: 4 KiB alignment ($(field "$l" alignment))" test "$(field "$l" alignment)" = 0x1000
  expect "$bdf: pinned pages charged to the user by default" test "$(field "$l" charged)" = user
  expect "$bdf: 70000 separate mappings, more than type1 allows ($(field "$l" mapped) $(field "$l" stop))" \
    test "$(field "$l" mapped):$(field "$l" stop)" = 70000:ok
  expect "$bdf: a DMA round trip through the IOAS ($(field "$l" dma))" test "$(field "$l" dma)" = ok
done
expect "both edus were probed" test "$(grep -c '^KEEL-TESTBED result iommufd bdf=' <<<"$markers")" = 2
t=$(line "type1 ")
expect "type1 on the same kernel stops at dma_entry_limit ($(field "$t" mapped) $(field "$t" stop))" \
  test "$(field "$t" mapped):$(field "$t" stop)" = 65535:ENOSPC
m=$(line "memlock ")
expect "1 MiB of RLIMIT_MEMLOCK pins 256 pages, the 257th is ENOMEM ($m)" \
  test "$(field "$m" mapped):$(field "$m" stop)" = 256:ENOMEM
finish testbed.iommufd
