#!/bin/sh
# Runs inside the emulated host: replays, in order and with its bodies, what Kata Containers'
# cloud-hypervisor driver (src/runtime/virtcontainers/clh.go) sends to start a sandbox and use
# it: vmm.ping until keel answers, vm.create with Kata's VmConfig, vm.info, vm.add-net with a
# TAP fd (SCM_RIGHTS), vm.boot, vm.info; then what the sandbox does: its agent over vsock, the
# network, the shared directory over virtio-fs (virtiofsd), a device hot-plugged
# (vm.add-device, DMA on it), vCPUs added (vm.resize), and vmm.shutdown. Reports facts only;
# tests/integration/testbed_kata.sh checks them.
. /keel/testbed.sh

sock=/tmp/clh.sock
hvsock=/tmp/kata.hvsock
fs_sock=/tmp/virtiofsd.sock
console=/tmp/guest.console
dev=$(edu_devices | head -n 1)

# virtiofsd shares the sandbox's directory (Kata starts it before the VMM).
mkdir -p /tmp/shared /tmp/www
dd if=/dev/urandom of=/tmp/shared/host.bin bs=1M count=1 2>/dev/null
result "share sha=$(sha256sum /tmp/shared/host.bin | cut -c1-64)"
virtiofsd --socket-path="$fs_sock" -o source=/tmp/shared -o cache=none -o sandbox=chroot \
  >/tmp/virtiofsd.log 2>&1 &
vfsd=$!

# keel in a network namespace of its own, as Kata runs the VMM in the pod's.
unshare -n keel --api-socket "path=$sock" </dev/null >/tmp/keel.out 2>/tmp/keel.log &
pid=$!
n=0
until timeout 5 keel-remote --api-socket "$sock" ping >/dev/null 2>&1 || [ "$n" -ge 100 ]; do
  sleep 0.1
  n=$((n + 1))
done
api ping ping

# Kata's VmConfig (clh.go; the unit test api/vm_config_json_test.cpp has it whole), with this
# testbed's kernel, initramfs and sizes; serial is a file here (Kata: Off) so that a failure
# can be read.
cat >/tmp/kata.json <<JSON
{
  "payload": {"kernel": "/keel/guest/vmlinuz", "initramfs": "/keel/guest/initramfs.cpio.gz",
              "cmdline": "console=ttyS0 panic=1 no_timer_check noreplace-smp"},
  "platform": {"num_pci_segments": 2, "tdx": false, "sev_snp": false},
  "cpus": {"boot_vcpus": 1, "max_vcpus": 4, "kvm_hyperv": false, "nested": true,
           "topology": {"threads_per_core": 1, "cores_per_die": 4, "dies_per_package": 1,
                        "packages": 1}},
  "memory": {"size": 536870912, "shared": true, "hugepages": false, "mergeable": false,
             "prefault": false, "thp": true, "hotplug_method": "Acpi",
             "hotplug_size": 1073741824},
  "rng": {"src": "/dev/urandom", "iommu": false},
  "serial": {"mode": "File", "file": "$console", "iommu": false},
  "console": {"mode": "Off", "iommu": false},
  "vsock": {"cid": 3, "socket": "$hvsock", "iommu": false},
  "fs": [{"tag": "kataShared", "socket": "$fs_sock", "num_queues": 1, "queue_size": 1024,
          "pci_segment": 1}],
  "iommu": false, "watchdog": false, "pvpanic": false, "landlock_enable": false
}
JSON
api create create /tmp/kata.json
api info-created info

# vm.add-net: Kata opens the TAP in the sandbox's namespace and passes its fd with the request.
nsenter -t "$pid" -n ip link set lo up
out=$(nsenter -t "$pid" -n vsock_probe tap-exec tap0_kata 5 \
  timeout 60 keel-remote --api-socket "$sock" --json add-net "fd=5,mac=02:00:ca:fe:00:01" 2>&1)
result "api=add-net exit=$? out=$(echo "$out" | tr '\n' ' ')"
nsenter -t "$pid" -n ip addr add 169.254.30.1/16 dev tap0_kata
nsenter -t "$pid" -n ip link set tap0_kata up
dd if=/dev/urandom of=/tmp/www/host.bin bs=1M count=2 2>/dev/null
result "www sha=$(sha256sum /tmp/www/host.bin | cut -c1-64)"
nsenter -t "$pid" -n httpd -f -p 8080 -h /tmp/www &
httpd=$!

