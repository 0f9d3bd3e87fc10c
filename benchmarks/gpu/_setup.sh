# Sourced by the device-call scripts (call1_verify.sh, gpu_verify.sh): makes pt-migrate importable on the GPU
# machine, whose image has torch, lightning and accelerate but no libcst / pyflakes. The wheels travel in .whl/
# (git-ignored; the device tool's carry: [".whl", ...]); pip picks the one that fits the machine's Python.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
if ! python3 -c 'import libcst, pyflakes, click' 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/ptm-site \
    --find-links .whl libcst pyflakes click || { echo "setup: the wheels in .whl/ do not install" >&2; return 3; }
  export PYTHONPATH=/tmp/ptm-site${PYTHONPATH:+:$PYTHONPATH}
fi
if ! python3 -c 'import migrator.rules, migrator.selfcheck' 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 \
    || { [ -e migrator/rules ] || ln -s ../rules migrator/rules; }
  python3 -c 'import migrator.rules, migrator.selfcheck' || { echo "setup: pt-migrate does not import" >&2; return 3; }
fi
