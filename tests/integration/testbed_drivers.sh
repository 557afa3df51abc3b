#!/usr/bin/env bash
# ctest testbed.drivers: real drivers through the budget. The emulated host gets an NVMe
# controller (QEMU's nvme on a raw image) and an e1000e NIC whose link shares an emulated hub with
# the host's own virtio-net NIC (in a network namespace, link-local addresses); both functions
# are bound to vfio-pci and passed through to a guest (linux-source-6.1, built here) whose own
# nvme and e1000e drivers run them (scenarios/drivers.sh, guest/drivers-init). Per run:
#   - NVMe: 8 MiB written by 4 O_DIRECT writers at once and read back by 4 readers, equal; no
#     I/O error in the guest;
#   - NIC: the guest and the host ping each other and fetch 4 MiB from each other over TCP,
#     checksums equal;
#   - vm.info: the mode asked for, `consistent`, peak entries within the limit; after keel
#     exits both devices open again in a fresh container; no DMAR fault (run's default).
# Runs: eager; lazy behind Keel's virtual IOMMU with an ample budget (no refusals); lazy with a
# short budget, 40 entries per container, below what either driver holds when it may (NVMe up to
# about 70, e1000e about 267: a buffer per receive descriptor): the work completes all the same, the
# refusals counted (the e1000e's receive buffers stop short of the progress reserve, so its
# transmit buffers still get entries).
# Then a second emulated host boots the iommufd kernel (run --host-kernel iommufd) and the
# guest's drivers run the same workload with backend=iommufd, eager and lazy behind the virtual
# IOMMU: the data equal, vm.info naming the backend, no DMAR fault, the devices free afterwards.
#
# usage: testbed_drivers.sh RUN SCENARIO GUEST_INIT KEEL KEEL_REMOTE VFIO_PROBE
set -euo pipefail
(($# == 6)) || { echo "usage: $0 RUN SCENARIO GUEST_INIT KEEL KEEL_REMOTE VFIO_PROBE" >&2; exit 2; }
run=$1 scenario=$2 guest_init=$3 keel=$4 keel_remote=$5 probe=$6
testbed=$(dirname -- "$run")

# shellcheck source=testbed_lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/testbed_lib.sh"

work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT
kernel="$("$testbed/build-guest-kernel.sh")/bzImage"
"$testbed/build-guest-initramfs.sh" --init "$guest_init" -o "$work/initramfs.cpio.gz"
truncate -s 64M "$work/nvme.img"

ample=65535
short=40
runs="eager:$ample:,dma_mapping=eager;lazy:$ample:,iommu=on,dma_mapping=lazy;short:$short:,iommu=on,dma_mapping=lazy"
status=0
markers=$("$run" --timeout 1500 --edu 0 --nvme "$work/nvme.img" --nic \
  --bin "$keel" --bin "$keel_remote" --bin "$probe" \
  --guest-kernel "$kernel" --guest-initramfs "$work/initramfs.cpio.gz" \
  --env "RUNS=$runs" "$scenario") || status=$?
printf '%s\n' "$markers"
expect "the testbed run exits 0 (got $status)" test "$status" -eq 0
devices=$(grep '^KEEL-TESTBED result devices ' <<<"$markers" || true)
expect "the NVMe controller is bound to vfio-pci ($devices)" test "$(field "$devices" nvme_driver)" = vfio-pci
expect "the e1000e is bound to vfio-pci ($devices)" test "$(field "$devices" nic_driver)" = vfio-pci
host_sha=$(field "$(grep '^KEEL-TESTBED result host_link ' <<<"$markers" || true)" host_sha)

line() { grep "^KEEL-TESTBED result run=$1 $2" <<<"$markers" | head -n 1 || true; }
info() { sed -n "s/^KEEL-TESTBED result run=$1 info=//p" <<<"$markers" | jq -r "$2" 2>/dev/null || true; }

# check_run NAME MODE LIMIT [BACKEND]: BACKEND iommufd checks the backend instead of the count.
check_run() {
  local name=$1 mode=$2 limit=$3 backend=${4:-type1} l n
  expect "$name: the guest finished its work" grep -q "^KEEL-TESTBED result run=$name vmm=keel limit=$limit finished=yes " <<<"$markers"
  n=$(line "$name" "nvme ")
  expect "$name: NVMe read back what 4 writers wrote ($(field "$n" pattern_sha) vs $(field "$n" read_sha))" \
    test -n "$(field "$n" pattern_sha)" -a "$(field "$n" pattern_sha)" = "$(field "$n" read_sha)"
  expect "$name: no NVMe writer or reader failed ($n)" \
    test "$(field "$n" write_failed):$(field "$n" read_failed)" = 0:0
  expect "$name: no I/O error in the guest ($(field "$n" io_errors))" test "$(field "$n" io_errors)" = 0
  l=$(line "$name" "nic ")
  expect "$name: the guest's e1000e driver runs the NIC ($(field "$l" driver))" test "$(field "$l" driver)" = e1000e
  expect "$name: the guest pings the host" test "$(field "$l" ping)" = ok
  expect "$name: 4 MiB host to guest over TCP, equal ($(field "$l" got_sha))" test "$(field "$l" got_sha)" = "$host_sha"
  l=$(line "$name" "host ")
  expect "$name: the host pings the guest" test "$(field "$l" ping)" = ok
  expect "$name: 4 MiB guest to host over TCP, equal" \
    test -n "$(field "$l" fetched_sha)" -a "$(field "$l" fetched_sha)" = "$(field "$(line "$name" "nic ")" served_sha)"
  # Eager: one container for both. Behind the virtual IOMMU: one each (the guest may put them in
  # different domains), each with the kernel's whole limit.
  local containers=1 i
  [[ $mode == lazy ]] && containers=2
  expect "$name: $containers container(s) (got $(info "$name" '.dma | length'))" \
    test "$(info "$name" '.dma | length')" = "$containers"
  for ((i = 0; i < containers; i++)); do
    expect "$name: container $i in mode $mode (got $(info "$name" ".dma[$i].mode"))" \
      test "$(info "$name" ".dma[$i].mode")" = "$mode"
    if [[ $backend == iommufd ]]; then
      expect "$name: container $i on iommufd (got $(info "$name" ".dma[$i].backend"), $(info "$name" ".dma[$i].backend_reason"))" \
        test "$(info "$name" ".dma[$i].backend"):$(info "$name" ".dma[$i].avail_source")" = iommufd:iommufd
      continue
    fi
    expect "$name: container $i consistent" test "$(info "$name" ".dma[$i].consistent")" = true
    expect "$name: container $i has the kernel's limit $limit (got $(info "$name" ".dma[$i].avail_at_open"))" \
      test "$(info "$name" ".dma[$i].avail_at_open")" = "$limit"
    expect "$name: container $i's peak within the limit ($(info "$name" ".dma[$i].peak_entries"))" \
      test "$(info "$name" ".dma[$i].peak_entries")" -le "$limit"
  done
  expect "$name: no DMAR fault during the run ($(field "$(line "$name" "dmar_faults=")" dmar_faults))" \
    test "$(field "$(line "$name" "dmar_faults=")" dmar_faults)" = 0
  expect "$name: keel ended with 0" test "$(field "$(line "$name" "keel_exit=")" keel_exit)" = 0
  # (A fresh container always starts with the whole limit: this proves the groups were released.)
  expect "$name: both devices open again in a fresh container afterwards" \
    test "$(grep -c "^KEEL-TESTBED result run=$name probe=after .*dma_avail=$limit\b" <<<"$markers")" = 2
}
check_run eager eager "$ample"
check_run lazy lazy "$ample"
l=$(sed -n "s/^KEEL-TESTBED result run=lazy counters=//p" <<<"$markers")
expect "lazy (ample): no refusals ($(jq -c '[.dma.refused_budget, .dma1.refused_budget]' <<<"$l" 2>/dev/null))" \
  test "$(jq -r '.dma.refused_budget + .dma1.refused_budget + .dma.failed_maps + .dma1.failed_maps' <<<"$l" 2>/dev/null)" = 0
check_run short lazy "$short"
l=$(sed -n "s/^KEEL-TESTBED result run=short counters=//p" <<<"$markers")
refused=$(jq -r '.dma.refused_budget + .dma1.refused_budget' <<<"$l" 2>/dev/null || true)
expect "short: the budget was short: MAPs were refused ($refused)" test "${refused:-0}" -gt 0
expect "short: every refusal was Keel's, before the kernel's (kernel failures $(jq -c '[.dma.kernel_failures, .dma1.kernel_failures]' <<<"$l" 2>/dev/null))" \
  test "$(jq -r '.dma.kernel_failures + .dma1.kernel_failures' <<<"$l" 2>/dev/null)" = 0

# The same drivers and workload on iommufd (tsc=unstable: that kernel's built-in KVM would take
# the TCG CPU's TSC rate before the kernel refines it).
status=0
runs="eager-fd:$ample:,dma_mapping=eager,backend=iommufd;lazy-fd:$ample:,iommu=on,dma_mapping=lazy,backend=iommufd"
markers=$("$run" --host-kernel iommufd --append tsc=unstable --timeout 1500 --edu 0 \
  --nvme "$work/nvme.img" --nic --bin "$keel" --bin "$keel_remote" --bin "$probe" \
  --guest-kernel "$kernel" --guest-initramfs "$work/initramfs.cpio.gz" \
  --env "RUNS=$runs" "$scenario") || status=$?
printf '%s\n' "$markers"
expect "iommufd: the testbed run exits 0 (got $status)" test "$status" -eq 0
host_sha=$(field "$(grep '^KEEL-TESTBED result host_link ' <<<"$markers" || true)" host_sha)
check_run eager-fd eager "$ample" iommufd
check_run lazy-fd lazy "$ample" iommufd
finish testbed.drivers
