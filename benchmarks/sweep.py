"""Real-code sweep: run the engine over every .py of installed packages (torch, lightning, accelerate by default),
for both targets, and count what went wrong.

    python benchmarks/sweep.py                      # everything, all cores
    python benchmarks/sweep.py --sample 150 -j 2    # a seeded random sample
    python benchmarks/sweep.py --json sweep.json    # also write the per-file problems

For each file and target: the engine must not crash (no exception, no PTM002 diagnostic), a changed output must
parse, and migrating the output again must change nothing. Files the engine does not accept (PTM001: syntax this
Python or libcst does not take) are counted, not failures. Nothing is imported or executed: the packages are only
located (importlib.util.find_spec) and their files read.
"""
from __future__ import annotations

import argparse
import ast
import functools
import importlib.util
import json
import os
import random
import signal
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from migrator.engine import PARSE_ERROR, RULE_CRASH, migrate  # noqa: E402
from migrator.selfcheck import SELF_CHECK  # noqa: E402
from migrator.files import SourceError, read_source  # noqa: E402

PACKAGES = ("torch", "lightning", "accelerate")
TARGETS = ("fabric", "accelerate")
PROBLEMS = ("crash", "unparsable_output", "second_run_change", "timeout", "second_run_crash", "self_check_changed_file")


def package_files(packages: Sequence[str] = PACKAGES, src: Optional[Path] = None) -> List[Path]:
    """Every .py file of the installed packages, sorted (found without importing them); with `src`, of the
    folders src/<package> instead (a copy of the sources, e.g. on a machine where they are not installed)."""
    out: List[Path] = []
    for name in packages:
        if src is not None:
            out.extend(sorted((src / name).rglob("*.py")))
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"sweep: package {name!r} is not installed")
        for loc in spec.submodule_search_locations:
            out.extend(sorted(Path(loc).rglob("*.py")))
    return out


# The library folders of issue #17 (309 files): none of them holds a training script of plain PyTorch, so
# `pt-migrate --check` over them must exit 0 (tests/test_sweep.py); benchmarks/tool_speed.py times them.
LIBRARY_FOLDERS = (("torch", "nn"), ("lightning", "fabric"), ("accelerate", ""))


def library_folders() -> List[Path]:
    """torch/nn, lightning/fabric and accelerate as installed (located without importing them)."""
    out = []
    for name, sub in LIBRARY_FOLDERS:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"sweep: package {name!r} is not installed")
        out.append(Path(list(spec.submodule_search_locations)[0]) / sub)
    return out


def sample(paths: Sequence[Path], n: Optional[int], seed: int = 0) -> List[Path]:
    if n is None or n >= len(paths):
        return list(paths)
    return sorted(random.Random(seed).sample(list(paths), n))


@functools.lru_cache(maxsize=8)
def fixed_sample(n: int = 150, candidates: int = 3, seed: int = 0, packages: Sequence[str] = PACKAGES) -> List[Path]:
    """A small reproducible sample for CI: the `candidates` smallest files that the engine's pre-scan lets through
    (so the rules really run on library code), plus a seeded random choice of the others."""
    from migrator.prescan import may_be_training_script

    passing, other = [], []
    for p in package_files(packages):
        try:
            text = p.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        (passing if may_be_training_script(text) else other).append((len(text), p))
    chosen = [p for _, p in sorted(passing)[:candidates]]
    rest = sorted(p for _, p in other)
    return sorted(chosen + random.Random(seed).sample(rest, min(n - len(chosen), len(rest))))


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def _parses(text: str) -> bool:
    try:
        ast.parse(text)
        return True
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False


