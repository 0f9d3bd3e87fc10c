#!/usr/bin/env bash
# Device call 2 of issue #16: the speed benchmark of migrated scripts on 2 GPUs (GPT model), 3 interleaved rounds,
# fp32 and bf16, with the ddpopt variants (DDP kwargs through the framework) and a torch.profiler capture of migrated
# Fabric, migrated Accelerate and raw DDP inside round 1's warm-up. Ends within BUDGET seconds: a run that would end
# later is not started (recorded as "deadline").
#
# Here, before the call: bash benchmarks/gpu/prepare.sh 2   (writes benchmarks/gpu/migrated/, carried)
# On the device machine (nvidia-h200-x2), from the repository root:
#   bash benchmarks/gpu/call2_bench.sh "$OUT"
# Writes to OUT (5 files): bench-report.md (environment, table, ratios, NCCL transport, profile summary lines),
# results.tsv, profiles.txt (the full profile tables), bench-logs.tar.gz (every run's log), call2.log.
# Knobs: SMOKE=1 (dry run on a CPU machine: PROFILE_AT=1 PROFILE_STEPS=1 SMOKE=1 bash ...), STEPS=150 WARMUP=80 ROUNDS=3 BUDGET=500 MODELS=gpt VARIANTS="..." PROFILE="..."
#
# Against the bf16 swing of the first 2-GPU run (25% between rounds, 60 timed steps after 15 warm-up ones):
# - warm-up of 80 steps (~1.5 s) instead of 15 (~0.2 s): the GPU clocks ramp up from idle (345 MHz seen idle on an
#   H200 here) while the process starts; with 15 steps the first timed steps ran on rising clocks, which weighs most
#   where the steps are shortest (bf16);
# - 150 timed steps (~3 s), every variant in every round, each round starting at another place in the list;
# - medians of 3 rounds, spreads printed; OMP_NUM_THREADS=4 per process; nothing else runs on the machine meanwhile;
# - NCCL's transport (P2P / NVLink or shared memory through the host) logged, since a host-staged all-reduce would
#   make the step time depend on the CPUs.
set -uo pipefail
T0=$(date +%s)
OUT=${1:-${OUT:-gpu-call2-out}}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
exec > >(tee "$OUT/call2.log") 2>&1
HERE=benchmarks/gpu
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
export NCCL_DEBUG=${NCCL_DEBUG:-INFO} NCCL_DEBUG_SUBSYS=${NCCL_DEBUG_SUBSYS:-INIT}
BUDGET=${BUDGET:-500}
export DEADLINE=$((T0 + BUDGET))
export MODELS=${MODELS:-gpt}
export VARIANTS=${VARIANTS:-"orig mig_fab hand_fab mig_acc hand_acc ddp mig_fab_ddpopt mig_acc_ddpopt mig_fab_bf16 hand_fab_bf16 mig_acc_bf16 hand_acc_bf16 ddp_bf16"}
export PROFILE=${PROFILE:-"mig_fab mig_acc ddp mig_fab_bf16 mig_acc_bf16 ddp_bf16"}
export PROFILE_AT=${PROFILE_AT:-20} PROFILE_STEPS=${PROFILE_STEPS:-5}
WORK=$(mktemp -d /tmp/ptm-call2.XXXXXX)
export OUT_DIR="$WORK/bench" PROF_DIR="$WORK/bench/profiles"
echo "call2: $(date -Is) commit $(git rev-parse --short HEAD 2>/dev/null || echo '?') budget ${BUDGET}s"
{
  nvidia-smi --query-gpu=index,name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.draw,power.limit,temperature.gpu --format=csv 2>&1
  echo; nvidia-smi topo -m 2>&1
  nproc; python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "nccl", torch.cuda.nccl.version())'
} > "$WORK/env.txt" 2>&1
cat "$WORK/env.txt"
if [ "${SMOKE:-0}" = 1 ]; then  # a dry run on a CPU machine: tiny sizes, 1 round (run.sh --smoke)
  PYTHON=${PYTHON:-python3} bash "$HERE/run.sh" --smoke
else
  PYTHON=python3 bash "$HERE/run.sh" 2 "${STEPS:-150}" "${WARMUP:-80}" "${ROUNDS:-3}"
fi
nvidia-smi --query-gpu=index,clocks.sm,temperature.gpu,power.draw --format=csv,noheader > "$WORK/clocks_after.txt" 2>&1
# the report: environment, table (Markdown), ratios, transport, the profiles' summary lines
{
  echo "# call2 benchmark, $(date -Is), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "command: bash benchmarks/gpu/call2_bench.sh \$OUT  (STEPS=${STEPS:-150} WARMUP=${WARMUP:-80} ROUNDS=${ROUNDS:-3})"
  echo; echo "## results"; echo
  python3 "$HERE/report.py" "$OUT_DIR/results.tsv" 2 --markdown
  echo '```'; python3 "$HERE/report.py" "$OUT_DIR/results.tsv" 2; echo '```'
  echo; echo "## profiles (round 1, rank 0, steps $PROFILE_AT-$((PROFILE_AT + PROFILE_STEPS)) of the warm-up)"; echo
  echo '```'; for f in "$PROF_DIR"/*.txt; do [ -f "$f" ] && head -3 "$f"; done; echo '```'
  echo; echo "## NCCL transport (raw DDP, fp32, round 1)"; echo
  echo '```'
  grep -h -E "via (P2P|SHM|NET|CUMEM)|Connected all rings|NVLS|P2P/|Channel 00" "$OUT_DIR"/logs/*_ddp_r1.log 2>/dev/null | sed 's/^.*NCCL INFO //' | sort -u | head -12
  echo '```'
  echo; echo "## environment"; echo
  echo '```'; cat "$WORK/env.txt"; echo "clocks after: $(tr '\n' ' ' < "$WORK/clocks_after.txt")"; echo '```'
} > "$OUT/bench-report.md" 2>&1
cp "$OUT_DIR/results.tsv" "$OUT/results.tsv"
cat "$PROF_DIR"/*.txt > "$OUT/profiles.txt" 2>/dev/null || echo "no profiles" > "$OUT/profiles.txt"
tar -C "$WORK" -czf "$OUT/bench-logs.tar.gz" bench env.txt
cat "$OUT/bench-report.md"
echo "call2: done in $(( $(date +%s) - T0 ))s"
rm -rf "$WORK"
