# shellcheck shell=sh disable=SC2154 # failures: the scenario library's count of failed checks
# Scenario of scripts/bench/dma_map (runs inside the emulated host; busybox sh). For each backing
# and guest-RAM size, DMA_RUNS times, alternately:
#   raw         dma_map_raw map: the bare MAP_DMA / UNMAP_DMA of a buffer allocated as Keel
#               allocates guest RAM (see dma_map_raw.cpp). For the anon backing, a first Keel
#               run (64 MiB, reported as "result probe") shows whether Keel's guest RAM is
#               MADV_HUGEPAGE (VmFlags "hg"): then raw allocates anon-thp, else anon
#   keel        keel -v --kernel /tmp/dma-map/not-a-kernel --memory size=S[,…] --device path=EDU
#               with dma_map_shim.so preloaded: Keel creates the VM, opens the VFIO container,
#               maps guest RAM eagerly, wires the device, then finds the "kernel" (4 KiB of zeros,
#               a readable file, so it passes the check before the VM is built) is not one, tears
#               everything down (unmapping) and exits; the shim reports its ioctl times
#   keel-nodev  the same command without --device (the wall-time baseline)
# each under "dma_map_raw time" (wall time, per-command timeout). Plus, with DMA_STRACE=1, one
# "keel" run per size and backing under "strace -T" as a cross-check of the shim's MAP_DMA time.
# Reports facts only, one line per command:
#   result sample size_mib=S backing=B run=R what=raw|keel|keel-nodev|keel-strace ok=0|1 …
# (run 0: the warm-up)
# and "result skip size_mib=S backing=B reason=…" for what does not fit in the emulated host.
# scripts/bench/dma_map computes medians and ratios outside.
#
# Environment (--env): DMA_SIZES (MiB, comma-separated, default 256,1024), DMA_BACKINGS
# (comma-separated: anon, anon-huge, memfd, memfd-huge; default anon,memfd-huge), DMA_RUNS
# (default 3), DMA_TIMEOUT (seconds per command, default 300), DMA_STRACE (0 or 1, default 0),
# DMA_WARMUP (1: a raw and a keel run 0 per size and backing, left out of the figures; default 1),
# DMA_MARGIN_MIB (memory that must stay available beyond what is pinned, default 256),
# DMA_RAW_ANON (auto, anon or anon-thp: how raw allocates for Keel's anon backing; default auto),
# DMA_HOLD_KVM (1: hold one KVM VM open throughout, see dma_map_raw hold-kvm; default 1),
# DMA_STALL (seconds without progress before the stall watch dumps stacks; default 120),
# DMA_IOMMUFD (1: a keel-iommufd run after each run's others, the same Keel command with
# backend=iommufd; needs the iommufd host kernel).
# shellcheck source=../testbed/scenario-lib.sh
. /keel/testbed.sh
set -u

sizes=$(echo "${DMA_SIZES:-256,1024}" | tr ',' ' ')
backings=$(echo "${DMA_BACKINGS:-anon,memfd-huge}" | tr ',' ' ')
runs=${DMA_RUNS:-3}
cmd_timeout=${DMA_TIMEOUT:-300}
use_strace=${DMA_STRACE:-0}
margin_mib=${DMA_MARGIN_MIB:-256}
warmup=${DMA_WARMUP:-1}
shim=/keel/bench/dma_map_shim.so
tmp=/tmp/dma-map
mkdir -p "$tmp"
no_kernel=$tmp/not-a-kernel
head -c 4096 /dev/zero >"$no_kernel"

bdf=$(edu_devices | head -n 1)
if [ -z "$bdf" ]; then
  fail "no edu device"
  exit "$failures"
fi
group=$(iommu_group_of "$bdf")
driver=$(driver_of "$bdf")
[ "$driver" = vfio-pci ] || fail "edu $bdf is bound to $driver, not vfio-pci"
[ -f "$shim" ] || fail "$shim was not carried"
thp=$(sed 's/.*\[\(.*\)\].*/\1/' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo unknown)
meminfo() { awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo; }
result env kernel="$(uname -r)" cpus="$(grep -c '^processor' /proc/cpuinfo)" \
  mem_total_kib="$(meminfo MemTotal)" mem_available_kib="$(meminfo MemAvailable)" thp="$thp" \
  bdf="$bdf" group="$group" runs="$runs" sizes_mib="$(echo "$sizes" | tr ' ' ',')" \
  backings="$(echo "$backings" | tr ' ' ',')" strace="$use_strace"
[ "$failures" -eq 0 ] || exit "$failures"

# The key=value part of the first line of FILE starting with PREFIX.
fields() { sed -n "s/^$1 //p" "$2" | head -n 1; }

# How raw allocates for each of Keel's backings (anon: see DMA_RAW_ANON).
raw_backing() {
  case $1 in
    anon) echo "$raw_anon" ;;
    *) echo "$1" ;;
  esac
}

