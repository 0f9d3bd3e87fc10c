"""How fast is pt-migrate over real code, against a bare libcst parse-and-print round trip of the same files?

    python benchmarks/tool_speed.py                 # everything (several minutes: (b) and (c) run on one core)
    python benchmarks/tool_speed.py --subset-only   # torch.nn + lightning.fabric + accelerate only
    python benchmarks/tool_speed.py --skip-serial   # leave out the one-core pt-migrate run (c) over all files
    python benchmarks/tool_speed.py --subset-only --rounds 3   # (a), (b), (c) interleaved 3 times: ratios per round
    python benchmarks/tool_speed.py --single-only --single-runs 10   # the one-script figures only

Corpus: every .py file of the installed torch, lightning and accelerate packages, as the CLI selects them
(migrator.walk.python_files). Each measurement runs in its own subprocess, which starts the command and reports
its wall time and the peak RSS of the command's processes (resource.getrusage(RUSAGE_CHILDREN).ru_maxrss: the
largest single process, workers included, not their sum).

(a) pt-migrate --check -q over the files with the default jobs (-j 0: one process, or a pool of up to one worker
per core when the measured work is worth it); (b) a bare libcst round trip of the same files on one core
(`libcst.parse_module(src).code`, a file that libcst cannot parse is skipped); (c) pt-migrate -j 1.
Targets (issue #17), as ratios within one round, so that the load of a shared machine cancels out:
(b)/(a) >= 3 on the subset (pt-migrate takes at most a third of the round trip's wall time); (c)/(a) >= 1 (the
default never slower than one process), on the subset and on the fixtures' training scripts; one training script,
whole process, under 0.5 s. CPU seconds (user + system of the command and its workers) are printed beside each
wall time: on a loaded machine they say more than the wall time.

Before measuring, the project's modules are compiled to byte code (`compileall`, into the git-ignored
__pycache__ folders), as `pip install` does for an installed package: where PYTHONDONTWRITEBYTECODE is set, an
editable checkout would otherwise compile its ~60 modules again in every process (--no-compile measures that).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
CLI = [PY, "-m", "migrator"]

ROUND_TRIP = r"""
import sys, libcst
paths = open(sys.argv[1], encoding="utf-8").read().split("\n")
failed = 0
for p in paths:
    if not p:
        continue
    with open(p, "rb") as f:
        data = f.read()
    try:
        src = data.decode("utf-8")
        assert libcst.parse_module(src).code == src
    except Exception:
        failed += 1
print(failed)
"""

MEASURE = r"""
import json, resource, subprocess, sys, time
cmd = json.load(open(sys.argv[1], encoding="utf-8"))
t = time.perf_counter()
p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
wall = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": wall, "rc": p.returncode, "maxrss_kb": ru.ru_maxrss,
                  "cpu": ru.ru_utime + ru.ru_stime, "stderr": p.stderr.decode(errors="replace")[-2000:]}))
