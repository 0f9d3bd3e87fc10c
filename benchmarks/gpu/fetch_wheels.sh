#!/usr/bin/env bash
# Here (a machine with pip and internet), from the repository root: the wheels pt-migrate needs on the GPU machine,
# whose image has torch, lightning, accelerate, click and pyyaml but no libcst or pyflakes. Into .whl/ (git-ignored),
# for CPython 3.10-3.12 (the image's python3 is 3.12.3 per the device notes; the others in case it changes);
# _setup.sh installs the one that fits with `pip install --find-links .whl`.
set -euo pipefail
LIBCST=${LIBCST:-1.9.0} PYFLAKES=${PYFLAKES:-4.1.0} CLICK=${CLICK:-8.5.1}
mkdir -p .whl
for v in 3.10 3.11 3.12; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$v" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "libcst==$LIBCST"
done
python3 -m pip download -q --no-deps --only-binary=:all: -d .whl "pyflakes==$PYFLAKES" "click==$CLICK"
ls -la .whl
