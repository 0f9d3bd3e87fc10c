#!/usr/bin/env bash
# A short device call (about 3 minutes of work) for when little device time is left: the fixtures and corpus
# entries that failed on 2 GPUs in the last full calls, re-run with the current engine, both at once.
#   - verify (benchmarks/gpu/call1_verify.sh) on CASES, 2 GPUs, both targets;
#   - the ecosystem runtime part (benchmarks/ecosystem/gpu.sh) on ENTRIES.
# Through the device tool, from the repository root:
#   run(kind="nvidia-h200-x2", carry=[".whl", "benchmarks/ecosystem/wheels"], timeout_s=420,
#       command='bash benchmarks/gpu/call3_targeted.sh "$OUT"')
# Writes OUT/verify/ (call1's files) and OUT/eco/ (gpu.json, gpu-report.md, gpu.log).
set -uo pipefail
OUT=${1:-${OUT:-gpu-call3-out}}
mkdir -p "$OUT/verify" "$OUT/eco"; OUT=$(cd "$OUT" && pwd)
CASES=${CASES:-"module_sentinel_ddp noise_in_helper input_helper_return input_numpy_teacher input_params_kw input_forward_cpu flag_module_level flag_availability mnist_style load_before_prepare setup_in_run_loop device_top_string"}
ENTRIES=${ENTRIES:-"pygcn_train graykode_seq2seq_attention minimalrl_ddpg aladdin_cyclegan deeplabv3plus morvan_gpu_cnn"}
CASES="$CASES" BUDGET=${VERIFY_BUDGET:-170} LAST_START=60 STEPS=${STEPS:-10} JOBS=10 \
  bash benchmarks/gpu/call1_verify.sh "$OUT/verify" > "$OUT/verify/stdout.log" 2>&1 &
V=$!
ENTRIES="$ENTRIES" BUDGET_S=${ECO_BUDGET:-150} JOBS=6 OUT="$OUT/eco" bash benchmarks/ecosystem/gpu.sh "$OUT/eco" \
  > "$OUT/eco/stdout.log" 2>&1 &
E=$!
wait $V; echo "verify exit $?"
wait $E; echo "ecosystem exit $?"
tail -30 "$OUT/verify/verify-summary.md" 2>/dev/null
tail -30 "$OUT/eco/gpu-report.md" 2>/dev/null
