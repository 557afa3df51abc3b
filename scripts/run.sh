#!/usr/bin/env bash
# Keel's main job from a fresh Debian 12 machine: installs what is missing, builds, then
#  - with no arguments: brings up the testbed (an emulated host with an IOMMU and edu PCI
#    devices), shows its VFIO devices and their DMA budget, and boots a Linux guest with Keel;
#  - with arguments: runs keel with them on this host, e.g.
#      scripts/run.sh --kernel bzImage --initramfs initrd.img --cpus boot=2 --memory size=1G
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh --release >/dev/null
if (($#)); then
  exec build-release/bin/keel "$@"
fi

guest_initramfs=build-release/testbed/demo-initramfs.cpio.gz
mkdir -p build-release/testbed
scripts/testbed/build-guest-initramfs.sh --init scripts/testbed/guest/hello-init -o "$guest_initramfs"
kernel_dir=$(scripts/testbed/host-kernel.sh)
exec scripts/testbed/run --report --timeout 600 --edu 2 \
  --append "vfio_iommu_type1.dma_entry_limit=${KEEL_DMA_ENTRY_LIMIT:-65535}" \
  --bin build-release/bin/keel --bin build-release/bin/keel-remote --bin build-release/bin/vfio_probe \
  --file scripts/testbed/scenarios/inventory.sh:/keel/inventory.sh \
  --guest-kernel "$kernel_dir/vmlinuz" --guest-initramfs "$guest_initramfs" \
  scripts/testbed/scenarios/demo.sh
