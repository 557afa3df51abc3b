#!/bin/sh
# Runs inside the emulated host: keel boots a guest whose init is hostile_test, once per seed
# (1, 2 and 3 by default, so that a failure replays; KEEL_SEEDS=a,b,... explores others, and
# KEEL_RUN_TIMEOUT bounds each run), and reports keel's exit status, the guest's line and
# any sanitizer report in keel's log. Reports facts only; tests/integration/testbed_hostile.sh
# checks them.
. /keel/testbed.sh

# KEEL_SEEDS (--env) replaces the seeds, e.g. to replay a failure.
seeds=${KEEL_SEEDS:-1,2,3}
for seed in $(echo "$seeds" | tr ',' ' '); do
  echo "---- hostile guest, seed $seed"
  timeout "${KEEL_RUN_TIMEOUT:-300}" keel -v --kernel /keel/guest/vmlinuz --initramfs /keel/guest/initramfs.cpio.gz \
    --cpus boot=1 --memory size=256M --serial file=/tmp/hostile.console \
    --cmdline "console=ttyS0 iomem=relaxed keel_seed=$seed" </dev/null 2>/tmp/hostile.log
  status=$?
  # The guest's random COM1 writes put bytes of every kind on the console: keep the line only.
  line=$(grep -a -o 'KEEL-GUEST hostile seed=[[:print:]]*' /tmp/hostile.console | head -n 1)
  sanitizer=$(grep -c -a -E 'AddressSanitizer|runtime error|LeakSanitizer' /tmp/hostile.log)
  phase=$(grep -a -o 'KEEL-GUEST hostile-phase [a-z-]*' /tmp/hostile.console | tail -n 1)
  result "run=$seed keel_exit=$status sanitizer_reports=$sanitizer powered_off=$(grep -c -a 'KEEL-GUEST powering-off' /tmp/hostile.console) last_phase=${phase##* } ${line#KEEL-GUEST }"
  echo "---- keel log (last 40 lines)"
  tail -n 40 /tmp/hostile.log
  echo "---- guest console (last 20 lines, printable characters only)"
  tail -n 20 /tmp/hostile.console | tr -cd '[:print:]\n'

done
exit 0
