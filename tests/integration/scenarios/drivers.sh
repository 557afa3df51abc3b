#!/bin/sh
# Runs inside the emulated host (run --nvme IMAGE --nic): keel boots the guest kernel built from
# linux-source-6.1 with the NVMe controller and the e1000e NIC passed through; the guest's own
# nvme and e1000e drivers run them (tests/integration/guest/drivers-init). The NIC's link is an
# emulated hub shared with the emulated host's virtio-net NIC, moved into a network namespace of
# its own (169.254.30.1/16); nothing leaves the emulated host.
# One boot per run: RUNS lists NAME:LIMIT:OPTIONS[:WAIT_S], separated by ";", e.g.
#   eager:65535:,dma_mapping=eager;lazy:65535:,iommu=on,dma_mapping=lazy;q:40:qemu-iommu:300
# LIMIT is written to vfio_iommu_type1's dma_entry_limit before the VMM opens its containers.
# OPTIONS are appended to keel's --device options, or name QEMU 7.2 as the VMM (start_qemu).
# WAIT_S (default 600): how long the guest's workload may take.
# Reports facts only; tests/integration/testbed_drivers.sh checks them.
. /keel/testbed.sh

nvme=$(nvme_devices | head -n 1)
nic=$(nic_devices | head -n 1)
result "devices nvme=${nvme:-none} nvme_driver=$(driver_of "$nvme") nic=${nic:-none} nic_driver=$(driver_of "$nic")"
[ -n "$nvme" ] && [ -n "$nic" ] || exit 1

# The host's side of the link: its virtio-net NIC, in a namespace held by a sleeping process.
host_if=
for d in /sys/class/net/*; do
  [ "$(basename "$(readlink "$d/device/driver" 2>/dev/null)")" = virtio_net ] && host_if=${d##*/}
done
unshare -n sleep 100000 &
ns_pid=$!
n=0  # until the holder is in its own namespace (busybox unshares after the fork)
while [ "$(readlink "/proc/$ns_pid/ns/net")" = "$(readlink /proc/self/ns/net)" ] && [ "$n" -lt 100 ]; do
  sleep 0.1
  n=$((n + 1))
done
ip link set "$host_if" netns "$ns_pid"
nsenter -t "$ns_pid" -n ip link set lo up
nsenter -t "$ns_pid" -n ip link set "$host_if" up
nsenter -t "$ns_pid" -n ip addr add 169.254.30.1/16 dev "$host_if"
mkdir -p /tmp/www
dd if=/dev/urandom of=/tmp/www/host.bin bs=1M count=4 2>/dev/null
host_sha=$(sha256sum /tmp/www/host.bin | cut -c1-64)
nsenter -t "$ns_pid" -n httpd -f -p 8080 -h /tmp/www &
httpd_pid=$!
result "host_link if=${host_if:-none} host_sha=$host_sha"

limit_file=/sys/module/vfio_iommu_type1/parameters/dma_entry_limit
default_limit=$(cat "$limit_file")
sock=/tmp/keel-drivers.sock

dmar_count() { dmesg | grep -cE 'DMAR: \[(DMA (Read|Write)|INTR-REMAP)'; }

# start_keel NAME OPTS: keel boots the guest with both functions passed through (OPTS appended to
# each --device); sets pid.
start_keel() {
  keel -v --kernel /keel/guest/vmlinuz --initramfs /keel/guest/initramfs.cpio.gz \
    --memory size=256M --serial tty --api-socket "path=$sock" --cmdline "console=ttyS0" \
    --device "path=/sys/bus/pci/devices/$nvme,id=nvme0$2" \
    --device "path=/sys/bus/pci/devices/$nic,id=nic0$2" <"/tmp/$1.in" >"/tmp/$1.out" 2>"/tmp/$1.log" &
  pid=$!
}

# start_qemu NAME OPTS: QEMU 7.2 as the VMM (scripts/bench/drivers' reference rows), the same
# guest and memory; OPTS "qemu" passes both functions straight through (QEMU maps all guest
# memory: eager), "qemu-iommu" puts QEMU's virtio-iommu in front of them. Sets pid.
start_qemu() {
  viommu=
  [ "$2" = qemu-iommu ] && viommu="-device virtio-iommu-pci"
  # shellcheck disable=SC2086 # $viommu is empty or two words
  qemu-system-x86_64 -L /keel/share/qemu -M q35 -accel kvm -cpu host -smp 1 -m 256M -nodefaults \
    -no-user-config -display none -monitor none -serial "file:/tmp/$1.out" -no-reboot \
    -kernel /keel/guest/vmlinuz -initrd /keel/guest/initramfs.cpio.gz -append "console=ttyS0" \
    $viommu -device "vfio-pci,host=$nvme" -device "vfio-pci,host=$nic" </dev/null >"/tmp/$1.log" 2>&1 &
  pid=$!
}