"""


def measure(cmd):
    """Run `cmd` in a fresh measuring process: wall time, exit status, peak RSS of its processes."""
    spec = file_list([])  # the command goes through a file: a few thousand paths exceed one argument's limit
    Path(spec).write_text(json.dumps([str(c) for c in cmd]), encoding="utf-8")
    out = subprocess.run([PY, "-c", MEASURE, spec], capture_output=True, text=True, cwd=REPO, check=True)
    os.unlink(spec)
    return json.loads(out.stdout)


def corpus():
    sys.path.insert(0, str(REPO))
    from migrator.walk import python_files
    import importlib.util
    roots = {}
    for name in ("torch", "lightning", "accelerate"):
        spec = importlib.util.find_spec(name)
        roots[name] = Path(spec.origin).parent
    files = {name: [str(p) for p in python_files(root)] for name, root in roots.items()}
    subset_dirs = [roots["torch"] / "nn", roots["lightning"] / "fabric", roots["accelerate"]]
    subset = [str(p) for d in subset_dirs for p in python_files(d)]
    return roots, files, subset


def size_mb(paths):
    return sum(os.path.getsize(p) for p in paths) / 1e6


def file_list(paths):
    f = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8")
    f.write("\n".join(paths))
    f.close()
    return f.name


def pt_migrate(paths, jobs):
    # paths go on the command line (a few thousand fit easily); -q: only errors and the summary; --debug: the
    # summary says how the work was split (one process or a pool)
    r = measure(CLI + list(paths) + ["--target", "fabric", "--check", "-q", "--debug", "-j", str(jobs)])
    plan = [ln for ln in r["stderr"].splitlines() if ln.startswith("pt-migrate: debug: the files went to ")]
    r["plan"] = plan[-1].split(" went to ", 1)[1] if plan else "?"
    return r


def round_trip(paths):
    return measure([PY, "-c", ROUND_TRIP, file_list(paths)])


def row(label, r, n, mb):
    plan = f"; {r['plan']}" if r.get("plan") else ""
    print(f"  {label:<44} {r['wall']:8.2f} s  cpu {r['cpu']:6.2f} s  {n / r['wall']:8.1f} files/s  "
          f"{mb / r['wall']:6.2f} MB/s  peak RSS {r['maxrss_kb'] / 1024:7.1f} MiB  (exit {r['rc']}{plan})", flush=True)


def load():
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def check_rc(r, what):
    if r["rc"] not in (0, 1):
        print(f"  !! {what} exited {r['rc']}: {r['stderr']}", flush=True)


def compare(title, paths, serial=True, rounds=1, round_trip_too=True):
    n, mb = len(paths), size_mb(paths)
    print(f"\n{title}: {n} files, {mb:.1f} MB", flush=True)
    out = {"files": n, "mb": mb, "rounds": []}
    for k in range(rounds):
        if rounds > 1:
            print(f" round {k + 1} of {rounds} (load average {load()})", flush=True)
        a = pt_migrate(paths, 0)
        check_rc(a, "pt-migrate -j 0")
        row(f"(a) pt-migrate --check, default -j ({os.cpu_count()} cores)", a, n, mb)
        one = {"a": a}
        if round_trip_too:
            b = round_trip(paths)
            row("(b) libcst parse + print, 1 core", b, n, mb)
            print(f"  ratio (b)/(a) = {b['wall'] / a['wall']:.2f}   (target >= 3 on the subset)", flush=True)
            one["b"] = b
        if serial:
            c = pt_migrate(paths, 1)
            check_rc(c, "pt-migrate -j 1")
            row("(c) pt-migrate --check -j 1", c, n, mb)
            if round_trip_too:
                print(f"  ratio (b)/(c) = {one['b']['wall'] / c['wall']:.2f}", flush=True)
            print(f"  ratio (c)/(a) = {c['wall'] / a['wall']:.2f}   (target >= 1: the default never slower than -j 1)",
                  flush=True)
            one["c"] = c
        out["rounds"].append(one)
    out.update(out["rounds"][-1])
    if rounds > 1:
        for key, label in (("b", "(b)/(a)"), ("c", "(c)/(a)")):
            if key in out:
                ratios = [r[key]["wall"] / r["a"]["wall"] for r in out["rounds"]]
                cpu = [r[key]["cpu"] / r["a"]["cpu"] for r in out["rounds"]]
                print(f"  {label} per round: {', '.join(f'{x:.2f}' for x in ratios)}; median "
                      f"{statistics.median(ratios):.2f}, spread {min(ratios):.2f}-{max(ratios):.2f} (CPU: median "
                      f"{statistics.median(cpu):.2f}, spread {min(cpu):.2f}-{max(cpu):.2f})", flush=True)
    summary = [line for line in out["a"]["stderr"].splitlines() if line.startswith("pt-migrate:")]
    if summary:
        print(f"  {summary[-1]}", flush=True)
    return out


def memory_growth(paths):
    print(f"\nPeak RSS of pt-migrate --check -j 0 as the file count grows (largest single process):", flush=True)
    out = []
    for frac in (4, 2, 1):
        part = paths[: len(paths) // frac]
        r = pt_migrate(part, 0)
        out.append((len(part), r["maxrss_kb"] / 1024, r["wall"]))
        print(f"  N/{frac:<2} {len(part):6d} files {size_mb(part):6.1f} MB  peak RSS {r['maxrss_kb'] / 1024:7.1f} MiB  "
              f"wall {r['wall']:6.2f} s", flush=True)
    return out


def single_script(script="examples/train.py", runs=5):
    """The whole process on one training script, `runs` times, and the fixed costs under it: the interpreter, the
    CLI's imports, libcst + the engine + the rules. On a shared machine the minimum wall time is the figure least
    disturbed by other work; CPU seconds are printed beside it."""
    cmd = CLI + [script, "--target", "fabric", "--diff"]
    rs = [measure(cmd) for _ in range(runs)]
    walls, cpus = [r["wall"] for r in rs], [r["cpu"] for r in rs]

    def fixed(code):
        ms = [measure([PY, "-c", code]) for _ in range(3)]
        return min(m["wall"] for m in ms), min(m["cpu"] for m in ms)

    bare, imp, eng = fixed("pass"), fixed("import migrator.cli"), fixed("import migrator.engine, migrator.rules")
    med = statistics.median(walls)
    print(f"\n{script} --target fabric --diff, whole process, {runs} runs: wall min {min(walls):.3f} s, median "
          f"{med:.3f} s; cpu min {min(cpus):.3f} s, median {statistics.median(cpus):.3f} s (walls: "
          f"{', '.join(f'{w:.2f}' for w in walls)}; target < 0.5 s of wall time on an idle machine, cpu <= 0.42 s;"
          f" load average {load()})", flush=True)
    print(f"  wall (cpu), min of 3: python -c pass {bare[0]:.3f} ({bare[1]:.3f}) s;  import migrator.cli "
          f"{imp[0]:.3f} ({imp[1]:.3f}) s;  import migrator.engine + rules (libcst) {eng[0]:.3f} ({eng[1]:.3f}) s",
          flush=True)
    return {"script": script, "median": med, "min": min(walls), "runs": walls, "cpu": cpus, "python": bare,
            "import_cli": imp, "import_engine": eng}


def fixtures():
    """The training scripts of the fixtures: every file reaches the engine (the pool's best case)."""
    return sorted(str(p) for p in REPO.glob("fixtures/*/before/*.py"))


def compile_modules():
    subprocess.run([PY, "-m", "compileall", "-q", "migrator", "rules"], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)


def commit():
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subset-only", action="store_true")
    ap.add_argument("--skip-serial", action="store_true", help="leave out (c) over all files")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--rounds", type=int, default=1, help="repeat (a), (b), (c) on the subset, interleaved")
    ap.add_argument("--no-compile", action="store_true", help="do not compile the project's modules first")
    ap.add_argument("--single-runs", type=int, default=5, help="runs of the one-script figure")
    ap.add_argument("--single-only", action="store_true", help="only the one-script figure")
    ap.add_argument("--no-fixtures", action="store_true", help="leave out the fixtures' training scripts")
    ap.add_argument("--repo", help="measure this checkout or export of pt-migrate instead of this one (a before / "
                                   "after comparison runs the same benchmark in both; an export needs its rules/ "
                                   "linked as migrator/rules, as an editable install maps it)")
    args = ap.parse_args()
    if args.repo:
        global REPO
        REPO = Path(args.repo).resolve()
    if not args.no_compile:
        compile_modules()
    roots, files, subset = corpus()
    from importlib.metadata import version
    print(f"pt-migrate tool speed, {datetime.datetime.now().isoformat(timespec='seconds')}", flush=True)
    print(f"command: {' '.join([Path(PY).name] + sys.argv)}", flush=True)
    print(f"python {platform.python_version()}, libcst {version('libcst')}, "
          f"{os.cpu_count()} cores, {platform.platform()}; load average {load()}; commit {commit()}; byte code "
          f"{'not compiled first' if args.no_compile else 'compiled first'}", flush=True)
    for name, fs in files.items():
        print(f"  {name}: {roots[name]} ({len(fs)} files, {size_mb(fs):.1f} MB)", flush=True)
    results = {"single": single_script(runs=args.single_runs)}
    if args.single_only:
        for script in sorted(str(p.relative_to(REPO)) for p in REPO.glob("fixtures/mnist_style/before/*.py")):
            results[script] = single_script(script, runs=args.single_runs)
        return
    results["subset"] = compare("Subset torch.nn + lightning.fabric + accelerate", subset, rounds=args.rounds)
    if not args.no_fixtures:
        results["fixtures"] = compare("The fixtures' training scripts (fixtures/*/before)", fixtures(),
                                      rounds=args.rounds, round_trip_too=False)
    if not args.subset_only:
        everything = [p for fs in files.values() for p in fs]
        results["all"] = compare("All of torch + lightning + accelerate", everything, serial=not args.skip_serial)
        results["memory"] = memory_growth(everything)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
