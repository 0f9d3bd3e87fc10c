#!/usr/bin/env bash
# Device call 1 of issue #16: `pt-migrate verify --accelerator cuda --devices 2` on every whole-script fixture
# (benchmarks/gpu/verify_cases.py: the single-device, GPU-only and hand-written distributed ones), both targets,
# checks a-f, several verifies at a time. Ends within BUDGET seconds whatever happens: no job starts after
# BUDGET-LAST_START, and jobs still running at BUDGET are stopped (their processes by id) and reported as not run.
#
# On the device machine (nvidia-h200-x2), from the repository root, with .whl carried (README.md beside this):
#   bash benchmarks/gpu/call1_verify.sh "$OUT"
# Writes to OUT (4 files): verify-summary.md, verify-summary.tsv, verify-reports.tar.gz (one JSON report and log
# per fixture and target), call1.log. Turn them into docs/verification.md with benchmarks/gpu/update_docs.py.
# Knobs (environment): N_GPUS=2 STEPS=20 JOBS=12 BUDGET=480 LAST_START=90 RUN_TIMEOUT=150 TARGETS="fabric accelerate"
# CHECKS=a (one GPU: one-process runs only), ACCEL=cpu (a dry run on a CPU machine), CASES="gan vae" (a subset), VERIFY_ARGS="--nondeterministic" (extra verify flags).
set -uo pipefail
T0=$(date +%s)
OUT=${1:-${OUT:-gpu-call1-out}}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
N=${N_GPUS:-2}; STEPS=${STEPS:-20}; JOBS=${JOBS:-12}; BUDGET=${BUDGET:-480}; LAST_START=${LAST_START:-90}
RUN_TIMEOUT=${RUN_TIMEOUT:-150}
exec > >(tee "$OUT/call1.log") 2>&1
HERE=benchmarks/gpu
. "$HERE/_setup.sh" || exit 3
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
WORK=$(mktemp -d /tmp/ptm-call1.XXXXXX)
mkdir -p "$WORK/reports" "$WORK/tmp"
export TMPDIR="$WORK/tmp"  # verify's folders, so that leftover processes can be told by their paths
export PTM_CALL1_DEADLINE=$((T0 + BUDGET)) PTM_CALL1_LAST=$((T0 + BUDGET - LAST_START)) PTM_CALL1_REPORTS="$WORK/reports"
# CHECKS=a on a machine of one GPU: the one-process runs only (parity, the migrated script on the device)
export PTM_CALL1_CHECKS=${CHECKS:-abcdef} PTM_CALL1_GPUS=$(nvidia-smi -L 2>/dev/null | wc -l)
export PTM_CALL1_ACCEL=${ACCEL:-cuda} PTM_CALL1_STEPS=$STEPS PTM_CALL1_N=$N PTM_CALL1_RUN_TIMEOUT=$RUN_TIMEOUT PTM_CALL1_ARGS="${VERIFY_ARGS:-}"
echo "call1: $(date -Is) commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')  N=$N STEPS=$STEPS JOBS=$JOBS BUDGET=${BUDGET}s"
nvidia-smi --query-gpu=index,name,memory.total,clocks.sm --format=csv,noheader || true
python3 -c 'import torch, lightning, accelerate, libcst; print("torch", torch.__version__, "lightning", lightning.__version__,
"accelerate", accelerate.__version__, "libcst", libcst.__version__ if hasattr(libcst, "__version__") else "?", "GPUs", torch.cuda.device_count())'
python3 "$HERE/verify_cases.py" ${TARGETS:-fabric accelerate} > "$WORK/jobs.txt"
if [ -n "${CASES:-}" ]; then
  awk -v c=" $CASES " 'index(c, " " $1 " ")' "$WORK/jobs.txt" > "$WORK/jobs.sel" && mv "$WORK/jobs.sel" "$WORK/jobs.txt"
fi
echo "$(wc -l < "$WORK/jobs.txt") verify jobs, $JOBS at a time"
# job number -> GPU order: single-process runs use the first visible GPU, so alternate which one that is
awk '{print NR, $0}' "$WORK/jobs.txt" | xargs -P "$JOBS" -L 1 bash "$HERE/_verify_one.sh" &
XARGS=$!
while kill -0 "$XARGS" 2>/dev/null && [ "$(date +%s)" -lt "$PTM_CALL1_DEADLINE" ]; do sleep 2; done
if kill -0 "$XARGS" 2>/dev/null; then
  echo "call1: budget of ${BUDGET}s reached; stopping the jobs still running"
  kill -TERM "$XARGS" 2>/dev/null
fi
sleep 3
# whatever verify started and left (its runs are in sessions of their own): by process id, found by our folder
for pid in $(ps -eo pid=,args= | awk -v w="$WORK" 'index($0, w) && !/awk/ {print $1}'); do
  [ "$pid" != "$$" ] && kill -KILL "$pid" 2>/dev/null && echo "call1: killed leftover process $pid"
done
wait "$XARGS" 2>/dev/null  # not a bare wait: the tee of the log is a child too
python3 "$HERE/verify_summary.py" "$WORK/jobs.txt" "$WORK/reports" "$N" "$STEPS" "$OUT/verify-summary.tsv" > "$OUT/verify-summary.md"
tar -C "$WORK" -czf "$OUT/verify-reports.tar.gz" reports jobs.txt
cat "$OUT/verify-summary.md"
echo "call1: done in $(( $(date +%s) - T0 ))s"
rm -rf "$WORK"
