#!/usr/bin/env bash
# Run `pt-migrate verify` on the GPU machine for every whole-script fixture that runs on one machine,
# plus the GPU-only fixtures (torchvision, real fp16/bf16 AMP), for both targets.
#
# Here (needs libcst): nothing; the migration happens inside verify, on the GPU machine, with the carried wheel.
# For the 2-GPU proof of issue #16, benchmarks/gpu/call1_verify.sh runs every fixture in parallel within one device call.
# On the GPU machine, from the repository root, with the wheels carried in .whl/ (see docs/verification.md):
#   bash benchmarks/gpu_verify.sh [N_GPUS] [OUT_DIR]
#   CASES="amp_scaler gpu_amp_fp16" TARGETS=fabric bash benchmarks/gpu_verify.sh 1     # a subset
# N_GPUS defaults to the GPUs present. With one GPU only checks a (parity) and f (throughput) can run.
set -uo pipefail
N=${1:-$(python3 -c 'import torch; print(torch.cuda.device_count())')}
OUT=${2:-${OUT:-gpu-verify-out}}
STEPS=${STEPS:-20}
mkdir -p "$OUT"
# libcst, pyflakes and click from the wheels in .whl/ (benchmarks/gpu/fetch_wheels.sh), pt-migrate importable
. benchmarks/gpu/_setup.sh || exit 3
CHECKS=abcdef
[ "$N" -lt 2 ] && CHECKS=af
# case:entry for every single-device whole-script fixture (hand-written DDP originals are not single-device)
ENTRIES=$(python3 - <<'PY'
from pathlib import Path
for case in sorted(Path("fixtures").iterdir()):
    files = sorted((case / "before").glob("*.py"))
    if not files or case.name.startswith("noop_") or (case / "distributed.json").exists():
        continue
    entry = next((f for f in files if "__main__" in f.read_text()), files[0])
    print(f"{case.name}:{entry.name}")
PY
)
for e in $ENTRIES; do
  c=${e%%:*}; script=${e#*:}
  if [ -n "${CASES:-}" ] && [[ " $CASES " != *" $c "* ]]; then continue; fi
  for t in ${TARGETS:-fabric accelerate}; do
    echo "== $c $t (devices $N, checks $CHECKS)"
    timeout 900 python3 -m migrator.verify "fixtures/$c/before/$script" --target "$t" --accelerator cuda \
      --devices "$N" --steps "$STEPS" --timeout 600 --checks "$CHECKS" --json > "$OUT/$c.$t.json" 2> "$OUT/$c.$t.log"
    echo "exit $?"
  done
done
python3 benchmarks/gpu_verify_report.py "$OUT" "$N" > "$OUT/summary.md"
cat "$OUT/summary.md"
