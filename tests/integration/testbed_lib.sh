# shellcheck shell=bash
# Helpers for the ctest scripts that drive scripts/testbed/run and check its markers from outside
# (field, markers_from: scripts/lib/keel.sh).

# shellcheck source=../../scripts/lib/keel.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/../../scripts/lib/keel.sh"

passed=0
failed=0

# expect DESCRIPTION COMMAND [ARGS...]: counts a check; a failing one is named on stderr.
expect() {
  local desc=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAILED: $desc" >&2
  fi
}

# The markers of scenario steps reported with the scenario library's `api` (in $markers): the
# line of STEP; its exit status; its output (everything after "out="); a jq filter on its JSON
# answer ("" if it is not JSON).
step_line() { grep "^KEEL-TESTBED result api=$1 " <<<"$markers" || true; }
exit_of() { field "$(step_line "$1")" exit; }
out_of() { sed -n 's/^.* out=//p' <<<"$(step_line "$1")"; }
json() { jq -r "$2" <<<"$(out_of "$1")" 2>/dev/null || true; }

# edu_initramfs TESTBED KDIR INIT EDU_TEST OUT: a guest initramfs for Debian's kernel (KDIR from
# host-kernel.sh) that binds edus to uio_pci_generic and runs edu_test (guest/vfio-init).
edu_initramfs() {
  "$1/build-guest-initramfs.sh" --init "$3" --file "$4:/bin/edu_test" \
    --file "$2/modules/uio.ko:/lib/modules/uio.ko" \
    --file "$2/modules/uio_pci_generic.ko:/lib/modules/uio_pci_generic.ko" \
    -o "$5"
}

# The closing line (ctest shows it) and the exit status.
finish() {
  echo "$1: $passed passed, $failed failed"
  ((failed == 0))
}
