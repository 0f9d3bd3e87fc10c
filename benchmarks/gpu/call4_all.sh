#!/usr/bin/env bash
# One device call that runs both full GPU checks side by side on nvidia-h200-x2 (32 cores, 2 GPUs of 141 GB: the
# small fixture and corpus runs share them): verify on every whole-script fixture (call1_verify.sh, checks a-f,
# both targets) and the ecosystem corpus's runtime part (benchmarks/ecosystem/gpu.sh, every runnable entry).
# The engine is a snapshot of HEAD (`git archive HEAD` in .gpu-head/), so edits in the working tree do not travel
# into the figures. Through the device tool, from the repository root:
#   mkdir -p .gpu-head && git archive --format=tar.gz -o .gpu-head/head.tar.gz HEAD
#   run(kind="nvidia-h200-x2", carry=[".gpu-head", "benchmarks/ecosystem/wheels"], timeout_s=600,
#       command='bash benchmarks/gpu/call4_all.sh "$OUT"')
# Writes OUT/verify-summary.md, verify-summary.tsv, verify-reports.tar.gz, gpu.json, gpu-report.md, call4.log.
# Knobs: VERIFY_BUDGET (470), ECO_BUDGET (470), STEPS (10), CASES / ENTRIES (default: all), ACCEL=cpu (dry run),
# CHECKS / ECO_CHECKS (verify's checks; `a` on a machine of one GPU), SKIP_VERIFY=1 / SKIP_ECO=1 (one part only).
set -uo pipefail
OUT=${1:-${OUT:-gpu-call4-out}}
. benchmarks/gpu/_head.sh
exec > >(tee "$OUT/call4.log") 2>&1
echo "call4: $(date -u) snapshot $(tar -tzf "$SRC/.gpu-head/head.tar.gz" | wc -l) files"
mkdir -p /tmp/c4v /tmp/c4e
[ -z "${SKIP_VERIFY:-}" ] && CASES="${CASES:-}" CHECKS="${CHECKS:-abcdef}" ACCEL="${ACCEL:-cuda}" BUDGET=${VERIFY_BUDGET:-470} LAST_START=${LAST_START:-120} STEPS=${STEPS:-10} \
  JOBS=${VJOBS:-10} bash benchmarks/gpu/call1_verify.sh /tmp/c4v > /tmp/c4v/stdout.log 2>&1 &
V=$!
[ -z "${SKIP_ECO:-}" ] && ENTRIES="${ENTRIES:-}" CHECKS="${ECO_CHECKS:-}" ACCELERATOR="${ACCEL:-cuda}" BUDGET_S=${ECO_BUDGET:-470} JOBS=${EJOBS:-6} OUT=/tmp/c4e \
  bash benchmarks/ecosystem/gpu.sh /tmp/c4e > /tmp/c4e/stdout.log 2>&1 &
E=$!
wait $V; echo "verify exit $?"
wait $E; echo "ecosystem exit $?"
cp /tmp/c4v/verify-summary.md /tmp/c4v/verify-summary.tsv /tmp/c4v/verify-reports.tar.gz "$OUT/" 2>/dev/null
cp /tmp/c4e/gpu.json /tmp/c4e/gpu-report.md "$OUT/" 2>/dev/null
tar -C /tmp -czf "$OUT/logs.tar.gz" c4v/stdout.log c4v/call1.log c4e/stdout.log c4e/gpu.log 2>/dev/null
cat "$OUT/verify-summary.md" 2>/dev/null | head -5
grep -E "^\| (total|Total)|migrated|crash" "$OUT/gpu-report.md" 2>/dev/null | head -20
echo "call4: done $(date -u)"
