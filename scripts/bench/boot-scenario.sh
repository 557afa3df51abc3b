# shellcheck shell=sh
# Scenario of scripts/bench/boot (runs inside the emulated host; busybox sh). Boots the carried
# guest kernel and initramfs with Keel and with QEMU (KVM), alternately, BENCH_RUNS times each,
# every boot under boot_probe, and reports each probe's line as "result bench run=I name=NAME …"
# (and, for run 1, the largest resident mappings as "result map …").
# Facts only: scripts/bench/boot computes the medians and ratios outside.
#
# Environment (--env): BENCH_RUNS (default 5), BENCH_MEMORY (default 512M), BENCH_CPUS
# (default 2), BENCH_BOOT_TIMEOUT (seconds to reach the guest's init, default 120).
# Files: /keel/bench/cmdline (the guest kernel command line), /keel/bench/qemu-machines ("auto":
# microvm, else q35; or space-separated -M values, each measured, e.g. "microvm q35"),
# /keel/share/qemu (QEMU's firmware).
# shellcheck source=../testbed/scenario-lib.sh
. /keel/testbed.sh
set -u

runs=${BENCH_RUNS:-5}
machines=$(cat /keel/bench/qemu-machines)
memory=${BENCH_MEMORY:-512M}
cpus=${BENCH_CPUS:-2}
boot_timeout=${BENCH_BOOT_TIMEOUT:-120}
cmdline=$(cat /keel/bench/cmdline)
kernel=/keel/guest/vmlinuz
initramfs=/keel/guest/initramfs.cpio.gz
case $memory in
  *G) mem_mib=$((${memory%G} * 1024)) ;;
  *M) mem_mib=${memory%M} ;;
  *) fail "BENCH_MEMORY wants NM or NG, got $memory"; exit 1 ;;
esac
# Half the guest's RAM: only guest-RAM mappings are that large (see boot_probe.cpp).
ram_min=$((mem_mib * 1048576 / 2))

result env "host_kernel=$(uname -r)" "host_cpus=$(grep -c ^processor /proc/cpuinfo)" \
  "host_mem_kb=$(sed -n 's/^MemTotal: *\([0-9]*\).*/\1/p' /proc/meminfo)" \
  "thp=$(sed -n 's/.*\[\(.*\)\].*/\1/p' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)" \
  "keel=$(keel --version 2>&1 | head -n1 | tr -s ' \t' '__')" \
  "qemu=$(qemu-system-x86_64 --version 2>&1 | head -n1 | sed 's/^QEMU emulator version //' | tr -s ' \t()' '____')" \
  "guest_memory=$memory" "guest_cpus=$cpus" "ram_min=$ram_min" "runs=$runs"
echo "guest command line: $cmdline"

# probe NAME RUN VMM ARGS...: one boot under boot_probe; reports its lines; fails when the guest
# did not reach init or memory was not sampled.
probe() {
  name=$1 run=$2
  shift 2
  log=/tmp/$name-$run.log
  echo "bench: $name run $run: $*"
  out=$(boot_probe --name "$name" --marker "KEEL-BENCH init" --idle "KEEL-BENCH idle" \
    --timeout "$boot_timeout" --exit-timeout 20 --settle-ms 1000 --guest-ram-min "$ram_min" \
    --log "$log" -- "$@")
  status=$?
  echo "$out" | grep '^BOOT-PROBE ' | while read -r _ rest; do result bench "run=$run" "$rest"; done
  if [ "$run" = 1 ]; then
    echo "$out" | grep '^BOOT-PROBE-MAP ' | while read -r _ rest; do result map "$rest"; done
  fi
  echo "$out"
  if [ "$status" != 0 ]; then
    echo "bench: $name run $run failed (status $status); last 40 console lines:"
    tail -n 40 "$log" | cut -c1-200
  elif [ "$run" = 1 ]; then
    # The whole guest console of the first run, each line with its arrival time in ms (kept in
    # the testbed's console.log with --out): where the time goes.
    echo "bench: $name run 1 guest console (ms since the VMM's start):"
    sed "s/^/bench-log $name /" "$log" | cut -c1-220
  fi
  return "$status"
}

# keel_cmd HOW RUN, qemu_cmd HOW MACHINE RUN: one boot by HOW (probe or trace_boot).
keel_cmd() {
  "$1" keel "$2" keel --kernel "$kernel" --initramfs "$initramfs" --cmdline "$cmdline" \
    --cpus "boot=$cpus" --memory "size=$memory" --serial tty
}