keel_memory_opts() {
  case $1 in
    anon) echo "" ;;
    anon-huge) echo ",hugepages=on" ;;
    memfd) echo ",shared=on" ;;
    memfd-huge) echo ",shared=on,hugepages=on" ;;
  esac
}

# run_raw SIZE_MIB BACKING RUN
run_raw() {
  out=$tmp/raw.out
  err=$tmp/raw.err
  dma_map_raw time --timeout "$cmd_timeout" -- \
    dma_map_raw map --group "$group" --size $(($1 * 1048576)) --backing "$(raw_backing "$2")" >"$out" 2>"$err"
  status=$?
  progress
  ok=0
  grep -q '^raw ' "$out" && [ "$status" -eq 0 ] && ok=1
  result sample size_mib="$1" backing="$2" run="$3" what=raw ok="$ok" \
    "$(fields dma_map_time "$err")" "$(fields raw "$out" | sed 's/^size=[0-9]* backing=/raw_backing=/')"
  if [ "$ok" -ne 1 ]; then
    report "raw $1 MiB $2 run $3 failed: $(grep -v '^dma_map_time' "$err" | tail -n 3 | tr '\n' ' ')"
  fi
}

# run_keel SIZE_MIB BACKING RUN WHAT: WHAT is keel (backend=type1), keel-iommufd
# (backend=iommufd), keel-nodev or keel-strace.
run_keel() {
  err=$tmp/keel.err
  trace=$tmp/keel.strace
  set -- "$1" "$2" "$3" "$4" \
    keel -v --kernel "$no_kernel" --memory "size=$1M$(keel_memory_opts "$2")"
  case $4 in
    keel | keel-strace) set -- "$@" --device "path=/sys/bus/pci/devices/$bdf,backend=type1" ;;
    keel-iommufd) set -- "$@" --device "path=/sys/bus/pci/devices/$bdf,backend=iommufd" ;;
  esac
  size=$1 backing=$2 run=$3 what=$4
  shift 4
  rm -f "$trace"
  if [ "$what" = keel-strace ]; then
    dma_map_raw time --timeout "$cmd_timeout" -- \
      strace -f --seccomp-bpf -T -e trace=ioctl -o "$trace" "$@" >/dev/null 2>"$err"
  else
    LD_PRELOAD=$shim dma_map_raw time --timeout "$cmd_timeout" -- "$@" >/dev/null 2>"$err"
  fi
  progress
  # Keel is expected to fail at the kernel that is not one, after the VM and its devices were
  # set up.
  ok=0
  grep -q "keel: kernel $no_kernel is neither a bzImage" "$err" && ok=1
  extra=
  if [ "$what" = keel-strace ]; then
    # ioctl(4, VFIO_IOMMU_MAP_DMA, {…}) = 0 <1.234567>  (or _IOC(…, 0x3b, 0x71, …) undecoded)
    secs=$(grep -E 'VFIO_IOMMU_MAP_DMA|0x3b, 0x71' "$trace" 2>/dev/null | sed -n 's/.*= 0 <\([0-9.]*\)>$/\1/p' |
      awk '{ s += $1 } END { if (NR) printf "%.0f", s * 1e9 }')
    calls=$(grep -cE 'VFIO_IOMMU_MAP_DMA|0x3b, 0x71' "$trace" 2>/dev/null)
    extra="strace_map_ns=${secs:--1} strace_map_calls=${calls:-0}"
  else
    extra=$(fields 'dma_map_shim summary' "$err")
  fi
  mapped=$(grep 'msg="DMA budget"' "$err" | head -n 1 | sed -n 's/.* mapped_bytes=\([0-9]*\).*/\1/p')
  entries=$(grep 'msg="DMA budget"' "$err" | head -n 1 | sed -n 's/.* entries_used=\([0-9]*\).*/\1/p')
  result sample size_mib="$size" backing="$backing" run="$run" what="$what" ok="$ok" \
    "$(fields dma_map_time "$err")" keel_mapped_bytes="${mapped:-none}" keel_entries="${entries:-none}" "$extra"
  if [ "$ok" -ne 1 ]; then
    report "$what $size MiB $backing run $run did not end at the missing kernel: $(grep -v '^dma_map_' "$err" | tail -n 3 | tr '\n' ' ')"
  fi
}

# A stall watch, for diagnosis: every command bumps $tmp/progress; when it has not moved for
# DMA_STALL seconds (default 120), the watch asks the kernel for the blocked tasks' and the CPUs'
# stacks (sysrq w and l, to the console) and says which commands are running. The emulated host
# has been seen to hang under TCG (both vCPUs busy, no console output), rarely, between commands.
stall=${DMA_STALL:-120}
echo 0 >"$tmp/progress"
progress() { echo $(($(cat "$tmp/progress") + 1)) >"$tmp/progress"; }
(
  seen=-1 quiet=0
  while sleep 10; do
    now=$(cat "$tmp/progress" 2>/dev/null)
    if [ "$now" != "$seen" ]; then
      seen=$now quiet=0
      continue
    fi
    quiet=$((quiet + 10))
    if [ "$quiet" -ge "$stall" ]; then
      quiet=0
      echo "dma_map: no progress for $stall s; running: $(for p in /proc/[0-9]*; do
        c=$(cat "$p/comm" 2>/dev/null); case $c in keel|dma_map_raw|strace) echo "${p#/proc/}:$c:$(cut -d' ' -f3 "$p/stat")";; esac; done | tr '\n' ' ')"
      for p in /proc/[0-9]*; do
        case $(cat "$p/comm" 2>/dev/null) in
          keel | strace) echo "dma_map: stack of ${p#/proc/}:"; cat "$p/stack" 2>/dev/null ;;
        esac
      done
      echo w >/proc/sysrq-trigger
      echo l >/proc/sysrq-trigger
    fi
  done
) &
watch_pid=$!

