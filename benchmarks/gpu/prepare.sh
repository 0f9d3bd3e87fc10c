#!/usr/bin/env bash
# Migrate the plain benchmark scripts with pt-migrate, on a machine that has pt-migrate (libcst); the GPU image
# has none. Make-style: a migrated file is redone only when it is older than its input or than pt-migrate's code.
#
#   benchmarks/gpu/prepare.sh [N...]     # N: GPU counts to bake into the Fabric variants (default: 2 4 8)
#
# Produces, in benchmarks/gpu/migrated/ (git-ignored: generated; carry it to the GPU machine, e.g. the device
# tool's `carry: ["benchmarks/gpu/migrated"]`), for X in gpt, cnn:
#   X_migrated_fabric.py            --accelerator cuda --devices 2 --strategy ddp            (N=2)
#   X_migrated_fabric_bf16.py       same with --precision bf16-mixed                          (N=2)
#   X_migrated_fabric_<N>gpu.py, X_migrated_fabric_bf16_<N>gpu.py                             (other N)
#   X_migrated_fabric_tf32[_<N>gpu].py  with --matmul-precision high (opt-in TF32 matmuls)
#   X_migrated_accelerate.py        --accelerator cuda (torchrun decides the process count)
#   X_migrated_accelerate_tf32.py   same with --matmul-precision high
#   X_migrated_accelerate_bf16.py   same with --precision bf16-mixed (-> mixed_precision="bf16")
#   X_migrated_{fabric,accelerate}[_bf16][_<N>gpu]_ddpopt.py  the same with DDP settings passed through the
#                                   framework's kwargs (gradient_as_bucket_view, static_graph): ddp_kwargs_variant.py
#   smoke/X_migrated_fabric.py      --accelerator cpu --devices 2 --strategy ddp: for the CPU smoke test
#   smoke/X_migrated_accelerate.py  --accelerator cpu
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PT_MIGRATE="${PT_MIGRATE:-pt-migrate}"
command -v "$PT_MIGRATE" >/dev/null || PT_MIGRATE="python -m migrator"
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(2 4 8)
# newest file of the tool itself: a change to a rule redoes every migration
TOOL_STAMP="$(ls -t "$REPO"/migrator/*.py "$REPO"/rules/*.py | head -1)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
MIG="$HERE/migrated"
mkdir -p "$MIG/smoke"

migrate() {  # migrate <script> <output> <pt-migrate flags...>
  local src="$1" out="$2"
  shift 2
  if [ -f "$out" ] && [ "$out" -nt "$src" ] && [ "$out" -nt "$TOOL_STAMP" ]; then
    echo "up to date: ${out#$REPO/}"
    return
  fi
  # alone in an empty folder: the hand-written variants next to it import it and must not take part in the
  # project analysis (migrator.project) of the plain script
  mkdir -p "$WORK/in"
  cp "$src" "$WORK/in/$(basename "$src")"
  $PT_MIGRATE "$WORK/in/$(basename "$src")" -q "$@" -o "$out.tmp"
  mv "$out.tmp" "$out"
  rm -rf "$WORK/in"
  echo "migrated: ${out#$REPO/}  ($*)"
}

for x in gpt cnn; do
  src="$HERE/$x.py"
  for n in "${COUNTS[@]}"; do
    suffix=""; [ "$n" = 2 ] || suffix="_${n}gpu"
    migrate "$src" "$MIG/${x}_migrated_fabric${suffix}.py" --target fabric --accelerator cuda --devices "$n" --strategy ddp
    migrate "$src" "$MIG/${x}_migrated_fabric_bf16${suffix}.py" --target fabric --accelerator cuda --devices "$n" \
      --strategy ddp --precision bf16-mixed
    migrate "$src" "$MIG/${x}_migrated_fabric_tf32${suffix}.py" --target fabric --accelerator cuda --devices "$n" \
      --strategy ddp --matmul-precision high
  done
  migrate "$src" "$MIG/${x}_migrated_accelerate.py" --target accelerate --accelerator cuda
  migrate "$src" "$MIG/${x}_migrated_accelerate_bf16.py" --target accelerate --accelerator cuda --precision bf16-mixed
  # the ddpopt variants: DDP settings through the framework's kwargs (ddp_kwargs_variant.py), from the files above
  for f in "$MIG/${x}_migrated_accelerate.py" "$MIG/${x}_migrated_accelerate_bf16.py" \
           "$MIG/${x}_migrated_fabric"{,_bf16}{,_*gpu}.py; do
    [ -f "$f" ] || continue
    case "$f" in *_tf32*|*_ddpopt*) continue ;; esac
    python3 "$HERE/ddp_kwargs_variant.py" "$f" "${f%.py}_ddpopt.py" && echo "ddpopt: ${f#$REPO/} -> ${f%.py}_ddpopt.py"
  done
  migrate "$src" "$MIG/${x}_migrated_accelerate_tf32.py" --target accelerate --accelerator cuda --matmul-precision high
  migrate "$src" "$MIG/smoke/${x}_migrated_fabric.py" --target fabric --accelerator cpu --devices 2 --strategy ddp
  migrate "$src" "$MIG/smoke/${x}_migrated_accelerate.py" --target accelerate --accelerator cpu
done
