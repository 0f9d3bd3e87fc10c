#!/usr/bin/env bash
# One verify job of call1_verify.sh: `_verify_one.sh NUMBER CASE ENTRY TARGET LOCK` (settings in PTM_CALL1_*).
set -uo pipefail
num=$1 case=$2 entry=$3 target=$4 lock=$5
base="$PTM_CALL1_REPORTS/$case.$target"
now=$(date +%s)
if [ "$now" -ge "$PTM_CALL1_LAST" ]; then
  echo "not run: no time left in the call's budget (job $num)" > "$base.notrun"; exit 0
fi
left=$((PTM_CALL1_DEADLINE - now - 5))
[ "$left" -gt 300 ] && left=300
# single-process runs use the first visible GPU, so alternate which one that is (one GPU: always it)
if [ "${PTM_CALL1_GPUS:-2}" -lt 2 ]; then export CUDA_VISIBLE_DEVICES=0
elif [ $((num % 2)) = 0 ]; then export CUDA_VISIBLE_DEVICES=1,0; else export CUDA_VISIBLE_DEVICES=0,1; fi
cmd=(python3 -c 'import signal, sys
signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))  # so verify stops the runs it started
from migrator.verify.command import verify
verify(prog_name="pt-migrate verify")' "fixtures/$case/before/$entry" --target "$target" --accelerator "${PTM_CALL1_ACCEL:-cuda}"
     --devices "$PTM_CALL1_N" --steps "$PTM_CALL1_STEPS" --timeout "$PTM_CALL1_RUN_TIMEOUT" --checks "${PTM_CALL1_CHECKS:-abcdef}" --json
     $PTM_CALL1_ARGS)
if [ "$lock" != "-" ] && command -v flock >/dev/null; then cmd=(flock "/tmp/ptm-port-$lock.lock" "${cmd[@]}"); fi
start=$(date +%s)
echo "start $case $target (job $num, GPUs $CUDA_VISIBLE_DEVICES)"
timeout -k 10 "$left" "${cmd[@]}" > "$base.json" 2> "$base.log"
rc=$?
echo "$rc $(( $(date +%s) - start ))" > "$base.rc"
echo "done  $case $target: exit $rc in $(( $(date +%s) - start ))s"
