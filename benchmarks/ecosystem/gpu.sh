#!/usr/bin/env bash
# The ecosystem check's runtime part on a 2-GPU machine (the device tool's nvidia-h200-x2), in one call.
#
# Here, first (needs network to the package index; fills the git-ignored benchmarks/ecosystem/wheels/ with the
# wheels the GPU image lacks and the extracted corpus, about 50 MiB):
#   python -m benchmarks.ecosystem fetch --mirror-root /work/.mirror
#   python -m benchmarks.ecosystem prepare-gpu
# Then, through the device tool, from the repository root:
#   run(kind="nvidia-h200-x2", carry=["benchmarks/ecosystem/wheels"], timeout_s=600,
#       command="bash benchmarks/ecosystem/gpu.sh")
# It writes $OUT/gpu.json (the same schema as results/cpu.json), $OUT/gpu-report.md and $OUT/gpu.log. Copy
# gpu.json to benchmarks/ecosystem/results/ and run `python -m benchmarks.ecosystem report` to add it to
# docs/ecosystem.md.
#
# Environment: ACCELERATOR (default cuda; cpu to try the script here), CHECKS (verify's; `a` on one GPU), ENTRIES="a b" (default: every recipe that is runnable), JOBS (entries at a time, default 6; small
# models share the GPUs), STEPS (default 3), TARGETS (default fabric,accelerate), BUDGET_S (default 540: entries
# not started by then are skipped, so the call ends inside its 10 minutes).
# The image has torch, lightning, accelerate and torchvision but no libcst/click/pyflakes and no network.
# Stand-in data come from the same scripts as on CPU; the stub packages (torchvision datasets, wandb, gym, nltk)
# are on the path as on CPU, so the real torchvision is shadowed for the entries that use the stubs.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-${1:-$ROOT/gpu-eco-out}}
mkdir -p "$OUT"
W=$ROOT/benchmarks/ecosystem/wheels
LOG=$OUT/gpu.log
exec > >(tee -a "$LOG") 2>&1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
export PTM_ECO_CACHE=$W/cache PTM_ECO_NO_CLONE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
START=$(date +%s)
echo "== $(date -u) $(nvidia-smi -L 2>/dev/null | wc -l) GPU(s)"

# 1. pt-migrate's dependencies and the corpus', from the carried wheels (no index)
SITE=/tmp/ptm-eco-site
mkdir -p "$SITE"
python3 -m pip install -q --no-index --no-deps --find-links "$W" --target "$SITE" libcst pyyaml 2>&1 | tail -2
for r in $(grep -v '^#' benchmarks/ecosystem/gpu-requirements.txt | sed 's/#.*//'); do
  case $r in
    absl-py) mod=absl ;; tensorboardX) mod=tensorboardX ;; protobuf) mod=google.protobuf ;;
    markdown-it-py) mod=markdown_it ;; *) mod=$(echo "$r" | tr 'A-Z-' 'a-z_') ;;
  esac
  python3 -c "import $mod" 2>/dev/null && continue
  python3 -m pip install -q --no-index --no-deps --find-links "$W" --target "$SITE" "$r" 2>&1 | tail -1
done
# opacus ships a top-level package named `benchmarks`, which would hide this repository's
rm -rf "$SITE/benchmarks"
export PYTHONPATH=$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}
# rules/ ships as migrator.rules (pyproject's package-dir); from a plain checkout on the path it needs a link
python3 -c 'import migrator.rules' 2>/dev/null || ln -sfn ../rules "$ROOT/migrator/rules"
python3 -c 'import libcst, click, pyflakes, migrator.cli, migrator.rules' || { echo "pt-migrate does not import"; exit 3; }
python3 - <<'PY'
from importlib import metadata
for m in ("torch", "lightning", "accelerate", "torchvision", "libcst", "numpy", "scipy", "matplotlib", "tensorboard"):
    try:
        print(m, metadata.version(m))
    except Exception as e:
        print(m, "missing")
PY

# 2. the runtime check, entries in parallel, one result folder each
if [ -z "${ENTRIES:-}" ]; then
  ENTRIES=$(python3 - <<'PY'
import json
from pathlib import Path
for e in json.load(open("benchmarks/ecosystem/manifest.json"))["entries"]:
    p = Path("benchmarks/ecosystem/recipes") / f"{e['name']}.json"
    if p.exists() and json.loads(p.read_text()).get("runnable", True) and json.loads(p.read_text()).get("gpu", True):
        print(e["name"])
PY
)
fi
PARTS=/tmp/ptm-eco-parts
rm -rf "$PARTS"; mkdir -p "$PARTS"
export STEPS=${STEPS:-3} TARGETS=${TARGETS:-fabric,accelerate} BUDGET_S=${BUDGET_S:-540} START PARTS CHECKS=${CHECKS:-}
one() {
  if [ $(( $(date +%s) - START )) -gt "$BUDGET_S" ]; then echo "== $1: skipped (time budget)"; return; fi
  timeout $(( BUDGET_S + 40 - ($(date +%s) - START) )) python3 -m benchmarks.ecosystem --results "$PARTS/$1" cpu \
    --only "$1" --accelerator "${ACCELERATOR:-cuda}" --devices 2 --steps "$STEPS" --targets "$TARGETS" \
    --work "/tmp/ptm-eco-work" ${CHECKS:+--checks "$CHECKS"} > "$PARTS/$1.log" 2>&1
  echo "== $1 (exit $?)"; cat "$PARTS/$1.log"
}
export -f one
echo $ENTRIES | tr ' ' '\n' | xargs -P "${JOBS:-6}" -I{} bash -c 'one {}'

# 3. one result file and its report
python3 -m benchmarks.ecosystem merge "$OUT/gpu.json" "$PARTS"/*/*.json
mkdir -p /tmp/ptm-eco-results && cp "$OUT/gpu.json" /tmp/ptm-eco-results/gpu.json
python3 -m benchmarks.ecosystem --results /tmp/ptm-eco-results report --out "$OUT/gpu-report.md"
echo "== done in $(( $(date +%s) - START )) s"
