# shellcheck shell=sh
# Scenario of scripts/bench/disk (runs inside the emulated host; busybox sh). Boots the carried
# guest (Debian's cloud kernel, scripts/bench/disk-guest-init) with Keel and with QEMU (KVM,
# q35, virtio-blk-pci), alternately, BENCH_RUNS times each, each time with a fresh raw image of
# BENCH_DISK_MIB MiB on the emulated host's tmpfs; once the guest is idle it samples the VMM's
# CPU time, says "go", waits for disk_bench's line, samples again, and reports
#   result bench run=I name=NAME seq_write_mibs=… seq_read_mibs=… rand_read_iops=… bytes=N
#     io_cpu_ms=N vcpu_cpu_ms=N
# io_cpu: the VMM's own threads (Keel's queue workers and VMM thread; QEMU's main loop and I/O
# workers); vcpu_cpu: its vCPU threads (keel-vcpuN; QEMU's "CPU N/KVM", named with
# debug-threads=on), guest mode included (exits handled in the VMM are in it too).
# Facts only: scripts/bench/disk computes the medians and ratios outside.
# shellcheck source=../testbed/scenario-lib.sh
. /keel/testbed.sh
set -u

runs=${BENCH_RUNS:-3}
disk_mib=${BENCH_DISK_MIB:-256}
seconds=${BENCH_SECONDS:-5}
jobs=${BENCH_JOBS:-4}
queues=${BENCH_QUEUES:-1}
kernel=/keel/guest/vmlinuz
initramfs=/keel/guest/initramfs.cpio.gz
cmdline="console=ttyS0 bench_seconds=$seconds bench_jobs=$jobs"
image=/tmp/bench.img

result env "host_kernel=$(uname -r)" "host_cpus=$(grep -c ^processor /proc/cpuinfo)" \
  "keel=$(keel --version 2>&1 | head -n1 | tr -s ' \t' '__')" \
  "qemu=$(qemu-system-x86_64 --version 2>&1 | head -n1 | sed 's/^QEMU emulator version //' | tr -s ' \t()' '____')" \
  "disk_mib=$disk_mib" "seconds=$seconds" "jobs=$jobs" "queues=$queues" "runs=$runs"

# vmm_cpu PID: "IO VCPU" ms of CPU of the VMM's own threads and of its vCPU threads.
# shellcheck source=vmm-cpu.sh
. /keel/vmm-cpu.sh

# measure NAME RUN COMMAND...: one boot; reports the guest's figures and the VMM's CPU.
measure() {
  name=$1 run=$2
  shift 2
  out=/tmp/$name-$run.out
  fifo=/tmp/$name-$run.in
  rm -f "$fifo" "$out" "$image"
  dd if=/dev/zero of="$image" bs=1M count=0 seek="$disk_mib" 2>/dev/null
  mkfifo "$fifo"
  "$@" <"$fifo" >"$out" 2>&1 &
  pid=$!
  exec 3>"$fifo"
  line=
  if wait_for "$out" "KEEL-BENCH idle" 1 180; then
    set -- $(vmm_cpu "$pid")
    io_before=$1 vcpu_before=$2
    echo go >&3
    if wait_for "$out" "KEEL-BENCH disk " 1 $((seconds * 3 + 120)); then
      set -- $(vmm_cpu "$pid")
      line=$(grep -m1 -a 'KEEL-BENCH disk ' "$out" | sed 's/^.*KEEL-BENCH disk //' | tr -d '\r')
      result bench "run=$run" "name=$name" "$line" "io_cpu_ms=$(($1 - io_before))" "vcpu_cpu_ms=$(($2 - vcpu_before))" \
        "$(grep -m1 -a 'KEEL-BENCH idle' "$out" | sed 's/^.*KEEL-BENCH idle //' | tr -d '\r')"
    fi
  fi
  reap "$pid" 60 >/dev/null
  exec 3>&-
  if [ -z "$line" ]; then
    fail "$name run $run: no figures"
    tail -n 40 "$out" | cut -c1-200
  fi
}

check "/dev/kvm is a character device" test -c /dev/kvm
i=1
while [ "$i" -le "$runs" ]; do
  measure keel "$i" keel --kernel "$kernel" --initramfs "$initramfs" --cmdline "$cmdline" \
    --cpus boot=2 --memory size=512M --serial tty --disk "path=$image,num_queues=$queues"
  measure qemu "$i" qemu-system-x86_64 -L /keel/share/qemu -M q35 -accel kvm -cpu host -smp 2 \
    -name bench,debug-threads=on \
    -m 512M -nodefaults -no-user-config -display none -monitor none -serial stdio -no-reboot \
    -kernel "$kernel" -initrd "$initramfs" -append "$cmdline" \
    -drive "file=$image,if=none,id=d0,format=raw" -device "virtio-blk-pci,drive=d0,num-queues=$queues,romfile="
  i=$((i + 1))
done
exit "$failures"
