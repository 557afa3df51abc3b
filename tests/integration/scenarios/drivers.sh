#!/bin/sh
# Runs inside the emulated host (run --nvme IMAGE --nic): keel boots the guest kernel built from
# linux-source-6.1 with the NVMe controller and the e1000e NIC passed through; the guest's own
# nvme and e1000e drivers run them (tests/integration/guest/drivers-init). The NIC's link is an
# emulated hub shared with the emulated host's virtio-net NIC, moved into a network namespace of
# its own (169.254.30.1/16); nothing leaves the emulated host.
# One boot per mapping: RUNS lists NAME:LIMIT:DEVICE_OPTIONS, separated by ";", e.g.
#   eager:65535:,dma_mapping=eager;lazy:65535:,iommu=on,dma_mapping=lazy
# LIMIT is written to vfio_iommu_type1's dma_entry_limit before keel opens its containers.
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

run() {
  name=$1 limit=$2 opts=$3
  out=/tmp/$name.out fifo=/tmp/$name.in
  rm -f "$fifo" "$out" "$sock"
  mkfifo "$fifo"
  echo "$limit" >"$limit_file"
  started_at=$(cut -d' ' -f1 /proc/uptime)
  keel -v --kernel /keel/guest/vmlinuz --initramfs /keel/guest/initramfs.cpio.gz \
    --memory size=256M --serial tty --api-socket "path=$sock" --cmdline "console=ttyS0" \
    --device "path=/sys/bus/pci/devices/$nvme,id=nvme0$opts" \
    --device "path=/sys/bus/pci/devices/$nic,id=nic0$opts" <"$fifo" >"$out" 2>"/tmp/$name.log" &
  pid=$!
  exec 3>"$fifo"
  finished=no
  n=0  # until the guest is done, keel is gone, or 600 s
  while [ "$n" -lt 3000 ] && kill -0 "$pid" 2>/dev/null; do
    grep -q "KEEL-GUEST drivers-finished" "$out" 2>/dev/null && { finished=yes; break; }
    sleep 0.2
    n=$((n + 1))
  done
  result "run=$name limit=$limit finished=$finished"
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
  result "run=$name info=$(timeout 60 keel-remote --api-socket "$sock" --json info 2>&1 | tr -d '\n ')"
  result "run=$name counters=$(timeout 60 keel-remote --api-socket "$sock" --json counters 2>&1 | tr -d '\n ')"
  # Ended as an orchestrator ends it (vm.shutdown, then vmm.shutdown): keel closes the devices
  # (vfio-pci stops their DMA) before it unmaps guest memory. The guest's own poweroff is not
  # used behind the virtual IOMMU: Linux 6.1.192 resets every virtio device at shutdown
  # (virtio_dev_shutdown), the virtio-iommu first, which removes every mapping as the spec
  # says; the NVMe driver shuts its controller down after that, and the controller's admin
  # completion then hits an unmapped IOVA (a DMAR fault, and 60 s of admin timeout).
  shutdown_at=$(cut -d' ' -f1 /proc/uptime)
  timeout 60 keel-remote --api-socket "$sock" shutdown >/dev/null 2>&1  # answers once the VM is gone
  down_at=$(cut -d' ' -f1 /proc/uptime)
  timeout 60 keel-remote --api-socket "$sock" shutdown-vmm >/dev/null 2>&1
  reap "$pid" 60
  status=$?
  exec 3>&-
  # Uptimes (the clock of dmesg's DMAR lines): vm.shutdown sent, answered, keel gone.
  result "run=$name keel_exit=$status started_at=$started_at shutdown_at=$shutdown_at down_at=$down_at" \
    "exited_at=$(cut -d' ' -f1 /proc/uptime)"
  for dev in "$nvme" "$nic"; do  # a fresh container, still under this run's limit
    result "run=$name probe=after bdf=$dev $(timeout 120 vfio_probe "$dev" 2>&1 | tr '\n' ' ')"
  done
  echo "$default_limit" >"$limit_file"
  echo "---- $name: keel log (last 30 lines)"
  tail -n 30 "/tmp/$name.log"
  echo "---- $name: guest console (last 40 lines)"
  tail -n 40 "$out" | tr -d '\r'
}

for spec in $(echo "$RUNS" | tr ';' ' '); do
  name=${spec%%:*} rest=${spec#*:}
  run "$name" "${rest%%:*}" "${rest#*:}"
done
kill "$httpd_pid" "$ns_pid" 2>/dev/null
wait "$httpd_pid" "$ns_pid" 2>/dev/null
exit 0
