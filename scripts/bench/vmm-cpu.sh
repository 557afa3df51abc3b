# shellcheck shell=sh
# Sourced by the benchmark scenarios inside the emulated host (carried as /keel/vmm-cpu.sh).
# vmm_cpu PID prints "IO VCPU": milliseconds of CPU the VMM's own threads and its vCPU threads
# have run: utime + stime from /proc/PID/task/TID/stat, in USER_HZ ticks (100 a second on x86,
# so 10 ms steps). The exact per-task sum_exec_runtime of schedstat went backwards between
# samples under the TCG-emulated host (its sched clock is not stable), so the ticks, coarse but
# monotonic, are the measure. Threads that ended are not counted (QEMU's I/O workers live while
# I/O goes on, and stay 10 s after). vCPU threads are keel-vcpuN and QEMU's "CPU N/KVM" (named
# with -name ...,debug-threads=on); guest mode is in their time.
vmm_cpu() {
  io=0 vcpu=0
  for task in /proc/$1/task/*; do
    # Fields after the command's closing parenthesis: state is the 1st, utime the 12th.
    ticks=$(sed 's/^.*) //' "$task/stat" 2>/dev/null | awk '{ print $12 + $13 }')
    case $(cat "$task/comm" 2>/dev/null) in
      keel-vcpu* | CPU*/KVM) vcpu=$((vcpu + ${ticks:-0} * 10)) ;;
      *) io=$((io + ${ticks:-0} * 10)) ;;
    esac
  done
  echo "$io $vcpu"
}
