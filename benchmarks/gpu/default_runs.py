"""Fixtures migrated with default options and run as a user runs them, next to their originals, on this machine.

    python benchmarks/gpu/default_runs.py OUT [--jobs 12] [--cases "a b"] [--budget 420]

For each whole-script fixture and target (benchmarks/gpu/verify_cases.py):
1. the original, as its header says: `torchrun --standalone --nproc_per_node 1 ENTRY` where distributed.json says
   `"original": "torchrun"`, else `python ENTRY`;
2. `pt-migrate <copy of before/> --target T` with no other option (the device is the script's or the framework's);
3. the migrated script as the launch hint says on one machine: Fabric `python ENTRY`, Accelerate
   `torchrun --standalone --nproc_per_node 1 ENTRY`.
A pair counts against the migration when the original exits 0 and the migrated script does not, or aborts at exit
(gloo's or c10d's "terminate called"). No `os._exit`: the runs end as users' runs end.
Writes OUT/default-runs.tsv (case, target, original rc, migrated rc, seconds, note) and OUT/default-runs.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "gpu"))
from verify_cases import jobs  # noqa: E402

ABORT = ("terminate called", "Signal 6 (SIGABRT)")


def _run(cmd, cwd: Path, timeout: int):
    # pt-migrate from this checkout, wherever the run's folder is (the device image has no installed copy)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONUNBUFFERED="1", PYTHONPATH=path)
    start = time.time()
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        out, rc = p.stdout + p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out, rc = (e.stdout or b"").decode("utf-8", "replace") if isinstance(e.stdout, bytes) else (e.stdout or ""), \
            "timeout"
    return rc, round(time.time() - start, 1), out


def _starter(entry: str, torchrun: bool):
    return ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", entry]
            if torchrun else [sys.executable, entry])


def one(case: str, entry: str, target: str, work: Path, deadline: float):
    if time.time() > deadline:
        return case, target, "-", "-", 0, "skipped: time budget"
    src = ROOT / "fixtures" / case / "before"
    spec_path = ROOT / "fixtures" / case / "distributed.json"
    spec = json.loads(spec_path.read_text()) if spec_path.exists() else {}
    base = work / f"{case}-{target}"
    shutil.rmtree(base, ignore_errors=True)
    shutil.copytree(src, base / "orig")
    shutil.copytree(src, base / "mig")
    left = int(max(30, min(240, deadline + 120 - time.time())))
    orc, osec, oout = _run(_starter(entry, spec.get("original") == "torchrun"), base / "orig", left)
    mrc, _, mout = _run([sys.executable, "-m", "migrator", ".", "--target", target, "--no-color"], base / "mig", 120)
    if mrc not in (0, 1):
        return case, target, orc, "-", osec, f"migration exit {mrc}: {mout.strip().splitlines()[-1:]}"
    left = int(max(30, min(240, deadline + 120 - time.time())))
    rrc, rsec, rout = _run(_starter(entry, target == "accelerate"), base / "mig", left)
    note = ""
    if any(a in rout for a in ABORT):
        note = "abort at exit"
    elif rrc != 0:
        lines = [l for l in rout.strip().splitlines() if l.strip()]
        err = next((l for l in reversed(lines) if "Error" in l or "error" in l), lines[-1] if lines else "")
        note = err.strip()[:240]
    (base / "original.log").write_text(oout)
    (base / "migrated.log").write_text(rout)
    return case, target, orc, rrc, rsec, note


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--cases", default="")
    ap.add_argument("--budget", type=int, default=420)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path("/tmp/ptm-default-runs")
    work.mkdir(parents=True, exist_ok=True)
    wanted = set(a.cases.split())
    todo = [(c, e, t) for c, e, t, _ in jobs() if not wanted or c in wanted]
    deadline = time.time() + a.budget
    with ThreadPoolExecutor(a.jobs) as pool:
        rows = list(pool.map(lambda j: one(*j, work, deadline), todo))
    with open(out / "default-runs.tsv", "w") as f:
        for r in rows:
            f.write("\t".join(str(x) for x in r) + "\n")
    ran = [r for r in rows if r[2] == 0]
    broke = [r for r in ran if r[3] != 0 or r[5] == "abort at exit"]
    lines = [f"# Fixtures, default options, run as users run them ({len(todo)} pairs)", "",
             f"- originals that ran (exit 0): {len(ran)}; skipped by the budget: "
             f"{sum(r[5].startswith('skipped') for r in rows)}",
             f"- of those, migrated scripts that failed or aborted: **{len(broke)}**", "",
             "| case | target | original | migrated | note |", "|---|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[5]} |" for r in rows if r in broke or (r[2] != 0 and r[2] != "-")]
    (out / "default-runs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:5]))
    subprocess.run(["tar", "-czf", str(out / "default-runs-logs.tar.gz"), "-C", str(work), "."], check=False)


if __name__ == "__main__":
    main()
