#!/usr/bin/env bash
# ctest testbed.kata: inside the emulated host (one edu), the sequence of requests Kata
# Containers' cloud-hypervisor driver sends, in its order and with its bodies
# (tests/integration/scenarios/kata.sh), each step doing real work in the guest:
#  - vmm.ping answers; vm.create takes Kata's VmConfig as it is (platform with two PCI segments,
#    cpus.topology, max_vcpus above boot_vcpus, memory.shared with hotplug_size by ACPI, rng,
#    vsock, console Off, the fs share on segment 1); vm.info says Created;
#  - vm.add-net with a TAP fd passed over SCM_RIGHTS (the TAP opened as Kata opens it, in keel's
#    network namespace); vm.boot; vm.info says Running;
#  - the guest's agent (a stand-in on vsock port 1024) answers through keel's hybrid vsock socket;
#  - the guest fetches 2 MiB from the host over the link, checksums equal;
#  - the guest mounts the share (virtio-fs, tag kataShared, Debian's virtiofsd), reads the host's
#    file equal and writes one the host then reads;
#  - vm.add-device hot-plugs an edu (200 with its guest BDF): the guest's driver binds it and the
#    DMA round trip and its interrupt work; vm.info lists it, mapped, consistent;
#  - vm.resize desired_vcpus 2: the guest onlines the new vCPU (online=0-1);
#  - vm.resize desired_ram 768 MiB with Kata's ACPI memory hot-plug: two 128 MiB DIMMs appear in
#    the guest (acpi_memhotplug), its agent onlines them and MemTotal grows by 256 MiB;
#    vm.info's memory_actual_size follows; the edu's eager container maps them (3 entries,
#    consistent) and its DMA runs between pages of the new DIMMs; asking for less changes
#    nothing (DIMMs are not taken back) and memory.size says what the guest has, as
#    cloud-hypervisor does;
#  - vm.reboot: the share's connection is kept (QEMU 7.2's virtiofsd serves one front end), the
#    guest mounts it again and reads what it wrote; it boots with the memory it had;
#  - vmm.shutdown ends keel with 0, and virtiofsd with it.
#
# usage: testbed_kata.sh RUN SCENARIO GUEST_INIT KEEL KEEL_REMOTE VSOCK_PROBE EDU_TEST
set -euo pipefail
(($# == 7)) || {
  echo "usage: $0 RUN SCENARIO GUEST_INIT KEEL KEEL_REMOTE VSOCK_PROBE EDU_TEST" >&2
  exit 2
}
run=$1 scenario=$2 guest_init=$3 keel=$4 remote=$5 probe=$6 edu_test=$7
testbed=$(dirname -- "$run")

# shellcheck source=testbed_lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/testbed_lib.sh"
need_tools jq

work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT
kdir=$("$testbed/host-kernel.sh")
files=(--file "$kdir/guest-modules.load:/lib/modules/guest-modules.load"
  --file "$kdir/modules/uio.ko:/lib/modules/uio.ko"
  --file "$kdir/modules/uio_pci_generic.ko:/lib/modules/uio_pci_generic.ko"
  --file "$edu_test:/bin/edu_test" --file "$probe:/bin/vsock_probe")
while read -r ko _; do
  files+=(--file "$kdir/modules/$ko:/lib/modules/$ko")
done <"$kdir/guest-modules.load"
"$testbed/build-guest-initramfs.sh" --init "$guest_init" "${files[@]}" -o "$work/initramfs.cpio.gz"

status=0
markers=$("$run" --timeout 900 --memory 2G --bin "$keel" --bin "$remote" --bin "$probe" \
  --bin /usr/lib/qemu/virtiofsd \
  --guest-kernel "$kdir/vmlinuz" --guest-initramfs "$work/initramfs.cpio.gz" "$scenario") || status=$?
printf '%s\n' "$markers"
expect "the testbed run exits 0 (got $status)" test "$status" -eq 0

line() { grep "^KEEL-TESTBED result $1" <<<"$markers" | head -n 1 || true; }
agent_out() { sed -n "s/^KEEL-TESTBED result agent=$1 out=//p" <<<"$markers" | head -n 1 | sed 's/ *$//'; }

expect "vmm.ping answers with a version ($(out_of ping))" test -n "$(json ping .version)"
expect "vm.create takes Kata's VmConfig ($(out_of create))" test "$(exit_of create)" = 0
expect "vm.info: Created ($(json info-created .state))" test "$(json info-created .state)" = Created
expect "vm.info: max_vcpus 4 of Kata's topology" test "$(json info-created .config.cpus.max_vcpus)" = 4
expect "vm.info: the share, its tag" test "$(json info-created '.config.fs[0].tag')" = kataShared
expect "vm.add-net with the TAP fd ($(out_of add-net))" test "$(exit_of add-net)" = 0
expect "vm.boot ($(out_of boot))" test "$(exit_of boot)" = 0
expect "the guest booted and its agent listens" test "$(field "$(line "guest ")" booted)" = yes
expect "vm.info: Running" test "$(json info-running .state)" = Running
expect "vm.info: the share is on PCI segment 1 ($(json info-running '.device_tree._fs0.pci_bdf'))" \
  grep -q '^0001:00:[0-9a-f][0-9a-f].0$' <<<"$(json info-running '.device_tree._fs0.pci_bdf')"
expect "vm.info: the link has a guest address" \
  grep -q '^0000:00:[0-9a-f][0-9a-f].0$' <<<"$(json info-running '.device_tree._net0.pci_bdf')"
expect "the agent answers over vsock (got '$(agent_out ping)')" test "$(agent_out ping)" = pong
expect "the guest sees PCI segment 1 with the share ($(agent_out pci))" grep -q '0001:00:' <<<"$(agent_out pci)"
www=$(field "$(line "www ")" sha)
expect "the guest fetched 2 MiB over the link, equal ($(agent_out net) vs $www)" \
  test -n "$www" -a "$(agent_out net)" = "$www"
share=$(field "$(line "share ")" sha)
expect "the guest read the host's file through virtio-fs, equal ($(agent_out fs) vs $share)" \
  test -n "$share" -a "$(agent_out fs)" = "$share"
expect "the host reads the file the guest wrote ($(field "$(line "fs ")" host_sees))" \
  test "$(field "$(line "fs ")" host_sees)" = from-the-guest
bdf=$(json add-device .bdf)
expect "vm.add-device hot-plugs the edu with its guest BDF ($(out_of add-device))" \
  grep -q '^0000:00:[0-9a-f][0-9a-f].0$' <<<"$bdf"
expect "the guest's DMA round trip and interrupt on it ($(agent_out edu))" \
  grep -q "bdf=$bdf id=1234:11e8 .*dma=ok.* irq=ok" <<<"$(agent_out edu)"
expect "vm.info: its container mapped, consistent ($(json info-device '.dma[0].reason'))" \
  test "$(json info-device '.dma[0].consistent'):$(json info-device '.dma[0].mode')" = true:eager
expect "vm.resize to 2 vCPUs ($(out_of resize))" test "$(exit_of resize)" = 0
expect "the guest onlined the new vCPU (online=$(agent_out cpus))" test "$(agent_out cpus)" = 0-1
before=$(agent_out mem-before)
after=$(agent_out mem)
expect "vm.resize to 768 MiB by ACPI ($(out_of resize-mem))" test "$(exit_of resize-mem)" = 0
expect "the guest's MemTotal grew by 256 MiB (${before:-?} -> ${after:-?} kB)" \
  test -n "$before" -a -n "$after" -a "$((${after:-0} - ${before:-0}))" -eq 262144
expect "vm.info: memory_actual_size 768 MiB ($(json info-mem .memory_actual_size))" \
  test "$(json info-mem .memory_actual_size)" = 805306368
expect "vm.info: the edu's container maps the DIMMs, consistent ($(json info-mem '.dma[0].entries_used') entries)" \
  test "$(json info-mem '.dma[0].consistent'):$(json info-mem '.dma[0].entries_used')" = true:3
expect "the edu's DMA between pages of the new DIMMs ($(agent_out edu-again))" \
  grep -q "dma=ok_src=0x1[0-9a-f]\{8\}_dst=0x1[0-9a-f]\{8\} irq=ok" <<<"$(agent_out edu-again)"
expect "asking for less changes nothing, as cloud-hypervisor ($(out_of shrink-mem))" \
  test "$(exit_of shrink-mem):$(json info-shrunk .memory_actual_size)" = 0:805306368
expect "vm.info: memory.size is what the guest has now, as cloud-hypervisor ($(json info-shrunk .config.memory.size))" \
  test "$(json info-shrunk .config.memory.size)" = 805306368
expect "vm.reboot ($(out_of reboot))" test "$(exit_of reboot):$(field "$(line "reboot ")" rebooted)" = 0:yes
expect "after the reboot the guest mounts the share again, same back end (got '$(agent_out fs-again)')" \
  test "$(agent_out fs-again)" = from-the-guest
expect "after the reboot the guest has the memory it had ($(json info-rebooted .memory_actual_size))" \
  test "$(json info-rebooted .memory_actual_size)" = 805306368
expect "vmm.shutdown ($(out_of shutdown-vmm))" test "$(exit_of shutdown-vmm)" = 0
expect "keel ended with 0 ($(field "$(line "keel_exit=")" keel_exit))" \
  test "$(field "$(line "keel_exit=")" keel_exit)" = 0
expect "virtiofsd ended with keel ($(field "$(line "virtiofsd_exit=")" virtiofsd_exit))" \
  test "$(field "$(line "virtiofsd_exit=")" virtiofsd_exit)" = 0

finish testbed.kata
