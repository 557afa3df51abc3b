# shellcheck shell=sh
# Scenario of scripts/bench/net (runs inside the emulated host; busybox sh). Boots the carried
# guest (Debian's cloud kernel, scripts/bench/net-guest-init) with Keel and with QEMU (KVM, q35,
# virtio-net-pci over a TAP, no vhost), alternately, BENCH_RUNS times each. Each VMM runs in a
# network namespace of its own (unshare -n) with the TAP's host side 169.254.30.1/16 and a
# net_bench server there; once the guest is idle the scenario samples the VMM's CPU time, says
# "go", waits for net_bench's line, samples again, and reports
#   result bench run=I name=NAME tx_mibs=… rx_mibs=… bytes=N io_cpu_ms=N vcpu_cpu_ms=N
# Facts only: scripts/bench/net computes the medians and ratios outside.
# shellcheck source=../testbed/scenario-lib.sh
. /keel/testbed.sh
# shellcheck source=vmm-cpu.sh
. /keel/vmm-cpu.sh
set -u

runs=${BENCH_RUNS:-3}
seconds=${BENCH_SECONDS:-5}
kernel=/keel/guest/vmlinuz
initramfs=/keel/guest/initramfs.cpio.gz
cmdline="console=ttyS0 bench_seconds=$seconds"

result env "host_kernel=$(uname -r)" "host_cpus=$(grep -c ^processor /proc/cpuinfo)" \
  "keel=$(keel --version 2>&1 | head -n1 | tr -s ' \t' '__')" \
  "qemu=$(qemu-system-x86_64 --version 2>&1 | head -n1 | sed 's/^QEMU emulator version //' | tr -s ' \t()' '____')" \
  "seconds=$seconds" "runs=$runs"

# measure NAME RUN TAP COMMAND...: one boot in a namespace of its own; the TAP's host side gets
# its address when it appears (Keel sets it itself; QEMU's is set here); reports the figures.
measure() {
  name=$1 run=$2 tap=$3
  shift 3
  out=/tmp/$name-$run.out
  fifo=/tmp/$name-$run.in
  rm -f "$fifo" "$out"
  mkfifo "$fifo"
  unshare -n "$@" <"$fifo" >"$out" 2>&1 &
  pid=$!
  exec 3>"$fifo"
  line=
  n=0
  until nsenter -t "$pid" -n ip link show "$tap" >/dev/null 2>&1 || [ "$n" -ge 100 ]; do
    sleep 0.1
    n=$((n + 1))
  done
  nsenter -t "$pid" -n ip link set lo up
  nsenter -t "$pid" -n ip addr add 169.254.30.1/16 dev "$tap" 2>/dev/null
  nsenter -t "$pid" -n ip link set "$tap" up
  nsenter -t "$pid" -n net_bench server 5201 &
  server=$!
  if wait_for "$out" "KEEL-BENCH idle" 1 180; then
    set -- $(vmm_cpu "$pid")
    io_before=$1 vcpu_before=$2
    echo go >&3
    if wait_for "$out" "KEEL-BENCH net " 1 $((seconds * 2 + 120)); then
      set -- $(vmm_cpu "$pid")
      line=$(grep -m1 -a 'KEEL-BENCH net ' "$out" | sed 's/^.*KEEL-BENCH net //' | tr -d '\r')
      result bench "run=$run" "name=$name" "$line" "io_cpu_ms=$(($1 - io_before))" "vcpu_cpu_ms=$(($2 - vcpu_before))" \
        "$(grep -m1 -a 'KEEL-BENCH idle' "$out" | sed 's/^.*KEEL-BENCH idle //' | tr -d '\r')"
    fi
  fi
  kill "$server" 2>/dev/null
  wait "$server" 2>/dev/null
  reap "$pid" 60 >/dev/null
  exec 3>&-
  case $line in
    *error=* | '')
      fail "$name run $run: no figures ($line)"
      tail -n 40 "$out" | cut -c1-200
      ;;
  esac
}

check "/dev/kvm is a character device" test -c /dev/kvm
i=1
while [ "$i" -le "$runs" ]; do
  measure keel "$i" keelbench0 keel --kernel "$kernel" --initramfs "$initramfs" --cmdline "$cmdline" \
    --cpus boot=2 --memory size=512M --serial tty \
    --net "tap=keelbench0,ip=169.254.30.1,mask=255.255.0.0"
  measure qemu "$i" qemubench0 qemu-system-x86_64 -L /keel/share/qemu -M q35 -accel kvm -cpu host -smp 2 \
    -name bench,debug-threads=on \
    -m 512M -nodefaults -no-user-config -display none -monitor none -serial stdio -no-reboot \
    -kernel "$kernel" -initrd "$initramfs" -append "$cmdline" \
    -netdev "tap,id=n0,ifname=qemubench0,script=no,downscript=no,vhost=off" \
    -device "virtio-net-pci,netdev=n0,romfile="
  i=$((i + 1))
done
exit "$failures"
