#!/usr/bin/env bash
# Issue 13 on GPUs: runs what `python -m benchmarks.gpu.issue13_devices prepare DIR` prepared (see that file),
# several at a time, and prints one line per run: case/variant, exit status, the device error if any, the last line.
# Writes $OUT/issue13.tsv and $OUT/issue13.log.
set -uo pipefail
DIR=${1:?usage: issue13_devices.sh DIR}
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$ROOT/issue13-out}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
export MPLBACKEND=Agg
SITE=/tmp/i13-site
python3 -m pip install -q --no-index --no-deps --target "$SITE" "$ROOT/$DIR"/whl/*.whl 2>&1 | tail -1
export PYTHONPATH=$ROOT/$DIR/stubs:$SITE
echo "== $(date -u) $(nvidia-smi -L 2>/dev/null | wc -l) GPU(s)"
one() {
  d="$1"
  log="$ROOT/$DIR/$d/run.log"
  (cd "$ROOT/$DIR/$d" && timeout 240 bash -c "$(cat cmd)" > "$log" 2>&1)
  rc=$?
  err=$(grep -m1 -oE "Expected all tensors to be on the same device[^.]*|Input and [a-z]+ [a-z ]*should be [a-z ]*|can't convert cuda[^.]*|device-side assert[^.]*|RuntimeError: [^\n]{0,100}" "$log" | head -1)
  last=$(grep -v '^\s*$' "$log" | grep -v "Warning\|warn(" | tail -1 | cut -c1-100)
  printf '%s\t%s\t%s\t%s\n' "$d" "$rc" "${err:--}" "$last"
}
export -f one
export ROOT DIR
python3 -c "import json,sys; print('\n'.join(json.load(open('$DIR/cases.json'))))" \
  | xargs -P "${JOBS:-8}" -I{} bash -c 'one "{}"' | sort | tee "$OUT/issue13.tsv"
for f in "$ROOT/$DIR"/*/*/run.log; do echo "=== $f"; tail -5 "$f"; done > "$OUT/issue13.log" 2>&1
echo "== done $(date -u)"
