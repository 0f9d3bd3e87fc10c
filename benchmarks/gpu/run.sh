#!/usr/bin/env bash
# GPU benchmark of migrated scripts against hand-written ones. Run on the GPU machine (torch, lightning,
# accelerate; no pt-migrate needed: benchmarks/gpu/prepare.sh made the migrated files beforehand).
#
#   benchmarks/gpu/run.sh [N_GPUS] [STEPS] [WARMUP] [ROUNDS]      defaults: 2 100 20 3
#   MODELS="gpt cnn" PYTHON=python benchmarks/gpu/run.sh 8
#   benchmarks/gpu/run.sh --smoke     every variant, tiny sizes, 2 steps, on CPU when there is no GPU
#
# Per model, for ROUNDS rounds, alternating the variants within each round (so drift hits all alike):
#   orig      plain script, 1 GPU, fp32                     python X.py
#   mig_fab   pt-migrate --target fabric, N GPUs            python X_migrated_fabric[_<N>gpu].py
#   hand_fab  hand-written Fabric, N GPUs                   python X_fabric.py --devices N
#   mig_acc   pt-migrate --target accelerate, N GPUs        torchrun --nproc_per_node N X_migrated_accelerate.py
#   hand_acc  hand-written Accelerate, N GPUs               torchrun --nproc_per_node N X_accelerate.py
#   ddp       raw DistributedDataParallel, N GPUs           torchrun --nproc_per_node N X_ddp.py
#   and the same five N-GPU variants in bf16 (mixed precision);
#   with TF32=1 also mig_fab_tf32 / mig_acc_tf32: the migrated scripts made with --matmul-precision high.
# Each run does WARMUP untimed steps, then STEPS timed ones, and prints `RESULT samples_per_s=...` (all processes).
# The table (median over rounds) and the ratios come from report.py; raw results go to $OUT_DIR/results.tsv.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MIG="$HERE/migrated"  # made by prepare.sh
PYTHON="${PYTHON:-python}"
export NCCL_NVLS_ENABLE=0
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"
export PYTHONUNBUFFERED=1

SMOKE=0
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
N="${1:-2}"; STEPS="${2:-100}"; WARMUP="${3:-20}"; ROUNDS="${4:-3}"
MODELS="${MODELS:-gpt cnn}"
OUT_DIR="${OUT_DIR:-${OUT:-$HERE/results}}"
mkdir -p "$OUT_DIR"
RESULTS="$OUT_DIR/results.tsv"
LOGS="$OUT_DIR/logs"
mkdir -p "$LOGS"
: > "$RESULTS"
TORCHRUN=("$PYTHON" -m torch.distributed.run --standalone)

if [ "$SMOKE" = 1 ]; then
  N=2; ROUNDS=1
  COMMON=(--smoke)
  has_cuda="$("$PYTHON" -c 'import torch; print(int(torch.cuda.is_available()))')"
else
  COMMON=(--steps "$STEPS" --warmup "$WARMUP")
  has_cuda=1
  gpus="$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')"
  if [ "$gpus" -lt "$N" ]; then echo "run.sh: $N GPUs asked for, $gpus present" >&2; exit 2; fi
fi

fabric_file() {  # fabric_file <model> <bf16: "" or "_bf16">: the migrated Fabric script for N devices
  local dir="$MIG" suffix=""
  if [ "$SMOKE" = 1 ] && [ "$has_cuda" = 0 ]; then
    [ -z "$2" ] && { echo "$MIG/smoke/${1}_migrated_fabric.py"; return; }
    echo ""; return  # no bf16 CPU smoke variant of the migrated Fabric script
  fi
  [ "$N" = 2 ] || suffix="_${N}gpu"
  echo "$dir/${1}_migrated_fabric${2}${suffix}.py"
}

acc_file() {
  if [ "$SMOKE" = 1 ] && [ "$has_cuda" = 0 ]; then
    [ -z "$2" ] && { echo "$MIG/smoke/${1}_migrated_accelerate.py"; return; }
  fi
  echo "$MIG/${1}_migrated_accelerate${2}.py"
}

for m in $MODELS; do
  for f in "$(fabric_file "$m" "")" "$(acc_file "$m" "")"; do
    if [ ! -f "$f" ]; then
      echo "run.sh: $f is missing: run benchmarks/gpu/prepare.sh $N on a machine with pt-migrate first" >&2
      exit 2
    fi
  done
