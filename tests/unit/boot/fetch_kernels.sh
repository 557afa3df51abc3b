#!/usr/bin/env bash
# The real kernels the boot unit tests load (ctest fixture "kernels"): Debian's cloud kernel
# (a bzImage, as the testbed's emulated host boots it) and the guest kernel the testbed builds
# from linux-source-6.1 (a PVH vmlinux), both cached under ~/.cache/keel. Links them as
# DIR/bzImage and DIR/vmlinux.
#   usage: fetch_kernels.sh DIR
set -euo pipefail
dir=${1:?usage: fetch_kernels.sh DIR}
testbed="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../../../scripts/testbed" && pwd)"
bzimage="$("$testbed/host-kernel.sh")/vmlinuz"
vmlinux="$("$testbed/build-guest-kernel.sh")/vmlinux"
mkdir -p -- "$dir"
ln -sfn -- "$bzimage" "$dir/bzImage"
ln -sfn -- "$vmlinux" "$dir/vmlinux"
echo "kernels: $dir/bzImage -> $bzimage, $dir/vmlinux -> $vmlinux"
