# shellcheck shell=sh
# Sourced by the benchmark scenarios inside the emulated host (carried as /keel/vmm-cpu.sh).
# vmm_cpu PID prints "IO VCPU": milliseconds of CPU the VMM's own threads and its vCPU threads
# have run (sum_exec_runtime from /proc/PID/task/TID/schedstat: exact and monotonic, which the
# tick-sampled utime/stime under the emulated host are not). Threads that ended are not counted
# (QEMU's I/O workers live while I/O goes on, and stay 10 s after). vCPU threads are keel-vcpuN
# and QEMU's "CPU N/KVM" (named with -name ...,debug-threads=on); guest mode is in their time.
vmm_cpu() {
  io=0 vcpu=0
  for task in /proc/$1/task/*; do
    ns=$(cut -d' ' -f1 "$task/schedstat" 2>/dev/null || echo 0)
    case $(cat "$task/comm" 2>/dev/null) in
      keel-vcpu* | CPU*/KVM) vcpu=$((vcpu + ns / 1000000)) ;;
      *) io=$((io + ns / 1000000)) ;;
    esac
  done
  echo "$io $vcpu"
}