done

run_one() {  # run_one <round> <model> <variant> <gpus> <command...>
  local round="$1" model="$2" variant="$3" gpus="$4"
  shift 4
  local log="$LOGS/${model}_${variant}_r${round}.log"
  local visible
  visible="$(seq -s, 0 $((gpus - 1)))"
  if [ "$has_cuda" = 1 ]; then
    CUDA_VISIBLE_DEVICES="$visible" "$@" > "$log" 2>&1
  else
    "$@" > "$log" 2>&1
  fi
  local rc=$?
  local sps
  sps="$(grep -o 'RESULT samples_per_s=[0-9.eE+-]*' "$log" | tail -1 | cut -d= -f2)"
  if [ $rc -ne 0 ] || [ -z "$sps" ]; then
    echo "  FAILED $model $variant (exit $rc), log: $log" >&2
    tail -5 "$log" >&2
    sps="nan"
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$model" "$variant" "$gpus" "$round" "$sps" >> "$RESULTS"
  printf '  %-4s %-14s %d GPU  round %d  %s samples/s\n' "$model" "$variant" "$gpus" "$round" "$sps"
}

echo "GPU benchmark: $N GPUs, steps $STEPS, warm-up $WARMUP, $ROUNDS rounds, models: $MODELS ($(date -Is))"
"$PYTHON" -c 'import torch, lightning, accelerate; print("torch", torch.__version__, "lightning", lightning.__version__,
"accelerate", accelerate.__version__, "GPU", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")'
for round in $(seq 1 "$ROUNDS"); do
  for m in $MODELS; do
    run_one "$round" "$m" orig 1 "$PYTHON" "$HERE/$m.py" "${COMMON[@]}"
    run_one "$round" "$m" mig_fab "$N" "$PYTHON" "$(fabric_file "$m" "")" "${COMMON[@]}"
    run_one "$round" "$m" hand_fab "$N" "$PYTHON" "$HERE/${m}_fabric.py" --devices "$N" --precision 32-true "${COMMON[@]}"
    run_one "$round" "$m" mig_acc "$N" "${TORCHRUN[@]}" --nproc_per_node "$N" "$(acc_file "$m" "")" "${COMMON[@]}"
    run_one "$round" "$m" hand_acc "$N" "${TORCHRUN[@]}" --nproc_per_node "$N" "$HERE/${m}_accelerate.py" --precision no "${COMMON[@]}"
    run_one "$round" "$m" ddp "$N" "${TORCHRUN[@]}" --nproc_per_node "$N" "$HERE/${m}_ddp.py" --precision fp32 "${COMMON[@]}"
    fb="$(fabric_file "$m" _bf16)"
    if [ -n "$fb" ]; then
      run_one "$round" "$m" mig_fab_bf16 "$N" "$PYTHON" "$fb" "${COMMON[@]}"
    fi
    run_one "$round" "$m" hand_fab_bf16 "$N" "$PYTHON" "$HERE/${m}_fabric.py" --devices "$N" --precision bf16-mixed "${COMMON[@]}"
    run_one "$round" "$m" mig_acc_bf16 "$N" "${TORCHRUN[@]}" --nproc_per_node "$N" "$MIG/${m}_migrated_accelerate_bf16.py" "${COMMON[@]}"
    run_one "$round" "$m" hand_acc_bf16 "$N" "${TORCHRUN[@]}" --nproc_per_node "$N" "$HERE/${m}_accelerate.py" --precision bf16 "${COMMON[@]}"
    run_one "$round" "$m" ddp_bf16 "$N" "${TORCHRUN[@]}" --nproc_per_node "$N" "$HERE/${m}_ddp.py" --precision bf16 "${COMMON[@]}"
    if [ "${TF32:-0}" = 1 ] && [ "$SMOKE" = 0 ]; then
      suffix=""; [ "$N" = 2 ] || suffix="_${N}gpu"
      run_one "$round" "$m" mig_fab_tf32 "$N" "$PYTHON" "$MIG/${m}_migrated_fabric_tf32${suffix}.py" "${COMMON[@]}"
      run_one "$round" "$m" mig_acc_tf32 "$N" "${TORCHRUN[@]}" --nproc_per_node "$N" "$MIG/${m}_migrated_accelerate_tf32.py" "${COMMON[@]}"
    fi
  done
done
"$PYTHON" "$HERE/report.py" "$RESULTS" "$N"
