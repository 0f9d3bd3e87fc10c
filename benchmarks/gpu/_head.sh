# Sourced by the device-call scripts that run a snapshot of HEAD (call4_all.sh, call6_default.sh), from the
# repository root with OUT set: makes OUT absolute, unpacks .gpu-head/head.tar.gz (`git archive HEAD`) into
# /tmp/ptm-head with the carried wheels beside it (benchmarks/ecosystem/wheels, and .whl/ for _setup.sh), and cd's
# there, so that edits in the working tree do not travel into the figures.
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
SRC=$PWD
H=/tmp/ptm-head
rm -rf "$H"; mkdir -p "$H"
tar -xzf .gpu-head/head.tar.gz -C "$H"
mkdir -p "$H/benchmarks/ecosystem"
ln -sfn "$SRC/benchmarks/ecosystem/wheels" "$H/benchmarks/ecosystem/wheels"
ln -sfn "$SRC/benchmarks/ecosystem/wheels" "$H/.whl"   # _setup.sh finds libcst, pyflakes, click there
cd "$H"
