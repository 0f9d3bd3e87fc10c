"""The verify jobs of call1_verify.sh, one line each: `case entry target lock`.

Every fixtures/<case> with goldens for both targets, except noop_* and static_only.json (left unchanged on purpose):
the whole-script fixtures, the GPU-only ones (gpu_only.json) and the hand-written distributed originals
(distributed.json; verify runs those on one process, and where that fails because the original shuffles through its
own DistributedSampler it compares rank 0 of N processes with the original under torchrun, Fabric only).
Entry: the file with a main guard, else the first. lock: the MASTER_PORT the original hard-codes ("-" if none):
two jobs with the same port run one after the other (flock). The costliest jobs come first, so that the short ones
fill the end of the parallel run.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PORT = re.compile(r"""MASTER_PORT["']\]\s*=\s*["'](\d+)""")


def jobs(targets=("fabric", "accelerate")):
    out = []
    for case in sorted((ROOT / "fixtures").iterdir()):
        files = sorted((case / "before").glob("*.py"))
        if not files or case.name.startswith("noop_") or (case / "static_only.json").exists():
            continue
        if not all((case / t).is_dir() for t in ("fabric", "accelerate")):
            continue
        entry = next((f for f in files if "__main__" in f.read_text()), files[0])
        text = "\n".join(f.read_text() for f in files)
        port = PORT.search(text)
        cost = 2 if (case / "gpu_only.json").exists() else 1 if (case / "distributed.json").exists() else 0
        for t in targets:
            out.append((-cost, case.name, entry.name, t, port.group(1) if port else "-"))
    return [o[1:] for o in sorted(out)]


if __name__ == "__main__":
    targets = tuple(sys.argv[1:]) or ("fabric", "accelerate")
    for j in jobs(targets):
        print(*j)