def check_file(path: str, targets: Sequence[str] = TARGETS, timeout: float = 0) -> dict:
    """One file's record: {"path", "unreadable", per target: {"status", "problem", "detail", "seconds"}}."""
    rec: dict = {"path": path, "unreadable": None, "targets": {}}
    try:
        src = read_source(Path(path))
    except SourceError as e:
        rec["unreadable"] = str(e)
        return rec
    use_alarm = timeout and hasattr(signal, "SIGALRM")
    for target in targets:
        t0 = time.perf_counter()
        res = {"status": "unchanged", "problem": None, "detail": None}
        if use_alarm:
            signal.signal(signal.SIGALRM, _alarm)
            signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            r1 = migrate(src.text, target)
            if any(d.code == RULE_CRASH for d in r1.diagnostics):
                res.update(status="crash", problem="crash", detail=(r1.error or "") + "\n" + (r1.trace or ""))
            elif any(d.code == PARSE_ERROR for d in r1.diagnostics):
                res.update(status="not_accepted", detail=r1.error)
            elif any(d.code == SELF_CHECK for d in r1.diagnostics):
                # the engine's self-check fired: the file must then be left exactly as it was
                res.update(status="self_check", detail="\n".join(d.message for d in r1.diagnostics))
                if r1.changed or r1.code != src.text:
                    res.update(problem="self_check_changed_file")
            elif r1.changed:
                res["status"] = "changed"
                if not _parses(r1.code):
                    res.update(problem="unparsable_output", detail=r1.code)
                else:
                    r2 = migrate(r1.code, target)
                    if any(d.code == RULE_CRASH for d in r2.diagnostics):
                        res.update(problem="second_run_crash", detail=(r2.error or "") + "\n" + (r2.trace or ""))
                    elif r2.changed:
                        res.update(problem="second_run_change", detail=_diff(r1.code, r2.code))
            elif r1.is_training_script:
                res["status"] = "training_unchanged"
        except _Timeout:
            res.update(status="timeout", problem="timeout", detail=f"over {timeout} s")
        except BaseException:  # migrate() must never raise: any exception is a crash
            res.update(status="crash", problem="crash", detail=traceback.format_exc())
        finally:
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
        res["seconds"] = round(time.perf_counter() - t0, 3)
        rec["targets"][target] = res
    return rec


def _diff(a: str, b: str) -> str:
    import difflib
    return "".join(difflib.unified_diff(a.splitlines(True), b.splitlines(True), "first run", "second run"))


@dataclass
class Stats:
    files: int = 0
    unreadable: int = 0
    seconds: float = 0.0
    per_target: Dict[str, Dict[str, int]] = field(default_factory=dict)
    problems: List[dict] = field(default_factory=list)  # {"path", "target", "problem", "detail"}
    slowest: List[tuple] = field(default_factory=list)

    def add(self, rec: dict) -> None:
        self.files += 1
        if rec["unreadable"]:
            self.unreadable += 1
        for target, res in rec["targets"].items():
            counts = self.per_target.setdefault(target, {})
            counts[res["status"]] = counts.get(res["status"], 0) + 1
            if res["problem"]:
                if res["problem"] != res["status"]:
                    counts[res["problem"]] = counts.get(res["problem"], 0) + 1
                self.problems.append({"path": rec["path"], "target": target, "problem": res["problem"],
                                      "detail": res["detail"]})
            self.slowest.append((res.get("seconds", 0.0), rec["path"], target))

    def count(self, what: str, target: Optional[str] = None) -> int:
        targets = [target] if target else list(self.per_target)
        return sum(self.per_target.get(t, {}).get(what, 0) for t in targets)

    @property
    def failures(self) -> int:
        return sum(self.count(p) for p in PROBLEMS)

    def render(self) -> str:
        lines = [f"sweep: {self.files} files, {self.unreadable} unreadable, {self.seconds:.1f} s"]
        cols = ("changed", "training_unchanged", "self_check", "unchanged", "not_accepted") + PROBLEMS
        for t, counts in sorted(self.per_target.items()):
            lines.append(f"  {t:10s} " + ", ".join(f"{c} {counts.get(c, 0)}" for c in cols))
        lines.append(f"  totals: crashes {self.count('crash') + self.count('second_run_crash')}, unparsable outputs "
                     f"{self.count('unparsable_output')}, second-run changes {self.count('second_run_change')}, "
                     f"timeouts {self.count('timeout')}")
        for secs, path, target in sorted(self.slowest, reverse=True)[:5]:
            lines.append(f"  slow: {secs:7.2f} s  {target:10s} {path}")
        for p in self.problems[:20]:
            head = (p["detail"] or "").strip().splitlines()
            lines.append(f"  PROBLEM {p['problem']} [{p['target']}] {p['path']}: {head[-1] if head else ''}")
        return "\n".join(lines)


