#!/bin/sh
# Runs inside the emulated host: keel boots a guest whose init is hostile_test, once per seed
# (1, 2 and 3 by default, so that a failure replays; KEEL_SEEDS=a,b,... explores others, and
# KEEL_RUN_TIMEOUT bounds each run), and reports keel's exit status, the guest's line and
# any sanitizer report in keel's log. Reports facts only; tests/integration/testbed_hostile.sh
# checks them.
. /keel/testbed.sh

# KEEL_SEEDS (--env) replaces the seeds, e.g. to replay a failure; KEEL_VIRTIO_SEEDS those of
# the runs with the edu behind the virtual IOMMU, where the guest drives the virtio-iommu
# function instead (4 and 5 by default).
# KEEL_BLK_SEEDS those of the runs with a virtio-blk disk the guest drives (6 by default);
# KEEL_NET_SEEDS those with a virtio-net link and a virtio-vsock device (7 by default; keel in a
# network namespace of its own, so its TAP stays there).
# Every run has a virtio-rng too, so the PCI phase reaches a virtio function's config space.
seeds=${KEEL_SEEDS:-1,2,3}
virtio_seeds=${KEEL_VIRTIO_SEEDS:-4,5}
blk_seeds=${KEEL_BLK_SEEDS:-6}
net_seeds=${KEEL_NET_SEEDS:-7}
set -- $(edu_devices)
edu=$1
dd if=/dev/zero of=/tmp/hostile.img bs=1M count=4 2>/dev/null
for seed in $(echo "$seeds" | tr ',' ' ') $(echo "$virtio_seeds" | tr ',' ' ' | sed 's/[0-9]*/v&/g') \
  $(echo "$blk_seeds" | tr ',' ' ' | sed 's/[0-9]*/b&/g') \
  $(echo "$net_seeds" | tr ',' ' ' | sed 's/[0-9]*/n&/g'); do
  device= phases=pio,pci,mmio launcher=
  case $seed in
    v*)
      seed=${seed#v}
      phases=virtio
      device="--device path=/sys/bus/pci/devices/$edu,iommu=on"
      ;;
    b*)
      seed=${seed#b}
      phases=blk
      device="--disk path=/tmp/hostile.img,num_queues=2"
      ;;
    n*)
      seed=${seed#n}
      phases=net,vsock
      launcher="unshare -n"
      device="--net tap=keelhostile0 --vsock cid=3,socket=/tmp/hostile.vsock"
      ;;
  esac
  echo "---- hostile guest, seed $seed ($phases)"
  # shellcheck disable=SC2086 # $device and $launcher are separate words or nothing
  timeout "${KEEL_RUN_TIMEOUT:-300}" $launcher keel -v --kernel /keel/guest/vmlinuz --initramfs /keel/guest/initramfs.cpio.gz \
    --cpus boot=1 --memory size=256M --serial file=/tmp/hostile.console --rng $device \
    --cmdline "console=ttyS0 iomem=relaxed keel_seed=$seed keel_phases=$phases" </dev/null 2>/tmp/hostile.log
  status=$?
  # The guest's random COM1 writes put bytes of every kind on the console: keep the line only.
  line=$(grep -a -o 'KEEL-GUEST hostile seed=[[:print:]]*' /tmp/hostile.console | head -n 1)
  sanitizer=$(grep -c -a -E 'AddressSanitizer|runtime error|LeakSanitizer' /tmp/hostile.log)
  phase=$(grep -a -o 'KEEL-GUEST hostile-phase [a-z-]*' /tmp/hostile.console | tail -n 1)
  result "run=$seed phases=$phases keel_exit=$status sanitizer_reports=$sanitizer powered_off=$(grep -c -a 'KEEL-GUEST powering-off' /tmp/hostile.console) last_phase=${phase##* } ${line#KEEL-GUEST }"
  echo "---- keel log (last 40 lines)"
  tail -n 40 /tmp/hostile.log
  echo "---- guest console (last 20 lines, printable characters only)"
  tail -n 20 /tmp/hostile.console | tr -cd '[:print:]\n'

done
exit 0