# Ends a keel run as an orchestrator does (vm.shutdown, then vmm.shutdown): keel closes the
# devices (vfio-pci stops their DMA) before it unmaps guest memory. The guest's own poweroff is
# not used behind the virtual IOMMU: Linux 6.1.192 resets every virtio device at shutdown
# (virtio_dev_shutdown), the virtio-iommu first, which removes every mapping as the spec says;
# the NVMe driver shuts its controller down after that, and the controller's admin completion
# then hits an unmapped IOVA (a DMAR fault, and 60 s of admin timeout).
stop_keel() {
  result "run=$1 info=$(timeout 60 keel-remote --api-socket "$sock" --json info 2>&1 | tr -d '\n ')"
  result "run=$1 counters=$(timeout 60 keel-remote --api-socket "$sock" --json counters 2>&1 | tr -d '\n ')"
  shutdown_at=$(cut -d' ' -f1 /proc/uptime)
  timeout 60 keel-remote --api-socket "$sock" shutdown >/dev/null 2>&1  # answers once the VM is gone
  down_at=$(cut -d' ' -f1 /proc/uptime)
  timeout 60 keel-remote --api-socket "$sock" shutdown-vmm >/dev/null 2>&1
  reap "$pid" 60
  status=$?
  # Uptimes (the clock of dmesg's DMAR lines): vm.shutdown sent, answered, keel gone.
  result "run=$1 keel_exit=$status started_at=$started_at shutdown_at=$shutdown_at down_at=$down_at" \
    "exited_at=$(cut -d' ' -f1 /proc/uptime)"
}

# Ends a QEMU run (SIGTERM) and reports what QEMU said of its VFIO mappings.
stop_qemu() {
  shutdown_at=$(cut -d' ' -f1 /proc/uptime)
  kill "$pid" 2>/dev/null
  reap "$pid" 60
  result "run=$1 qemu_exit=$? started_at=$started_at shutdown_at=$shutdown_at" \
    "map_failed=$(grep -c 'VFIO_MAP_DMA failed' "/tmp/$1.log")" \
    "first_error=$(grep -m 1 -i 'error\|fail' "/tmp/$1.log" | tr ' ' '+')"
}

# run NAME LIMIT OPTS [WAIT_S]: one boot of the guest (keel, or QEMU for OPTS qemu*) under
# dma_entry_limit LIMIT; waits up to WAIT_S (600) s for the guest's workload, then the host's
# side of the network check, the guest's lines, the DMAR faults of the run, a fresh container.
run() {
  name=$1 limit=$2 opts=$3 wait_s=${4:-600}
  out=/tmp/$name.out fifo=/tmp/$name.in
  rm -f "$fifo" "$out" "$sock"
  mkfifo "$fifo"
  echo "$limit" >"$limit_file"
  faults_before=$(dmar_count)
  started_at=$(cut -d' ' -f1 /proc/uptime)
  case $opts in
    qemu*) vmm=qemu ;;
    *) vmm=keel ;;
  esac
  "start_$vmm" "$name" "$opts"
  exec 3<>"$fifo"
  finished=no
  n=0  # until the guest is done, the VMM is gone, or WAIT_S
  while [ "$n" -lt $((wait_s * 5)) ] && kill -0 "$pid" 2>/dev/null; do
    grep -q "KEEL-GUEST drivers-finished" "$out" 2>/dev/null && { finished=yes; break; }
    sleep 0.2
    n=$((n + 1))
  done
  # From the VMM's start to the guest's "finished": boot, then the NVMe and NIC workloads.
  result "run=$name vmm=$vmm limit=$limit finished=$finished" \
    "workload_s=$(awk "BEGIN {print $(cut -d' ' -f1 /proc/uptime) - $started_at}")"
  ping=failed
  nsenter -t "$ns_pid" -n ping -c 3 -W 5 169.254.30.2 >/dev/null 2>&1 && ping=ok
  rm -f /tmp/guest.bin
  start=$(cut -d' ' -f1 /proc/uptime)
  nsenter -t "$ns_pid" -n timeout 120 wget -q -O /tmp/guest.bin http://169.254.30.2:8080/guest.bin
  result "run=$name host ping=$ping fetched_sha=$(sha256sum /tmp/guest.bin 2>/dev/null | cut -c1-64)" \
    "fetch_s=$(awk "BEGIN {print $(cut -d' ' -f1 /proc/uptime) - $start}")"
  grep -a "KEEL-GUEST \(nvme\|nic\) " "$out" | tr -d '\r' | while IFS= read -r line; do
    result "run=$name ${line#*KEEL-GUEST }"
  done
  "stop_$vmm" "$name"
  exec 3>&-
  result "run=$name dmar_faults=$(($(dmar_count) - faults_before))"
  for dev in "$nvme" "$nic"; do  # a fresh container, still under this run's limit
    result "run=$name probe=after bdf=$dev $(timeout 120 vfio_probe "$dev" 2>&1 | tr '\n' ' ')"
  done
  echo "$default_limit" >"$limit_file"
  echo "---- $name: $vmm log (last 30 lines)"
  tail -n 30 "/tmp/$name.log"
  echo "---- $name: guest console (last 40 lines)"
  tail -n 40 "$out" | tr -d '\r'
}

for spec in $(echo "$RUNS" | tr ';' ' '); do
  name=${spec%%:*} rest=${spec#*:}
  limit=${rest%%:*} rest=${rest#*:}
  opts=${rest%%:*} wait_s=
  [ "$opts" != "$rest" ] && wait_s=${rest#*:}
  run "$name" "$limit" "$opts" "$wait_s"
done
kill "$httpd_pid" "$ns_pid" 2>/dev/null
wait "$httpd_pid" "$ns_pid" 2>/dev/null
exit 0