def sweep(paths: Iterable[Path], targets: Sequence[str] = TARGETS, jobs: int = 1, timeout: float = 120,
          progress: bool = False, deadline: Optional[float] = None) -> Stats:
    """Check every file; with `deadline` (seconds), stop then and count the files not done as timeouts."""
    paths = [str(p) for p in paths]
    stats = Stats()
    t0 = time.perf_counter()
    if jobs == 1:
        for i, p in enumerate(paths):
            if deadline is not None and time.perf_counter() - t0 > deadline:
                _unfinished(stats, paths[i:], targets, "the sweep's deadline came first")
                break
            stats.add(check_file(p, targets, timeout))
            if progress and i % 100 == 0:
                print(f"  {i}/{len(paths)}", file=sys.stderr, flush=True)
    else:
        _sweep_pool(paths, targets, jobs, timeout, progress, deadline, stats, t0)
    stats.seconds = time.perf_counter() - t0
    return stats


def _unfinished(stats: Stats, paths: Iterable[str], targets: Sequence[str], why: str) -> None:
    for p in paths:
        stats.add({"path": p, "unreadable": None, "targets": {
            t: {"status": "timeout", "problem": "timeout", "detail": why, "seconds": 0.0} for t in targets}})


def _sweep_pool(paths, targets, jobs, timeout, progress, deadline, stats, t0) -> None:
    from concurrent.futures import TimeoutError as FuturesTimeout

    # the biggest files first, so that the slow ones do not start last
    order = sorted(paths, key=lambda p: -_size(p))
    done: set = set()
    pool = ProcessPoolExecutor(max_workers=jobs)
    try:
        futures = {pool.submit(check_file, p, targets, timeout): p for p in order}
        left = None if deadline is None else max(deadline - (time.perf_counter() - t0), 1)
        try:
            for fut in as_completed(futures, timeout=left):
                try:
                    stats.add(fut.result())
                except BrokenProcessPool:
                    p = futures[fut]
                    stats.add({"path": p, "unreadable": None, "targets": {
                        t: {"status": "crash", "problem": "crash", "detail": "a worker process died (native crash?)",
                            "seconds": 0.0} for t in targets}})
                done.add(futures[fut])
                if progress and len(done) % 100 == 0:
                    print(f"  {len(done)}/{len(paths)}", file=sys.stderr, flush=True)
        except FuturesTimeout:
            _unfinished(stats, [p for p in order if p not in done], targets, "not finished by the sweep's deadline")
    finally:
        for proc in list(getattr(pool, "_processes", {}).values()):  # stop what still runs past the deadline
            try:
                proc.kill()
            except Exception:
                pass
        pool.shutdown(wait=False, cancel_futures=True)


def _size(p: str) -> int:
    try:
        return os.path.getsize(p)
    except OSError:
        return 0


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packages", nargs="+", default=list(PACKAGES))
    ap.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    ap.add_argument("--sample", type=int, default=None, help="a seeded random sample of this many files")
    ap.add_argument("--ci-sample", action="store_true", help="the fixed sample of tests/test_sweep.py")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--timeout", type=float, default=300, help="seconds per file and target (0: none)")
    ap.add_argument("--json", type=str, default=None, help="write the figures and problems here")
    ap.add_argument("--deadline", type=float, default=None, help="stop after this many seconds; files not done "
                    "count as timeouts")
    ap.add_argument("--src", type=Path, default=None, help="sweep SRC/<package> instead of the installed packages")
    args = ap.parse_args(argv)
    if args.ci_sample:
        paths = fixed_sample(args.sample or 150, seed=args.seed, packages=tuple(args.packages))
    else:
        paths = sample(package_files(args.packages, args.src), args.sample, args.seed)
    print(f"sweep: {len(paths)} files of {', '.join(args.packages)}; targets {', '.join(args.targets)}; "
          f"{args.jobs} job(s)", file=sys.stderr, flush=True)
    stats = sweep(paths, args.targets, args.jobs, args.timeout, progress=True, deadline=args.deadline)
    print(stats.render())
    if args.json:
        Path(args.json).write_text(json.dumps({"files": stats.files, "unreadable": stats.unreadable,
                                               "seconds": round(stats.seconds, 1), "per_target": stats.per_target,
                                               "problems": stats.problems}, indent=2))
    return 1 if stats.failures else 0


if __name__ == "__main__":
    sys.exit(main())
