# shellcheck shell=sh
# Smoke scenario (runs inside the emulated host; busybox sh).
# Checks that KVM works, that every edu device is bound to vfio-pci with its group node present,
# that keel runs, and reports what VFIO type1 says about each group. The DMA budget is
# asserted from outside (tests/integration/testbed_smoke.sh), against the limit passed in.
# Needs /keel/bin/vfio_probe and /keel/bin/keel.
# shellcheck source=../scenario-lib.sh
. /keel/testbed.sh
set -u

check "/dev/kvm is a character device" test -c /dev/kvm
if kvm=$(vfio_probe --kvm); then
  result "$kvm"
else
  fail "KVM_GET_API_VERSION/KVM_CREATE_VM on /dev/kvm"
fi

if version=$(keel --version 2>&1); then
  echo "keel --version: $version"
  result keel_version="$(echo "$version" | head -n1 | tr -s ' \t' '__')"
else
  echo "$version"
  fail "keel --version"
fi

count=0
for bdf in $(edu_devices); do
  count=$((count + 1))
  driver=$(driver_of "$bdf")
  group=$(iommu_group_of "$bdf")
  check "edu $bdf is bound to vfio-pci (it is bound to $driver)" [ "$driver" = vfio-pci ]
  check "group node /dev/vfio/$group of edu $bdf exists" test -c "/dev/vfio/$group"
  # Fill the container until the kernel refuses (the limit must be real, not just reported),
  # then have the edu copy a pattern RAM -> device -> RAM through the IOMMU.
  if line=$(vfio_probe --fill --max-maps 4096 --dma "$bdf"); then
    result "edu=$bdf" "driver=$driver" "$line"
  else
    fail "vfio_probe --fill --dma $bdf"
  fi
done
result edu_count=$count

# The unit tests that need a working /dev/kvm (a tiny hand-written guest, the KVM fault sweep, the
# VMM's control paths), when carried: this machine has KVM, development machines do not.
if command -v vmm_kvm_test >/dev/null 2>&1; then
  vmm_kvm_test >/tmp/vmm_kvm_test.log 2>&1
  status=$?
  tail -n 20 /tmp/vmm_kvm_test.log
  summary=$(grep -E '^(All tests passed|test cases:)' /tmp/vmm_kvm_test.log | tail -n1 | tr -s ' ()' '_')
  result kvm_unit "status=$status" "summary=${summary:-none}"
fi
exit "$failures"
