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
#   and the ddpopt variants, on request (VARIANTS): mig_fab_ddpopt, mig_acc_ddpopt, mig_fab_bf16_ddpopt,
#   mig_acc_bf16_ddpopt: the migrated scripts with DDP settings passed through the framework (ddp_kwargs_variant.py).
# Each run does WARMUP untimed steps, then STEPS timed ones, and prints `RESULT samples_per_s=...` (all processes).
# The table (median over rounds) and the ratios come from report.py; raw results go to $OUT_DIR/results.tsv
# (model, variant, GPUs, round, samples/s, seconds of the whole run with its start-up).
# Environment: VARIANTS="orig mig_fab ..." (the order of round 1; each later round starts further along the list),
# PROFILE="mig_fab ddp ..." (these variants run under profile_wrap.py in round 1: torch.profiler over PROFILE_STEPS=5
# steps from step PROFILE_AT=WARMUP/4 of the warm-up, summary in $OUT_DIR/profiles/), DEADLINE=<epoch seconds> (a run
# that would end after it is not started, and recorded as nan/deadline).
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

LAST_WALL=0
run_one() {  # run_one <round> <model> <variant> <gpus> <command...>
  local round="$1" model="$2" variant="$3" gpus="$4"
  shift 4
  local log="$LOGS/${model}_${variant}_r${round}.log"
  if [ -n "${DEADLINE:-}" ] && [ $(( $(date +%s) + LAST_WALL * 13 / 10 )) -gt "$DEADLINE" ]; then
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$model" "$variant" "$gpus" "$round" "nan" "deadline" >> "$RESULTS"
    echo "  SKIPPED $model $variant round $round: the call's deadline" >&2
    return
  fi
  local t0
  t0=$(date +%s.%N)
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
  local wall
  wall=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')" 2>/dev/null || echo 0)
  LAST_WALL=${wall%.*}
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$model" "$variant" "$gpus" "$round" "$sps" "$wall" >> "$RESULTS"
  printf '  %-4s %-20s %d GPU  round %d  %10s samples/s  (%ss with start-up)\n' "$model" "$variant" "$gpus" "$round" "$sps" "$wall"
}

# variant_cmd <model> <variant>: sets GPUS and CMD (the command line) for one variant; returns 1 if unknown/absent
variant_cmd() {
  local m="$1" v="$2" base="${2%_ddpopt}" opt="" prec=""
  [ "$v" != "$base" ] && opt="_ddpopt"
  case "$base" in *_bf16) prec=_bf16 ;; esac
  GPUS="$N"
  case "$base" in
    orig) GPUS=1; CMD=("$PYTHON" "${PW[@]}" "$HERE/$m.py") ;;
    mig_fab|mig_fab_bf16|mig_fab_tf32)
      local f
      if [ "$base" = mig_fab_tf32 ]; then f="$MIG/${m}_migrated_fabric_tf32$([ "$N" = 2 ] || echo "_${N}gpu").py"
      else f="$(fabric_file "$m" "$prec")"; [ -n "$opt" ] && f="${f%.py}_ddpopt.py"; fi
      [ -n "$f" ] && [ -f "$f" ] || return 1
      CMD=("$PYTHON" "${PW[@]}" "$f") ;;
    mig_acc|mig_acc_bf16|mig_acc_tf32)
      local f
      if [ "$base" = mig_acc_tf32 ]; then f="$MIG/${m}_migrated_accelerate_tf32.py"
      else f="$(acc_file "$m" "$prec")"; [ -n "$opt" ] && f="${f%.py}_ddpopt.py"; fi
      [ -f "$f" ] || return 1
      CMD=("${TORCHRUN[@]}" --nproc_per_node "$N" "${PW[@]}" "$f") ;;
    hand_fab) CMD=("$PYTHON" "${PW[@]}" "$HERE/${m}_fabric.py" --devices "$N" --precision 32-true) ;;
    hand_fab_bf16) CMD=("$PYTHON" "${PW[@]}" "$HERE/${m}_fabric.py" --devices "$N" --precision bf16-mixed) ;;
    hand_acc) CMD=("${TORCHRUN[@]}" --nproc_per_node "$N" "${PW[@]}" "$HERE/${m}_accelerate.py" --precision no) ;;
    hand_acc_bf16) CMD=("${TORCHRUN[@]}" --nproc_per_node "$N" "${PW[@]}" "$HERE/${m}_accelerate.py" --precision bf16) ;;
    ddp) CMD=("${TORCHRUN[@]}" --nproc_per_node "$N" "${PW[@]}" "$HERE/${m}_ddp.py" --precision fp32) ;;
    ddp_bf16) CMD=("${TORCHRUN[@]}" --nproc_per_node "$N" "${PW[@]}" "$HERE/${m}_ddp.py" --precision bf16) ;;
    *) return 1 ;;
  esac
  if [ "$SMOKE" = 1 ] && [ "$has_cuda" = 0 ] && [ -n "$prec$opt" ] && [[ "$base" == mig_* ]]; then
    return 1  # no bf16 / ddpopt CPU smoke variant of the migrated scripts
  fi
  CMD+=("${COMMON[@]}")
}

DEFAULT_VARIANTS="orig mig_fab hand_fab mig_acc hand_acc ddp mig_fab_bf16 hand_fab_bf16 mig_acc_bf16 hand_acc_bf16 ddp_bf16"
[ "${TF32:-0}" = 1 ] && [ "$SMOKE" = 0 ] && DEFAULT_VARIANTS="$DEFAULT_VARIANTS mig_fab_tf32 mig_acc_tf32"
read -r -a VLIST <<< "${VARIANTS:-$DEFAULT_VARIANTS}"
NV=${#VLIST[@]}
PROFILE_AT=${PROFILE_AT:-$(( WARMUP / 4 > 5 ? WARMUP / 4 : 5 ))}
PROF_DIR="${PROF_DIR:-$OUT_DIR/profiles}"
echo "GPU benchmark: $N GPUs, steps $STEPS, warm-up $WARMUP, $ROUNDS rounds, models: $MODELS, variants: ${VLIST[*]} ($(date -Is))"
"$PYTHON" -c 'import torch, lightning, accelerate; print("torch", torch.__version__, "lightning", lightning.__version__,
"accelerate", accelerate.__version__, "GPU", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")'
for round in $(seq 1 "$ROUNDS"); do
  # interleaved: each round starts at another place in the list, so drift and position hit every variant alike
  shift_by=$(( (round - 1) * (NV / (ROUNDS > 0 ? ROUNDS : 1) + 1) % (NV > 0 ? NV : 1) ))
  for m in $MODELS; do
    for i in $(seq 0 $((NV - 1))); do
      v="${VLIST[$(( (i + shift_by) % NV ))]}"
      PW=()
      if [ "$round" = 1 ] && [[ " ${PROFILE:-} " == *" $v "* ]]; then  # torch.profiler inside the warm-up, rank 0
        mkdir -p "$PROF_DIR"
        PW=("$HERE/profile_wrap.py" --at "$PROFILE_AT" --steps "${PROFILE_STEPS:-5}" --out "$PROF_DIR/${m}_${v}.txt"
            --label "$m $v, $N GPUs, steps $PROFILE_AT-$((PROFILE_AT + ${PROFILE_STEPS:-5})) of the warm-up" --)
      fi
      variant_cmd "$m" "$v" || { echo "  (no $v for $m here: skipped)"; continue; }
      run_one "$round" "$m" "$v" "$GPUS" "${CMD[@]}"
    done
  done
done
"$PYTHON" "$HERE/report.py" "$RESULTS" "$N"
