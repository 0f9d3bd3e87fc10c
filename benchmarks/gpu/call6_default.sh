#!/usr/bin/env bash
# One device call on one GPU (nvidia-h200): every whole-script fixture migrated with default options and run as a
# user runs it, beside its original (benchmarks/gpu/default_runs.py), and the ecosystem corpus's runtime part with
# verify's check a (benchmarks/ecosystem/gpu.sh), side by side. The engine is a snapshot of HEAD, as in call4_all.sh:
#   mkdir -p .gpu-head && git archive --format=tar.gz -o .gpu-head/head.tar.gz HEAD
#   run(kind="nvidia-h200", carry=[".gpu-head", "benchmarks/ecosystem/wheels"], timeout_s=600,
#       command='bash benchmarks/gpu/call6_default.sh "$OUT"')
# Writes OUT/default-runs.md, default-runs.tsv, default-runs-logs.tar.gz, gpu.json, gpu-report.md, call6.log.
# Knobs: RUNS_BUDGET (400), ECO_BUDGET (400), RJOBS (10), EJOBS (5), CASES, ENTRIES, SKIP_ECO=1.
set -uo pipefail
OUT=${1:-${OUT:-gpu-call6-out}}
. benchmarks/gpu/_head.sh
exec > >(tee "$OUT/call6.log") 2>&1
echo "call6: $(date -u) snapshot $(tar -tzf "$SRC/.gpu-head/head.tar.gz" | wc -l) files; $(nvidia-smi -L 2>/dev/null | wc -l) GPU(s)"
. benchmarks/gpu/_setup.sh || exit 3
mkdir -p /tmp/c6e
python3 benchmarks/gpu/default_runs.py "$OUT" --jobs "${RJOBS:-10}" --budget "${RUNS_BUDGET:-400}" --cases "${CASES:-}" &
R=$!
[ -z "${SKIP_ECO:-}" ] && ENTRIES="${ENTRIES:-}" CHECKS=a ACCELERATOR=cuda BUDGET_S=${ECO_BUDGET:-400} JOBS=${EJOBS:-5} OUT=/tmp/c6e \
  bash benchmarks/ecosystem/gpu.sh /tmp/c6e > /tmp/c6e/stdout.log 2>&1 &
E=$!
wait $R; echo "default runs exit $?"
wait $E; echo "ecosystem exit $?"
cp /tmp/c6e/gpu.json /tmp/c6e/gpu-report.md "$OUT/" 2>/dev/null
tar -C /tmp -czf "$OUT/eco-logs.tar.gz" c6e/stdout.log c6e/gpu.log 2>/dev/null
grep -E "^\| (total|Total)|migrated|crash" "$OUT/gpu-report.md" 2>/dev/null | head -20
echo "call6: done $(date -u)"
