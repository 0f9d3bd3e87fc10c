#!/usr/bin/env bash
# The hand-written distributed fixtures (fixtures/*/distributed.json) on GPUs: the original under torchrun (or
# `python` for mp.spawn), and its Fabric and Accelerate migrations, N processes each, NCCL and real CUDA AMP.
# Reports whether each run finished and, for Fabric, how far rank 0's per-step losses are from the original's.
#
# On the GPU machine, from the repository root, with the wheels carried in .whl/ (benchmarks/gpu/fetch_wheels.sh):
#   bash benchmarks/gpu_distributed.sh [N_GPUS] [OUT_DIR]
#   CASES="amp_ddp ddp_torchrun" bash benchmarks/gpu_distributed.sh 2 "$OUT"
set -uo pipefail
N=${1:-$(python3 -c 'import torch; print(torch.cuda.device_count())')}
OUT=${2:-${OUT:-gpu-distributed-out}}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
. "$(dirname "$0")/gpu/_setup.sh" || exit 3  # libcst, pyflakes, click from .whl/ (the one for this Python)
WORK=$(mktemp -d)
for d in fixtures/*/; do
  c=$(basename "$d")
  [ -f "$d/distributed.json" ] || continue
  if [ -n "${CASES:-}" ] && [[ " $CASES " != *" $c "* ]]; then continue; fi
  original=$(python3 -c "import json; print(json.load(open('$d/distributed.json'))['original'])")
  for kind in original fabric accelerate; do
    w="$WORK/$c/$kind"; mkdir -p "$w"; cp -r "$d/before/." "$w/"
    case $kind in
      fabric) python3 -m migrator "$w" --target fabric --accelerator cuda --devices "$N" --strategy ddp -q ;;
      accelerate) python3 -m migrator "$w" --target accelerate --accelerator cuda -q ;;
    esac
    if [ "$kind" = fabric ] || { [ "$kind" = original ] && [ "$original" = python ]; }; then
      cmd=(python3 train.py)
    else
      cmd=(python3 -m torch.distributed.run --standalone --nproc_per_node "$N" train.py)
    fi
    echo "== $c $kind: ${cmd[*]}"
    start=$(date +%s.%N)
    (cd "$w" && timeout 300 "${cmd[@]}") > "$OUT/$c.$kind.log" 2>&1
    echo "exit $? $(python3 -c "print(f'{$(date +%s.%N) - $start:.1f} s')")" | tee -a "$OUT/$c.$kind.log"
  done
done
python3 - "$OUT" "$N" <<'PY' | tee "$OUT/summary.md"
import re, sys
from pathlib import Path
out, n = Path(sys.argv[1]), sys.argv[2]
step = re.compile(r"^step (\d+) loss (-?[\d.]+)$", re.M)
print(f"| fixture ({n} GPU) | original | Fabric | Accelerate | Fabric vs original, rank 0 step losses |")
print("|---|---|---|---|---|")
for case in sorted({p.name.split(".")[0] for p in out.glob("*.log")}):
    logs = {k: (out / f"{case}.{k}.log").read_text() for k in ("original", "fabric", "accelerate")}
    status = {k: (re.findall(r"^exit (\d+)", v, re.M) or ["?"])[-1] for k, v in logs.items()}
    losses = {k: [float(x) for _, x in step.findall(v)] for k, v in logs.items()}
    a, b = losses["original"], losses["fabric"]
    if a and len(a) == len(b):
        worst = max(abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, b))
        cmp = f"{len(a)} steps, max rel. diff {worst:.1e}"
    else:
        cmp = f"steps {len(a)} vs {len(b)}"
    cell = lambda k: f"exit {status[k]}, {len(losses[k])} step lines"
    print(f"| {case} | {cell('original')} | {cell('fabric')} | {cell('accelerate')} | {cmp} |")
PY
rm -rf "$WORK"
