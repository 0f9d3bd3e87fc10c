"""Repro runner: migrate each failure-class repro to both targets and run it as a user would.

    python benchmarks/repros.py                                  # ../shared/repros, both targets
    python benchmarks/repros.py ../shared/repros/semantics       # the second set
    python benchmarks/repros.py -k eval_accuracy -k save_whole   # only scripts whose name contains these
    python benchmarks/repros.py --targets fabric --no-verify     # quicker: migrate and run only
    python benchmarks/repros.py --markdown repros.md --keep /tmp/repros   # also a markdown table; keep the files

For every script of the folder and every target:
1. migrate it the way issue #13's "Done when" asks: Fabric with `--accelerator cpu --devices 2 --strategy ddp`,
   Accelerate with `--accelerator cpu`, into a scratch folder (a copy of the repro folder);
2. run the original with `python SCRIPT` and the migrated script as a user would: Fabric with `python SCRIPT`,
   Accelerate with `torchrun --nproc_per_node 2 SCRIPT` (no `os._exit` wrapper, timeout 120 s per run, each in
   its own fresh copy of the folder, OMP_NUM_THREADS=1);
3. `pt-migrate verify ORIGINAL --target T --migrated MIGRATED --devices 2` and its result per check.

The exit column is the run's exit status; a run killed by a signal shows the signal (SIGABRT), and a run whose
output has gloo's "terminate called without an active exception" or torchrun's "Signal 6" is marked `abort` even
when torchrun turned it into exit status 1. Scripts listed in SKIP_RUNS (hogwild) are only checked to be left
unchanged (or changed only by TODO comments: `todo-only`). Exit status: 0 when every migrated script (or a SKIP_RUNS script left unchanged) ran with status 0 and
passed verify; 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FOLDER = (ROOT / ".." / "shared" / "repros").resolve()
TARGETS = ("fabric", "accelerate")
SKIP_RUNS = ("hogwild.py",)  # not data parallel: must be left unchanged; running it proves nothing here
CHECK_IDS = "abcdef"
ABORT_MARKS = ("terminate called without an active exception", "Signal 6", "SIGABRT")


@dataclass
class RunResult:
    rc: Optional[int] = None
    timed_out: bool = False
    abort: bool = False
    seconds: float = 0.0
    tail: str = ""

    def label(self) -> str:
        if self.rc is None and not self.timed_out:
            return "-"
        if self.timed_out:
            return "timeout"
        if self.rc < 0:
            try:
                text = signal.Signals(-self.rc).name
            except ValueError:
                text = f"signal {-self.rc}"
        else:
            text = str(self.rc)
        if self.abort and "SIG" not in text:
            text += " abort"
        return text

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out and not self.abort


@dataclass
class Row:
    script: str
    target: str
    state: str = "-"  # migrated, unchanged, error
    diagnostics: List[str] = field(default_factory=list)
    original: RunResult = field(default_factory=RunResult)
    migrated: RunResult = field(default_factory=RunResult)
    verify: Dict[str, str] = field(default_factory=dict)  # check id -> pass/fail/skip/info
    verify_rc: Optional[int] = None
    verify_failures: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        if self.script in SKIP_RUNS:
            return self.state in ("unchanged", "todo-only")
        return (self.state == "migrated" and self.migrated.ok and self.verify_rc == 0)


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("LOCAL_RANK", None)
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def _run(cmd: List[str], cwd: Path, timeout: float) -> RunResult:
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=str(cwd), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        out, _ = proc.communicate()
        timed_out = True
    res = RunResult(rc=proc.returncode, timed_out=timed_out, seconds=time.monotonic() - start)
    res.abort = any(m in (out or "") for m in ABORT_MARKS)
    res.tail = "\n".join((out or "").splitlines()[-25:])
    return res


def _without_todos(text: str) -> str:
    return "".join(ln for ln in text.splitlines(keepends=True) if not ln.lstrip().startswith("# TODO(pt-migrate)"))


def _stage(src: Path, dest: Path) -> None:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pt", "*.pth", "*.ckpt"))


def _migrate_cmd(script: Path, target: str, out: Path) -> List[str]:
    cmd = [sys.executable, "-m", "migrator", str(script), "--target", target, "--accelerator", "cpu", "-o", str(out),
           "--no-color"]
    if target == "fabric":
        cmd += ["--devices", "2", "--strategy", "ddp"]
    return cmd


def _user_cmd(target: str, script: str) -> List[str]:
    if target == "fabric":
        return [sys.executable, script]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", script]


def run_one(folder: Path, script: Path, target: str, work: Path, timeout: float, verify: bool,
            run_original: bool, original_cache: Dict[str, RunResult]) -> Row:
    row = Row(script.name, target)
    case = work / f"{script.stem}-{target}"
    mig_dir = case / "migrated"
    _stage(folder, mig_dir)
    out = mig_dir / script.name
    out.unlink()
    proc = subprocess.run(_migrate_cmd(script, target, out), cwd=str(ROOT), env=_env(), capture_output=True,
                          text=True, timeout=timeout)
    row.diagnostics = [ln for ln in proc.stderr.splitlines() if re.search(r":\d+:\d+: PTM\d+", ln)]
    if not out.exists() or proc.returncode == 2:
        row.state = "error"
        row.diagnostics.append(proc.stderr.strip()[-400:])
        return row
    row.state = "unchanged" if out.read_bytes() == script.read_bytes() else "migrated"
    if row.state == "migrated" and _without_todos(out.read_text()) == script.read_text():
        row.state = "todo-only"  # left as written, with TODO comments that say why
    if script.name in SKIP_RUNS:
        return row

    if run_original:
        if script.name not in original_cache:
            orig_dir = case / "original"
            _stage(folder, orig_dir)
            original_cache[script.name] = _run([sys.executable, script.name], orig_dir, timeout)
        row.original = original_cache[script.name]

    run_dir = case / "run"
    _stage(mig_dir, run_dir)
    row.migrated = _run(_user_cmd(target, script.name), run_dir, timeout)

    if verify:
        vcmd = [sys.executable, "-m", "migrator", "verify", str(script), "--target", target, "--migrated", str(out),
                "--devices", "2", "--json", "--timeout", str(timeout)]
        vp = subprocess.run(vcmd, cwd=str(ROOT), env=_env(), capture_output=True, text=True,
                            timeout=timeout * 4 + 60)
        row.verify_rc = vp.returncode
        try:
            report = json.loads(vp.stdout)
        except ValueError:
            row.verify_failures.append((vp.stderr or vp.stdout).strip()[-300:])
            return row
        if report.get("error"):
            row.verify_failures.append(report["error"])
        for c in report.get("checks", []):
            row.verify[c["id"]] = c["status"]
            if c["status"] == "fail":
                row.verify_failures.append(f"{c['id']} {c['name']}: {c['message']}")
    return row


def table(rows: List[Row], markdown: bool = False) -> str:
    head = ["script", "target", "migration", "original", "migrated run", "verify " + " ".join(CHECK_IDS), "ok"]
    body = []
    for r in rows:
        checks = " ".join({"pass": "P", "fail": "F", "skip": "s", "info": "i"}.get(r.verify.get(c, ""), "-")
                          for c in CHECK_IDS)
        body.append([r.script, r.target, r.state, r.original.label(), r.migrated.label(), checks,
                     "yes" if r.ok else "NO"])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(f"`{c}`" if i == 0 else c for i, c in enumerate(b)) + " |" for b in body]
        return "\n".join(lines)
    widths = [max(len(str(x[i])) for x in [head] + body) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head)] + [fmt.format(*b) for b in body])


def details(rows: List[Row], tail: int = 0) -> str:
    out = []
    for r in rows:
        if tail and r.migrated.rc is not None:
            out.append(f"## {r.script} -> {r.target}: last lines (original | migrated)")
            out.extend("  orig: " + ln for ln in r.original.tail.splitlines()[-tail:])
            out.extend("  migr: " + ln for ln in r.migrated.tail.splitlines()[-tail:])
        if r.ok:
            continue
        out.append(f"## {r.script} -> {r.target}: {r.state}")
        errors = [d for d in r.diagnostics if "error" in d.lower() or "PTM00" in d]
        for d in errors[:6]:
            out.append(f"  diag: {d}")
        if r.migrated.rc not in (None, 0) or r.migrated.timed_out or r.migrated.abort:
            out.append("  migrated run output (tail):")
            out.extend("    " + ln for ln in r.migrated.tail.splitlines()[-12:])
        for f in r.verify_failures:
            out.append(f"  verify: {f}")
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", default=str(DEFAULT_FOLDER))
    ap.add_argument("-k", "--only", action="append", default=[], help="scripts whose name contains this")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--no-original", action="store_true", help="do not run the originals")
    ap.add_argument("--markdown", help="also write the table (and failures) as markdown to this file")
    ap.add_argument("--json", help="also write the rows as JSON to this file")
    ap.add_argument("--tail", type=int, default=0, help="show the last N output lines of every run")
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temporary folder, removed)")
    args = ap.parse_args(argv)

    folder = Path(args.folder).resolve()
    scripts = sorted(p for p in folder.glob("*.py") if not args.only or any(k in p.name for k in args.only))
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    work = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="ptm-repros-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: List[Row] = []
    cache: Dict[str, RunResult] = {}
    try:
        for script in scripts:
            for target in targets:
                case = work / f"{script.stem}-{target}"
                if case.exists():
                    shutil.rmtree(case)
                row = run_one(folder, script, target, work, args.timeout, not args.no_verify, not args.no_original,
                              cache)
                rows.append(row)
                print(f"{row.script:<36} {row.target:<10} {row.state:<9} orig {row.original.label():<8} "
                      f"run {row.migrated.label():<8} verify {row.verify or '-'}", file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(table(rows))
    extra = details(rows, args.tail)
    if extra:
        print()
        print(extra)
    if args.markdown:
        Path(args.markdown).write_text(table(rows, markdown=True) + ("\n\n```\n" + extra + "\n```\n" if extra else "\n"),
                                       encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps([
            {"script": r.script, "target": r.target, "state": r.state, "ok": r.ok, "diagnostics": r.diagnostics,
             "original": r.original.__dict__, "migrated": r.migrated.__dict__, "verify": r.verify,
             "verify_rc": r.verify_rc, "verify_failures": r.verify_failures} for r in rows], indent=2),
            encoding="utf-8")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