# One KVM VM held open for the whole scenario (see dma_map_raw hold-kvm): KVM keeps
# virtualization on, instead of switching it on and off on every CPU in every keel run.
hold_pid=
if [ "${DMA_HOLD_KVM:-1}" = 1 ]; then
  dma_map_raw hold-kvm &
  hold_pid=$!
fi

# Does Keel advise THP for anonymous guest RAM? One small Keel run (also a warm-up) tells.
raw_anon=${DMA_RAW_ANON:-auto}
if [ "$raw_anon" = auto ]; then
  LD_PRELOAD=$shim dma_map_raw time --timeout "$cmd_timeout" -- keel -v --kernel "$no_kernel" \
    --memory size=64M --device "path=/sys/bus/pci/devices/$bdf" >/dev/null 2>"$tmp/probe.err"
  vma=$(sed -n 's/^dma_map_shim summary .* map_vma=\([^ ]*\).*/\1/p' "$tmp/probe.err")
  case $vma in
    *.hg.* | *.hg,*) raw_anon=anon-thp ;;
    *) raw_anon=anon ;;
  esac
  result probe keel_anon_vma="${vma:-unknown}" raw_anon="$raw_anon"
  [ -n "$vma" ] || report "probe run: $(grep -v '^dma_map_' "$tmp/probe.err" | tail -n 3 | tr '\n' ' ')"
fi

for backing in $backings; do
  case $backing in
    anon | anon-huge | memfd | memfd-huge) ;;
    *) fail "unknown backing $backing"; continue ;;
  esac
  for size in $sizes; do
    case $backing in
      *-huge)
        want=$((size / 2))
        echo "$want" >/proc/sys/vm/nr_hugepages
        got=$(cat /proc/sys/vm/nr_hugepages)
        if [ "$got" -lt "$want" ]; then
          result skip size_mib="$size" backing="$backing" reason=hugepages want="$want" got="$got"
          echo 0 >/proc/sys/vm/nr_hugepages
          continue
        fi
        # The pool is taken out of what the kernel has; the rest must still hold everything else.
        avail=$(($(meminfo MemAvailable) / 1024))
        if [ "$avail" -lt "$margin_mib" ]; then
          result skip size_mib="$size" backing="$backing" reason=memory available_mib="$avail" need_mib="$margin_mib"
          echo 0 >/proc/sys/vm/nr_hugepages
          continue
        fi
        ;;
      *)
        avail=$(($(meminfo MemAvailable) / 1024))
        if [ "$avail" -lt $((size + margin_mib)) ]; then
          result skip size_mib="$size" backing="$backing" reason=memory available_mib="$avail" need_mib=$((size + margin_mib))
          continue
        fi
        ;;
    esac
    echo "dma_map: $size MiB $backing ($runs runs) at uptime $(cut -d' ' -f1 /proc/uptime)"
    if [ "$warmup" = 1 ]; then
      # Run 0, left out of the figures: the first use of the emulated host's memory is slower
      # (QEMU faults its own RAM in on the real machine), by as much as 2x.
      run_raw "$size" "$backing" 0
      run_keel "$size" "$backing" 0 keel
    fi
    run=1
    while [ "$run" -le "$runs" ]; do
      # Alternate which goes first, so that neither always runs on a freshly freed host.
      if [ $((run % 2)) -eq 1 ]; then
        run_raw "$size" "$backing" "$run"
        run_keel "$size" "$backing" "$run" keel
      else
        run_keel "$size" "$backing" "$run" keel
        run_raw "$size" "$backing" "$run"
      fi
      run_keel "$size" "$backing" "$run" keel-nodev
      [ "${DMA_IOMMUFD:-0}" = 1 ] && run_keel "$size" "$backing" "$run" keel-iommufd
      run=$((run + 1))
    done
    if [ "$use_strace" = 1 ]; then
      run_keel "$size" "$backing" 1 keel-strace
    fi
    case $backing in
      *-huge) echo 0 >/proc/sys/vm/nr_hugepages ;;
    esac
  done
done
kill "$watch_pid" 2>/dev/null
[ -z "$hold_pid" ] || kill "$hold_pid" 2>/dev/null
result finished uptime="$(cut -d' ' -f1 /proc/uptime)"
exit "$failures"