api boot boot
booted=no
wait_for "$console" "KEEL-GUEST agent-ready" 1 180 && booted=yes
result "guest booted=$booted $(grep -m1 -a 'KEEL-GUEST agent-ready' "$console" | sed 's/^.*agent-ready //')"
api info-running info

# agent STEP COMMAND: runs COMMAND in the guest through the agent stand-in (keel's hybrid vsock,
# CONNECT 1024, as Kata's runtime reaches its agent); reports its output on one line.
agent() {
  result "agent=$1 out=$(timeout 120 vsock_probe host-cmd "$hvsock" 1024 "$2" 2>&1 | tr '\n' ' ')"
}
agent ping "echo pong"
agent pci "ls /sys/bus/pci/devices | tr '\n' ' '"
agent net "ip link set eth0 up && ip addr add 169.254.30.2/16 dev eth0 && wget -q -O - http://169.254.30.1:8080/host.bin | sha256sum | cut -c1-64"
shared=/run/kata-containers/shared/containers
agent fs "mkdir -p $shared && mount -t virtiofs kataShared $shared && sha256sum $shared/host.bin | cut -c1-64 && echo from-the-guest >$shared/guest.txt && sync"
result "fs host_sees=$(cat /tmp/shared/guest.txt 2>/dev/null || echo none)"

# A device hot-plugged (Kata: vm.add-device {path, iommu}); the guest's driver finds it and DMA
# runs on it.
api add-device add-device "path=/sys/bus/pci/devices/$dev"
agent edu "i=0; while [ \$(ls /sys/bus/pci/drivers/uio_pci_generic | grep -c 0000:) = 0 ] && [ \$i -lt 300 ]; do sleep 0.1; i=\$((i+1)); done; /bin/edu_test"
api info-device info

# vCPUs added (Kata: vm.resize {desired_vcpus}); Kata's agent onlines them.
api resize resize --cpus 2
agent cpus "i=0; while [ ! -e /sys/devices/system/cpu/cpu1/online ] && [ \$i -lt 300 ]; do sleep 0.1; i=\$((i+1)); done; echo 1 >/sys/devices/system/cpu/cpu1/online; cat /sys/devices/system/cpu/online"

# Memory added (Kata: vm.resize {desired_ram}, ACPI memory hot-plug); Kata's agent onlines the
# new memory blocks.
agent mem-before "sed -n 's/^MemTotal: *\\([0-9]*\\).*/\\1/p' /proc/meminfo"
api resize-mem resize --memory 768M
agent mem "i=0; while [ \$(cat /sys/devices/system/memory/memory*/state | grep -c offline) -lt 2 ] && [ \$i -lt 300 ]; do sleep 0.1; i=\$((i+1)); done; for m in /sys/devices/system/memory/memory*; do [ \$(cat \$m/state) = offline ] && echo online >\$m/state; done; sed -n 's/^MemTotal: *\\([0-9]*\\).*/\\1/p' /proc/meminfo"
api info-mem info
# DMA between two pages of the new DIMMs (the hot-pluggable region starts at 4 GiB): the edu's
# container maps them.
agent edu-again "/bin/edu_test --above 0x100000000"
api shrink-mem resize --memory 640M
api info-shrunk info

# A reboot: the share's connection is kept (QEMU 7.2's virtiofsd serves one front end and would
# end with it), the guest mounts the share again; it boots with the memory it had (as
# cloud-hypervisor: memory.size followed the DIMMs).
api reboot reboot
rebooted=no
wait_for "$console" "KEEL-GUEST agent-ready" 2 180 && rebooted=yes
result "reboot rebooted=$rebooted"
agent fs-again "mkdir -p $shared && mount -t virtiofs kataShared $shared && cat $shared/guest.txt"
api info-rebooted info

# The end, as Kata stops a sandbox: vmm.shutdown (then SIGKILL after 3 s, which it should not need).
api shutdown-vmm shutdown-vmm
reap "$pid" 30
result "keel_exit=$?"
reap "$vfsd" 10
result "virtiofsd_exit=$?"
kill "$httpd" 2>/dev/null
wait "$httpd" 2>/dev/null
echo "---- guest console (last 30 lines)"
tail -n 30 "$console"
echo "---- keel log (last 20 lines)"
tail -n 20 /tmp/keel.log
echo "---- virtiofsd log (last 10 lines)"
tail -n 10 /tmp/virtiofsd.log
echo "---- done"
exit 0
