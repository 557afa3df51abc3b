# shellcheck shell=sh
# Helpers for scenarios; inside the emulated host this file is /keel/testbed.sh:
#   . /keel/testbed.sh
# Environment: KEEL_BIN (Keel's binaries), KEEL_GUEST (guest kernel and initramfs, if carried),
# KEEL_MARKERS (the marker serial port).

# Reports facts to the driver: result key=value [key=value ...]
# becomes the marker line "KEEL-TESTBED result key=value ...".
result() {
  echo "KEEL-TESTBED result $*" >"${KEEL_MARKERS:-/dev/null}"
  echo "KEEL-TESTBED result $*"
}

# Text for a person ("KEEL-TESTBED report TEXT"); scripts/testbed/run --report prints only these.
report() {
  echo "KEEL-TESTBED report $*" >"${KEEL_MARKERS:-/dev/null}"
  echo "$*"
}

# Reports a failed check and counts it; the scenario should end with "exit $failures".
failures=0
fail() {
  echo "KEEL-TESTBED check-failed $*" >"${KEEL_MARKERS:-/dev/null}"
  echo "KEEL-TESTBED check-failed $*"
  failures=$((failures + 1))
}

# check DESCRIPTION COMMAND [ARGS...]: runs the command, reports a failure if it fails.
check() {
  desc=$1
  shift
  if "$@"; then
    echo "ok: $desc"
  else
    fail "$desc"
  fi
}

# wait_for FILE PATTERN COUNT SECONDS: until PATTERN occurs COUNT times in FILE (false if it
# does not within SECONDS).
wait_for() {
  n=0
  while [ "$n" -lt $(($4 * 5)) ]; do
    [ "$(grep -c "$2" "$1" 2>/dev/null)" -ge "$3" ] && return 0
    sleep 0.2
    n=$((n + 1))
  done
  return 1
}

# reap PID SECONDS: waits for the background process PID (a child of this shell) to exit, kills
# it (by PID) if it has not within SECONDS; returns its exit status (137 when killed).
reap() {
  n=0
  while kill -0 "$1" 2>/dev/null && [ "$n" -lt $(($2 * 5)) ]; do
    sleep 0.2
    n=$((n + 1))
  done
  kill -0 "$1" 2>/dev/null && kill -9 "$1"
  wait "$1"
}

# pci_devices VENDOR DEVICE: prints the PCI addresses (BDF) of every such device, one per line.
pci_devices() {
  for dev in /sys/bus/pci/devices/*; do
    [ "$(cat "$dev/vendor")" = "0x$1" ] && [ "$(cat "$dev/device")" = "0x$2" ] && echo "${dev##*/}"
  done
  return 0
}
edu_devices() { pci_devices 1234 11e8; }   # the edus (run --edu)
nvme_devices() { pci_devices 1b36 0010; }  # QEMU's NVMe controller (run --nvme)
nic_devices() { pci_devices 8086 10d3; }   # the e1000e NIC (run --nic)

# Prints the IOMMU group number of a PCI device.
iommu_group_of() {
  basename "$(readlink "/sys/bus/pci/devices/$1/iommu_group")"
}

# Prints the driver a PCI device is bound to, or "none".
driver_of() {
  if [ -e "/sys/bus/pci/devices/$1/driver" ]; then
    basename "$(readlink "/sys/bus/pci/devices/$1/driver")"
  else
    echo none
  fi
}

# api STEP COMMAND [ARGS...]: one keel-remote call on the API socket $sock in --json mode;
# reports its exit status and the JSON (or error text) it printed, on one line, last so that it
# may hold spaces (tests/integration/testbed_lib.sh reads them back).
api() {
  api_step=$1
  shift
  api_out=$(timeout 60 keel-remote --api-socket "$sock" --json "$@" 2>&1)
  api_status=$?
  result "api=$api_step exit=$api_status out=$(echo "$api_out" | tr '\n' ' ')"
}

# probe WHEN BDF: the kernel's DMA_AVAIL for a fresh container on BDF (or why it cannot open).
probe() {
  result "probe=$1 bdf=$2 $(timeout 120 vfio_probe "$2" 2>&1 | tr '\n' ' ')"
}