# QEMU as close to Keel as it goes: KVM, the host's CPU model, no default devices, COM1 on stdio.
qemu_cmd() {
  machine=$2 run=$3
  "$1" "qemu-$machine" "$run" qemu-system-x86_64 -L /keel/share/qemu -M "$machine" -accel kvm \
    -cpu host -smp "$cpus" -m "$memory" -nodefaults -no-user-config -display none -monitor none \
    -serial stdio -no-reboot -kernel "$kernel" -initrd "$initramfs" -append "$cmdline"
}

# trace_boot NAME RUN COMMAND...: one more boot, not counted in the figures, with KVM's tracepoints
# on: reports how many exits of each reason the boot took ("result exits name=N reason=R
# count=C"), which of them went out to the VMM ("userspace", by KVM_EXIT_ reason) and the port
# I/O by port and direction ("result pio ..."): where the exits come from.
tracing=/sys/kernel/debug/tracing
trace_boot() {
  name=$1
  shift 2
  [ -d "$tracing/events/kvm" ] || { echo "bench: no KVM tracepoints; exits by reason not counted"; return 0; }
  echo 0 >"$tracing/tracing_on"
  echo 32768 >"$tracing/buffer_size_kb"
  : >"$tracing/trace"
  for e in kvm_exit kvm_pio kvm_userspace_exit; do echo 1 >"$tracing/events/kvm/$e/enable"; done
  echo 1 >"$tracing/tracing_on"
  echo "bench: $name traced boot: $*"
  boot_probe --name "$name" --marker "KEEL-BENCH init" --idle "KEEL-BENCH idle" \
    --timeout "$boot_timeout" --exit-timeout 20 --settle-ms 0 --guest-ram-min "$ram_min" \
    --log "/tmp/$name-trace.log" -- "$@" >/dev/null
  status=$?
  echo 0 >"$tracing/tracing_on"
  for e in kvm_exit kvm_pio kvm_userspace_exit; do echo 0 >"$tracing/events/kvm/$e/enable"; done
  [ "$status" = 0 ] || echo "bench: $name traced boot failed (status $status)"
  awk -v name="$name" '
    / kvm_exit: / { for (i = 1; i < NF; i++) if ($i == "reason") { exits[$(i + 1)]++; break } }
    / kvm_userspace_exit: / { for (i = 1; i < NF; i++) if ($i == "reason") { user[$(i + 1)]++; break } }
    / kvm_pio: / { for (i = 1; i < NF; i++) if ($i == "at") { pio[$(i - 1) " " $(i + 1)]++; break } }
    / lost / { lost = 1 }
    END {
      for (r in exits) printf "exits name=%s reason=%s count=%d\n", name, r, exits[r]
      for (r in user) printf "exits name=%s reason=userspace:%s count=%d\n", name, r, user[r]
      for (p in pio) { split(p, a, " "); printf "pio name=%s dir=%s port=%s count=%d\n", name, a[1], a[2], pio[p] }
      if (lost) printf "exits name=%s reason=trace-events-lost count=1\n", name
    }' "$tracing/trace" | while read -r kind rest; do result "$kind" $rest; done
  : >"$tracing/trace"
  return 0
}

check "/dev/kvm is a character device" test -c /dev/kvm
# KVM's per-VM exit and fault counters (boot_probe reads them).
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null

if [ "$machines" = auto ]; then
  # The first microvm boot decides (tried twice: a boot in this nested setup fails now and then);
  # its figures count as run 1 when it works.
  if qemu_cmd probe microvm 1 || qemu_cmd probe microvm 1; then
    machines=microvm
  else
    result qemu-fallback microvm=failed
    machines=q35
  fi
  first_done=microvm
else
  first_done=
fi
result qemu-machines "$(echo "$machines" | tr ' ' ';')"

# A failed Keel boot fails the scenario. A failed QEMU boot is reported (ok=0) and left out of the
# figures; only a QEMU machine that never reached init fails it.
: >/tmp/qemu-ok
[ "$first_done" = microvm ] && [ "$machines" = microvm ] && echo microvm >>/tmp/qemu-ok
i=1
while [ "$i" -le "$runs" ]; do
  keel_cmd probe "$i" || fail "keel run $i did not reach init or was not sampled"
  for m in $machines; do
    [ "$i" = 1 ] && [ "$m" = "$first_done" ] && continue
    qemu_cmd probe "$m" "$i" && echo "$m" >>/tmp/qemu-ok
  done
  i=$((i + 1))
done
for m in $machines; do
  grep -qxF "$m" /tmp/qemu-ok || fail "qemu-$m did not reach init in any run"
done
# One traced boot each, after the measured ones (tracing slows the boot it watches).
keel_cmd trace_boot t
for m in $machines; do qemu_cmd trace_boot "$m" t; done
exit "$failures"
