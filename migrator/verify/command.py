"""`pt-migrate verify`: prove a migration by running the original and the migrated script side by side.

Three runs, each a subprocess under migrator.verify.runner (which observes the script without editing it):

  original, 1 process      the user's script as it is
  migrated, 1 process      the migrated script on one device (Fabric is held to devices=1)
  migrated, N processes    Fabric: `python` (Fabric starts the other ranks itself) or `torchrun` when the script
                           takes its device count from the environment; Accelerate: `torchrun`

Each run stops after --steps optimizer steps. The checks compare what the runs recorded; see CHECKS.
"""
from __future__ import annotations

import glob
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import click

from migrator.options import TARGETS, Options
from migrator.verify.evaluation import ENV_EVAL_JITTER, ENV_EVAL_REFERENCE

RTOL = 1e-4
ATOL = 1e-5
SYNC_RTOL = 1e-6
# Check a's tolerance (rtol, atol) follows the lowest precision either run trained in (an autocast region seen in a
# training forward, or the models' parameter dtype). float32 kernels agree to rounding; fp16 and bf16 round at
# 2^-11 and 2^-8, and a framework's autocast region is not the script's own (it covers the model's forward only,
# the script's block may also cover the loss), so their losses differ by that much (seen on an H200: 1e-4 to 2e-4
# relative in 20 steps).
TOLERANCES = {"float32": (RTOL, ATOL), "float16": (2e-3, 1e-4), "bfloat16": (1e-2, 1e-3)}

CHECKS = {
    "a": "parity",
    "b": "multi-process",
    "c": "sync",
    "d": "sharding",
    "e": "output once",
    "f": "throughput",
    "g": "schedule",
    "h": "initial weights",
    "i": "noise per rank",
    "j": "checkpoints",
    "k": "written once",
    "l": "evaluation",
}
DEFAULT_CHECKS = "abcdefk"
FULL_CHECKS = "ghijl"  # only with --full: the script runs to its end
FULL_STEPS = 10 ** 9

# Environment of an outer distributed launch that must not leak into the runs.
_DIST_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE", "ROLE_RANK",
             "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LT_CLI_USED", "LT_ACCELERATOR",
             "LT_STRATEGY", "LT_DEVICES", "LT_NUM_NODES", "LT_PRECISION")
_DIST_ENV_PREFIXES = ("TORCHELASTIC_", "ACCELERATE_", "PTM_VERIFY_")

# Lines that the frameworks write themselves (they go to stderr today; filtered in case they reach stdout).
_FRAMEWORK_LINE = re.compile(
    r"^(\[rank: ?\d+\]\s*)?("
    r"Initializing distributed:|distributed_backend=|All distributed processes registered|-{20,}$|Seed set to|"
    r"(GPU|TPU|HPU|IPU) available:|LOCAL_RANK:|You are using a CUDA device|Using (bfloat16|16bit|native)|"
    r"\[W\d*|\[I\d*|W\d{4} |I\d{4} |Warning:|.*Warning: |WARNING:|NCCL INFO|\*{20,}|Setting OMP_NUM_THREADS"
    r")"
)
_NUMBER = re.compile(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?")


@dataclass
class Run:
    name: str
    cmd: List[str]
    cwd: str
    out_dir: str
    rc: Optional[int] = None
    timed_out: bool = False
    wall_s: float = 0.0
    stdout: str = ""
    stderr: str = ""
    results: List[Dict[str, Any]] = field(default_factory=list)

    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out and bool(self.results)

    def failure(self) -> str:
        if self.timed_out:
            return f"{self.name} run timed out after {self.wall_s:.0f}s" + _tail(self.stderr)
        if self.rc != 0:
            errors = [r["error"] for r in self.results if r.get("error")]
            why = f": {errors[0]}" if errors else _tail(self.stderr)
            return f"{self.name} run exited with code {self.rc}{why}"
        if not self.results:
            return f"{self.name} run wrote no results (the script never reached the runner's end; no optimizer step?)"
        return ""

    def summary(self) -> Dict[str, Any]:
        return {
            "cmd": self.cmd, "cwd": self.cwd, "rc": self.rc, "timed_out": self.timed_out,
            "wall_s": round(self.wall_s, 3), "stderr_tail": self.stderr[-2000:], "stdout_tail": self.stdout[-2000:],
            "ranks": [{k: r.get(k) for k in ("rank", "world_size", "status", "error", "steps", "samples",
                                              "param_checksum", "param_hash", "models", "losses", "autocast_dtype",
                                              "param_dtypes", "deterministic")}
                      for r in self.results],
        }


@dataclass
class Check:
    id: str
    status: str  # pass, fail, skip, info
    message: str
    data: Dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return CHECKS[self.id]

    def as_dict(self) -> Dict[str, Any]:
        return {"id": self.id, "name": self.name, "status": self.status, "message": self.message, "data": self.data}


def _tail(text: str, n: int = 6) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return ("\n    " + "\n    ".join(lines[-n:])) if lines else ""


# ---- preparing the folders ------------------------------------------------------------------------------------------

def _stage(src_folder: Path, dest: Path, inner: Optional[Path] = None) -> None:
    """Copy the folder's .py files (sibling imports keep working); link everything else (data files, configs).
    `inner`, a folder below src_folder (the script's, under --cwd), is staged the same way, with each folder on the
    way to it, instead of being linked: the migration then writes only to copies."""
    dest.mkdir(parents=True)
    for entry in sorted(src_folder.iterdir()):
        if inner is not None and (entry == inner or entry in inner.parents):
            _stage(entry, dest / entry.name, None if entry == inner else inner)
        elif entry.name.startswith(".") or entry.name == "__pycache__":
            continue
        elif entry.is_file() and entry.suffix == ".py":
            shutil.copy2(entry, dest / entry.name)
        else:
            try:
                os.symlink(entry.resolve(), dest / entry.name)
            except OSError:
                pass


def _under(path: Path, folder: Path) -> bool:
    return folder.resolve() in path.resolve().parents


def _stage_for(script: Path, cwd: Optional[Path], dest: Path) -> Path:
    """Stage the script's folder, or `cwd` down to the script, at `dest` (where the runs start); the staged script."""
    if cwd is None:
        _stage(script.parent, dest)
        return dest / script.name
    _stage(cwd, dest, script.parent if script.parent != cwd else None)
    return dest / script.relative_to(cwd)


def _imported_siblings(folder: Path, script_name: str) -> List[Path]:
    """The script and the sibling modules it imports, directly or through each other."""
    from migrator.project import _IMPORT

    siblings = {p.stem: p for p in folder.glob("*.py") if not p.is_symlink()}
    todo, seen = [folder / script_name], []
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.append(path)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for a, b in _IMPORT.findall(text):
            name = (a or b).split(".")[0]
            if name in siblings and siblings[name] not in seen:
                todo.append(siblings[name])
    return seen


def _migrate_folder(folder: Path, script_name: str, target: str, options: Options) -> Tuple[Optional[str], List[str]]:
    """Migrate the staged copy of the script, and the siblings it imports, in place. Returns (error, notes)."""
    from migrator.runner import migrate_paths

    files = [str(p) for p in _imported_siblings(folder, script_name)]
    error: Optional[str] = None
    notes: List[str] = []
    for outcome in migrate_paths(files, target, options, jobs=1):
        name = Path(outcome.path).name
        if outcome.error:
            if name == script_name:
                error = outcome.error
            else:
                notes.append(f"{name}: not migrated: {outcome.error}")
            continue
        if outcome.changed:
            Path(outcome.path).write_bytes(outcome.new_bytes)
            if name != script_name:
                notes.append(f"{name}: migrated too (the script imports it)")
        elif name == script_name:
            notes.append(f"{name}: the migration changed nothing")
    return error, notes


def _fabric_launch_mode(source: str) -> str:
    """'python' when the script's Fabric(...) names its device count and calls launch(); 'fabric-run' when it never
    calls launch(); 'torchrun' otherwise (devices from the environment)."""
    if ".launch(" not in source:
        return "fabric-run"
    if re.search(r"Fabric\((?:[^()]|\([^()]*\))*?devices\s*=\s*['\"]?\d", source):
        return "python"
    return "torchrun"


# ---- running --------------------------------------------------------------------------------------------------------

def _deterministic_env(accelerator: str, deterministic: Optional[bool]) -> Dict[str, str]:
    """The runner's switch for deterministic kernels: on by default with CUDA (cuDNN's convolutions and some
    reductions otherwise differ run to run, by 1e-4 to 1e-3 relative in a few steps), off on CPU."""
    if deterministic is None:
        deterministic = accelerator == "cuda"
    if not deterministic:
        return {}
    from migrator.verify.runner import ENV_DETERMINISTIC

    return {ENV_DETERMINISTIC: "1", "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG", ":4096:8")}


def _env(accelerator: str, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in _DIST_ENV and not k.startswith(_DIST_ENV_PREFIXES)}
    env["PYTHONUNBUFFERED"] = "1"
    if accelerator == "cpu":
        env["OMP_NUM_THREADS"] = "1"
        env["CUDA_VISIBLE_DEVICES"] = ""
    # the runner must be importable whatever the script's folder holds
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), root) if p)
    env.update(extra or {})
    return env


def _execute(run: Run, env: Dict[str, str], timeout: float) -> Run:
    start = time.perf_counter()
    proc = subprocess.Popen(run.cmd, cwd=run.cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        run.timed_out = True
        _kill_group(proc)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            out, err = b"", b""
    finally:
        _kill_group(proc)  # ranks left behind by a launcher that exited first
    run.wall_s = time.perf_counter() - start
    run.rc = proc.returncode
    run.stdout = out.decode("utf-8", "replace")
    run.stderr = err.decode("utf-8", "replace")
    for path in sorted(glob.glob(os.path.join(run.out_dir, "rank*.json"))):
        try:
            with open(path) as f:
                run.results.append(json.load(f))
        except (OSError, ValueError):
            pass
    run.results.sort(key=lambda r: (r.get("rank", 0), r.get("pid", 0)))
    return run


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass


def _runner_cmd(steps: int, out_dir: str, script: Path, script_args: List[str], single: bool = False) -> List[str]:
    cmd = ["-m", "migrator.verify.runner", "--steps", str(steps), "--out", out_dir]
    if single:
        cmd.append("--single-device")
    return cmd + ["--", str(script)] + list(script_args)


def _torchrun(n: int) -> List[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", str(n)]


# ---- checks -------------------------------------------------------------------------------------------------------

def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _rank0(run: Run) -> Dict[str, Any]:
    return next((r for r in run.results if r.get("rank") == 0), run.results[0])


def _precision(*records: Dict[str, Any]) -> str:
    """The lowest precision any of the runs trained in: "bfloat16", "float16" or "float32"."""
    seen = set()
    for r in records:
        seen.add(r.get("autocast_dtype"))
        seen.update(str(d).replace("torch.", "") for d in r.get("param_dtypes") or [])
    return next((p for p in ("bfloat16", "float16") if p in seen), "float32")


def check_parity(orig: Run, single: Run, where: str = "on 1 process") -> Check:
    for r in (orig, single):
        if not r.ok():
            return Check("a", "fail", r.failure())
    o, mi = _rank0(orig), _rank0(single)
    precision = _precision(o, mi)
    rtol, atol = TOLERANCES[precision]
    tol = f"rtol {rtol:g}, atol {atol:g}" + ("" if precision == "float32" else f" for {precision}")
    lo, lm = o["losses"], mi["losses"]
    if not lo:
        return Check("a", "fail", "the original run recorded no loss (no backward call before the steps ran out)")
    if len(lo) != len(lm):
        return Check("a", "fail", f"the original recorded {len(lo)} losses in {o['steps']} steps, the "
                                  f"migrated script {len(lm)} in {mi['steps']} steps",
                     {"original": lo, "migrated": lm})
    data: Dict[str, Any] = {"original": lo, "migrated": lm, "precision": precision, "rtol": rtol, "atol": atol}
    worst = 0.0
    for i, (a, b) in enumerate(zip(lo, lm)):
        if not (_finite(a) and _finite(b)) or abs(a - b) > atol + rtol * abs(a):
            step = o["loss_steps"][i]
            if _finite(a) and _finite(b):
                data["max_abs_diff"] = max(abs(x - y) for x, y in zip(lo, lm) if _finite(x) and _finite(y))
            return Check("a", "fail", f"step {step}: original loss {a!r}, migrated {b!r} (tolerance {tol})", data)
        worst = max(worst, abs(a - b))
    data["max_abs_diff"] = worst
    return Check("a", "pass", f"{len(lo)} losses match the original {where} (max |diff| {worst:.2g}; {tol})", data)


_SPAWNS = re.compile(r"\b(mp|multiprocessing)\.(spawn|start_processes)\(|\bspawn\(\w+,\s*args=")


def _parity(orig: Run, single: Run, orig_n: Run, multi: Run, n: int, on_n: bool, unordered: bool,
            spawns: bool = False) -> Check:
    """Check a: one process against one process; where the original shuffles through its own DistributedSampler,
    rank 0 of N processes against the original under torchrun (Fabric), or a skip that says why (Accelerate). An
    original that starts its own processes (mp.spawn) trains in processes the runner does not observe, and under
    torchrun it would start them once per rank: a skip that says so."""
    one = check_parity(orig, single)
    if orig.ok() and not single.ok():  # a crash on one process the original did not have is a fail, never a skip
        return one
    if one.status != "pass" and spawns and orig.results and not _rank0(orig).get("losses"):
        return Check("a", "skip", "the original starts its own processes (mp.spawn), whose steps the runner does not "
                                  "observe, and torchrun would start them once per rank: per-step losses cannot be "
                                  "compared (" + one.message + ")")
    if one.status == "pass" or not (on_n or unordered):
        return one
    if unordered:
        return Check("a", "skip", "the original shuffles through its own DistributedSampler, whose order Accelerate's "
                                  "loader does not reproduce: per-step losses cannot be compared (" + one.message + ")")
    return check_parity(orig_n, multi, f"on rank 0 of {n} processes")


def check_multi(multi: Run, n: int, steps: int) -> Check:
    res = multi.results
    data = {"ranks": [r.get("rank") for r in res], "world_sizes": [r.get("world_size") for r in res],
            "wall_s": round(multi.wall_s, 2)}
    if multi.timed_out:
        return Check("b", "fail", multi.failure(), data)
    problems: List[str] = []
    if multi.rc != 0:
        problems.append(multi.failure())
    if len(res) != n:
        problems.append(f"{len(res)} of {n} processes wrote results")
    sizes = sorted({r.get("world_size") for r in res})
    if res and sizes != [n]:
        problems.append(f"world size {', '.join(map(str, sizes))}, expected {n} (each process trained alone: the "
                        f"device count reached no process group)" if sizes == [1] else
                        f"world size {', '.join(map(str, sizes))}, expected {n}")
    ranks = Counter(r.get("rank") for r in res)
    dup = sorted(k for k, c in ranks.items() if c > 1)
    if dup:
        problems.append(f"{ranks[dup[0]]} processes reported rank {dup[0]}")
    for r in res:
        bad = [x for x in r.get("losses", []) if not _finite(x)]
        if bad:
            problems.append(f"rank {r['rank']}: non-finite loss {bad[0]}")
        if not r.get("losses"):
            problems.append(f"rank {r['rank']}: no loss recorded")
        if r.get("steps", 0) < steps and r.get("status") != "finished":
            problems.append(f"rank {r['rank']}: stopped after {r.get('steps')} of {steps} steps ({r.get('status')}"
                            f"{': ' + r['error'] if r.get('error') else ''})")
    if problems:
        return Check("b", "fail", "; ".join(dict.fromkeys(problems)), data)
    return Check("b", "pass", f"{n} processes, world size {n}, {min(r['steps'] for r in res)} steps each, finite "
                              f"losses on every rank ({multi.wall_s:.1f}s)", data)


def _usable(multi: Run, n: int) -> Optional[str]:
    if len(multi.results) < 2:
        return f"needs {n} ranks' results; the multi-process run gave {len(multi.results)}"
    return None


def check_sync(multi: Run, n: int) -> Check:
    why = _usable(multi, n)
    if why:
        return Check("c", "fail" if multi.failure() else "skip", why)
    res = multi.results
    sums = [r.get("param_checksum") for r in res]
    data = {"checksums": sums, "hashes": [r.get("param_hash") for r in res], "steps": [r.get("steps") for r in res]}
    if any(s is None for s in sums) or not any(r.get("param_count") for r in res):
        return Check("c", "skip", "no model forward was seen, so no parameters to compare", data)
    steps = {r.get("steps") for r in res}
    if len(steps) != 1:
        return Check("c", "skip", f"ranks stopped after different step counts {sorted(steps)}", data)
    ref = res[0]
    for r in res[1:]:
        if r.get("param_hash") == ref.get("param_hash"):
            continue
        a, b = ref["param_checksum"], r["param_checksum"]
        if abs(a - b) <= SYNC_RTOL * max(1.0, abs(a)):
            continue
        return Check("c", "fail", f"after step {ref['steps']} rank {ref['rank']} has parameter sum {a:.10g} and rank "
                                  f"{r['rank']} {b:.10g}: the replicas drifted apart, so gradients were not "
                                  f"synchronized (model not passed to setup/prepare, or optimizer stepping a "
                                  f"local copy)", data)
    exact = len({r.get("param_hash") for r in res}) == 1
    return Check("c", "pass", f"parameters identical on all {len(res)} ranks after step {ref['steps']}"
                              f"{'' if exact else ' (within rtol %g)' % SYNC_RTOL}", data)


def check_coverage(orig: Run, multi: Run, n: int) -> Optional[Check]:
    """d, when both runs went to their end (--full): the N ranks together train on as many samples as the original
    did on one process (a loader sharded twice, by the script's DistributedSampler and again by prepare, gives
    each rank half of its shard). None when it cannot tell (a run stopped at the step limit, or failed)."""
    if not orig.ok() or not multi.results or _usable(multi, n):
        return None
    o = _rank0(orig) or {}
    if o.get("status") != "finished" or any(r.get("status") != "finished" for r in multi.results):
        return None
    want, got = o.get("samples") or 0, sum(r.get("samples") or 0 for r in multi.results)
    if want and got < 0.9 * want:
        return Check("d", "fail", f"the {n} ranks together trained on {got} samples, the original on {want}: part "
                                  f"of the data is never seen (a loader sharded twice? a DistributedSampler kept "
                                  f"under setup/prepare)", {"original_samples": want, "ranks_samples": got})
    return None


def check_sharding(multi: Run, n: int, original_source: str = "") -> Check:
    """Ranks must not train on identical batches. A script with no DataLoader (full-batch training, or batches cut
    by hand from one tensor) has nothing the framework can shard: every rank then trains on the same data, which
    gives the original's model without a speed-up; that is reported as a skip with the reason, not a failure."""
    why = _usable(multi, n)
    if why:
        return Check("d", "fail" if multi.failure() else "skip", why)
    hand_fed = original_source and "DataLoader" not in original_source
    res = multi.results
    ref = res[0]
    for r in res[1:]:
        pairs = [(i + 1, a, b) for i, (a, b) in enumerate(zip(ref.get("batch_hashes", []), r.get("batch_hashes", [])))
                 if a is not None and b is not None]
        if not pairs:
            return Check("d", "skip", "no training forward with a tensor input was seen")
        same = [s for s, a, b in pairs if a == b]
        if same and len(same) == len(pairs) and hand_fed:
            return Check("d", "skip", f"every rank received the same batches ({len(same)} of {len(pairs)} steps): the "
                                      f"script feeds tensors by hand (no DataLoader), so nothing is sharded; each "
                                      f"rank trains on all the data (the original's model, no speed-up)",
                         {"identical_steps": same})
        if same and len(same) == len(pairs):
            return Check("d", "fail", f"rank {ref['rank']} and rank {r['rank']} received identical batches at every "
                                      f"step, first at step {same[0]} ({len(same)} of {len(pairs)} steps): every rank "
                                      f"trained on the same data. Probably the DataLoader was not passed through "
                                      f"setup_dataloaders/prepare, or the batches are cut by hand from a tensor.",
                         {"identical_steps": same})
        if same:
            return Check("d", "fail", f"rank {ref['rank']} and rank {r['rank']} received identical batches at step "
                                      f"{same[0]} ({len(same)} of {len(pairs)} steps)", {"identical_steps": same})
    k = min(len(r.get("batch_hashes", [])) for r in res)
    return Check("d", "pass", f"every rank received different batches at each of {k} steps")


def _normalize(line: str) -> str:
    return _NUMBER.sub("#", line.strip())


def _script_lines(text: str) -> List[str]:
    return [_normalize(ln) for ln in text.splitlines() if ln.strip() and not _FRAMEWORK_LINE.match(ln.strip())]


_RANK_IN_LINE = re.compile(r"rank\W{0,3}(\d+)", re.I)


def _reports_rank(kind: str, text: str) -> bool:
    """The lines of this kind name different ranks ("rank 0 saw ...", "[rank 1] ..."): each rank reports itself on
    purpose, as the original does under torchrun (PTM108 keeps such prints on every rank)."""
    ranks = {m.group(1) for raw in text.splitlines() if _normalize(raw) == kind for m in _RANK_IN_LINE.finditer(raw)}
    return len(ranks) > 1


def check_output(single: Run, multi: Run, n: int, target: str = "fabric") -> Check:
    if not single.ok():
        return Check("e", "fail", single.failure())
    if not multi.results:
        return Check("e", "fail", multi.failure() or "the multi-process run wrote no results")
    one, many = Counter(_script_lines(single.stdout)), Counter(_script_lines(multi.stdout))
    if not one:
        return Check("e", "pass", "the script printed nothing to standard output")
    if all("stdout_lines" in r for r in multi.results):
        # each rank's own lines: a kind printed by more than one rank (a per-epoch line that rank 0 alone prints
        # more often, because the step limit reaches more epochs on N processes, is not one)
        per_rank = [Counter(_script_lines("\n".join(r["stdout_lines"]))) for r in multi.results]
        repeated = [(ln, c, many[ln]) for ln, c in one.items() if sum(1 for pr in per_rank if pr[ln]) > 1
                    and not _reports_rank(ln, multi.stdout)]
    else:  # records of an older runner: counts in the merged output
        repeated = [(ln, c, many[ln]) for ln, c in one.items() if many[ln] >= n * c and many[ln] > c
                    and not _reports_rank(ln, multi.stdout)]
    if repeated:
        ln, c, m = repeated[0]
        example = next((raw for raw in multi.stdout.splitlines() if _normalize(raw) == ln), ln)
        fix = ("fabric.print or `if fabric.is_global_zero:`" if target == "fabric" else
               "accelerator.print or `if accelerator.is_main_process:`")
        return Check("e", "fail", f"{len(repeated)} kind(s) of line printed by every rank: lines like "
                                  f"{example.strip()!r} (numbers aside) appear {m} times with {n} processes, {c} "
                                  f"with 1. A plain print runs on every rank; use {fix}",
                     {"lines": [{"line": a, "single": b, "multi": c2} for a, b, c2 in repeated[:20]]})
    return Check("e", "pass", f"{sum(one.values())} script line(s) appear no more often with {n} processes")


def check_written_once(multi: Run, n: int, target: str = "fabric") -> Check:
    """k: no path is written by more than one rank. The runner records, per process, each file opened for writing
    (`open` in a w/a/x/+ mode, `torch.save`, a SummaryWriter's log folder, a wandb run) and the script line that
    wrote it; files written inside `fabric.save` / `accelerator.save` are exempt (the framework picks the rank)."""
    why = _usable(multi, n)
    if why:
        return Check("k", "fail" if multi.failure() else "skip", why)
    by_path: Dict[str, List[Tuple[int, Dict[str, Any]]]] = {}
    for r in multi.results:
        for w in r.get("writes") or []:
            if not w.get("exempt"):
                by_path.setdefault(w["path"], []).append((r.get("rank", 0), w))

    def shown(path: str) -> str:
        return os.path.relpath(path, multi.cwd) if multi.cwd and path.startswith(multi.cwd + os.sep) else path

    files = {shown(p): sorted({rank for rank, _ in ws}) for p, ws in sorted(by_path.items())}
    data = {"files": dict(list(files.items())[:50]), "count": len(files)}
    shared = [(p, ws) for p, ws in sorted(by_path.items()) if len({rank for rank, _ in ws}) > 1]
    if shared:
        path, ws = shared[0]
        ranks = sorted({rank for rank, _ in ws})
        w = ws[0][1]
        guard = "if fabric.is_global_zero:" if target == "fabric" else "if accelerator.is_main_process:"
        first = ("with fabric.rank_zero_first(local=False):" if target == "fabric"
                 else "with accelerator.main_process_first():")
        data["shared"] = [shown(p) for p, _ in shared][:20]
        return Check("k", "fail", f"{len(shared)} file(s) written by more than one rank: {shown(path)} by ranks "
                                  f"{', '.join(map(str, ranks))} ({w.get('how')} at {w.get('line')}). Every rank "
                                  f"writes the same path: write it on the main process only (`{guard}`; a download or "
                                  f"a file prepared once: `{first}`), or under a path that names the rank", data)
    limited = any(r.get("status") == "stopped" for r in multi.results)
    return Check("k", "pass", f"{len(files)} file(s) written, each by one rank"
                              + (" (up to the step limit; --full sees the end of the run)" if limited else ""), data)


def _rate(r: Dict[str, Any]) -> Tuple[Optional[float], Optional[float], float, int]:
    """(samples/s, steps/s, seconds, samples) over steps 2..K: the first step carries start-up and set-up."""
    times, samples = r.get("step_times") or [], r.get("samples_per_step") or []
    if len(times) >= 2 and times[-1] > times[0]:
        dt = times[-1] - times[0]
        s = sum(samples[1:len(times)])
        return (s / dt if s else None), (len(times) - 1) / dt, dt, s
    return None, None, 0.0, 0


def check_throughput(single: Run, multi: Run, n: int) -> Check:
    if not single.ok() or not multi.results:
        return Check("f", "fail", single.failure() or multi.failure())
    s_sps, s_steps, _, _ = _rate(single.results[0])
    rates = [_rate(r) for r in multi.results]
    if s_steps is None or any(x[1] is None for x in rates):
        return Check("f", "skip", "fewer than 2 steps recorded; raise --steps")
    dt = max(x[2] for x in rates)
    m_samples = sum(x[3] for x in rates)
    m_sps = m_samples / dt if dt else None
    m_steps = min(x[1] for x in rates)
    data = {"single_samples_per_s": s_sps, "single_steps_per_s": s_steps, "multi_samples_per_s": m_sps,
            "multi_steps_per_s_per_rank": m_steps, "processes": n}
    if s_sps and m_sps:
        speed = m_sps / s_sps
        data["speedup"] = speed
        msg = (f"{s_sps:,.0f} samples/s on 1 process, {m_sps:,.0f} samples/s on {n} ({speed:.2f}x; "
               f"steps/s {s_steps:.1f} -> {m_steps:.1f} per rank)")
    else:
        msg = f"{s_steps:.1f} steps/s on 1 process, {m_steps:.1f} steps/s per rank on {n}"
    return Check("f", "info", msg + "; measured over steps 2..K, for information only", data)


# ---- the command ----------------------------------------------------------------------------------------------------

@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("script", type=click.Path(exists=True, dir_okay=False))
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
@click.option("--target", "-t", type=click.Choice(TARGETS), required=True, help="Framework to migrate to.")
@click.option("--devices", type=click.IntRange(min=1), default=2, show_default=True,
              help="Processes for the multi-process run.")
@click.option("--accelerator", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=5, show_default=True,
              help="Optimizer steps per run; each run stops after them.")
@click.option("--timeout", type=click.FloatRange(min=1), default=300, show_default=True,
              help="Seconds each run may take.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--migrated", type=click.Path(exists=True, dir_okay=False),
              help="Check this already-migrated file instead of migrating SCRIPT.")
@click.option("--checks", "only", default=DEFAULT_CHECKS, show_default=True,
              help="The checks to run, as letters; runs that no chosen check needs are skipped.")
@click.option("--full", is_flag=True, help="Run the scripts to their end (no step limit; use small data) and add "
              "checks g (last learning rate on N processes = original's), h (equal initial weights on every rank) and "
              "i (the ranks draw different random numbers where the original draws them in its loop), j (every checkpoint the "
              "original writes is written with the same keys and shapes), l (the lines printed after an evaluation of the same "
              "weights on N processes equal the original's; two more runs).")
@click.option("--cwd", "cwd", type=click.Path(exists=True, file_okay=False), metavar="DIR",
              help="Run the scripts from DIR, as `cd DIR && python SCRIPT` does (SCRIPT must lie under DIR): DIR is "
                   "copied instead of the script's folder (its .py files down to the script's folder; the rest "
                   "linked). Default: the script's folder.")
@click.option("--keep", is_flag=True, help="Keep the temporary folder (its path is printed).")
@click.option("--deterministic/--nondeterministic", default=None,
              help="Deterministic kernels in every run (torch.use_deterministic_algorithms with warn_only, cuDNN "
                   "deterministic without benchmarking, CUBLAS_WORKSPACE_CONFIG). Default: on with "
                   "--accelerator cuda, off on cpu.")
def verify(script, script_args, target, devices, accelerator, steps, timeout, as_json, migrated, only, cwd, keep,
           deterministic, full):
    """Run SCRIPT and its migration side by side and check that the migration trains the same model.

    \b
    Checks (exit status 1 if any fails; 2 if the script cannot be migrated):
      a parity         1 process: per-step losses equal the original's (rtol 1e-4, atol 1e-5; where either
                       run trains under fp16 autocast or in fp16 rtol 2e-3, atol 1e-4; bf16 rtol 1e-2, atol 1e-3)
      b multi-process  N processes finish in time, world size N, finite losses on every rank
      c sync           parameter checksums identical on every rank after the last step
      d sharding       ranks do not receive identical batches at the same step (with --full also: the ranks
                       together train on at least 90% of the samples the original saw)
      e output once    no stdout line of 1 process is printed by more than one rank with N processes
      f throughput     samples/s of 1 process vs N processes (information)
      k written once   no file is written by more than one rank (open in a writing mode, torch.save, np.save,
                       a SummaryWriter's folder, ...; the framework's own save is exempt, a per-rank path is
                       its own file); files written after the step limit are seen with --full
    With --full (the scripts run to their end):
      g schedule       the learning rate at the last step on N processes equals the original's
      h initial weights every rank starts from the same parameters
      i noise per rank the ranks draw different random numbers where the original draws them in its loop
      j checkpoints    every checkpoint the original writes is written by the migration with the same keys,
                       shapes and classes (it loads into the original model class)
      l evaluation     given the same weights (reference values put in for every evaluation of two more runs),
                       the lines printed after an evaluation on N processes (rank 0) equal the original's, numbers
                       within rtol 1e-4 or one unit of their last printed digit; numbers that a third run with the
                       training jittered prints otherwise (a loss, noise samples) are not compared
    Arguments after `--` go to the script. The user's files are never written: the script's folder (or --cwd's)
    is copied.
    """
    if full:
        only = only + FULL_CHECKS if only == DEFAULT_CHECKS else only
        steps = FULL_STEPS
    chosen = "".join(c for c in only.lower() if c in CHECKS)
    bad = sorted(set(only.lower()) - set(CHECKS) - set(", "))
    if bad or not chosen:
        raise click.BadParameter(f"letters from {''.join(CHECKS)}", param_hint="--checks")
    if devices < 2 and set(chosen) & set("bcdeghijkl"):
        raise click.BadParameter("checks b, c, d and e compare processes: they need --devices 2 or more "
                                 "(with one device, use --checks af)", param_hint="--devices")
    for what, path in (("SCRIPT", script), ("--migrated", migrated)):
        if cwd and path and not _under(Path(path), Path(cwd)):
            raise click.BadParameter(f"{what} {path} is not under {cwd}", param_hint="--cwd")
    # a `timeout` or kill of this command (SIGTERM) unwinds through the runs, which stop their process groups:
    # Fabric's own launcher starts ranks that would otherwise go on spinning after their parent is gone
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    report = run_verify(Path(script), list(script_args), target, devices, accelerator, steps, timeout,
                        Path(migrated) if migrated else None, keep, chosen, deterministic,
                        Path(cwd) if cwd else None)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        _print_table(report)
    sys.exit(report["exit_code"])


def run_verify(script: Path, script_args: List[str], target: str, devices: int = 2, accelerator: str = "cpu",
               steps: int = 5, timeout: float = 300, migrated: Optional[Path] = None,
               keep: bool = False, checks: str = DEFAULT_CHECKS, deterministic: Optional[bool] = None,
               cwd: Optional[Path] = None) -> Dict[str, Any]:
    """`cwd`: the folder the scripts run from (staged whole; the script must lie under it); default: the script's
    folder."""
    script = script.resolve()
    migrated = migrated.resolve() if migrated is not None else None
    cwd = cwd.resolve() if cwd is not None else None
    tmp = Path(tempfile.mkdtemp(prefix="ptm-verify-"))
    report: Dict[str, Any] = {
        "script": str(script), "migrated": str(migrated) if migrated else None, "target": target,
        "devices": devices, "accelerator": accelerator, "steps": steps, "script_args": script_args,
        "notes": [], "checks": [], "runs": {}, "exit_code": 0, "tmp": str(tmp) if keep else None,
        "deterministic": bool(_deterministic_env(accelerator, deterministic)), "cwd": str(cwd) if cwd else None,
    }
    try:
        # the staged folders: the script's (or --cwd's, the folder the runs start in), once as it is, once migrated
        orig_dir, mig_dir = tmp / "original", tmp / "migrated"
        orig_script = _stage_for(script, cwd, orig_dir)
        if migrated is not None:
            mig_script = _stage_for(migrated, cwd, mig_dir)
        else:
            mig_script = _stage_for(script, cwd, mig_dir)
            options = Options(accelerator=accelerator, devices=str(devices),
                              strategy="ddp" if target == "fabric" else None)
            error, notes = _migrate_folder(mig_script.parent, script.name, target, options)
            report["notes"].extend(notes)
            if error:
                report["error"] = f"{script.name} could not be migrated: {error}"
                report["exit_code"] = 2
                return report
        source = mig_script.read_text(encoding="utf-8", errors="replace")
        py = sys.executable
        out = tmp / "results"

        # every run but the two that check j compares starts in a fresh copy of its staged folder: a script that
        # refuses to overwrite its outputs (`os.makedirs(logdir)` without exist_ok, as pytorch-ddpm's main.py) ran
        # once per folder and failed its second run, a failure that was verify's, not the migration's
        pristine = {orig_dir: tmp / "pristine" / "original", mig_dir: tmp / "pristine" / "migrated"}
        for staged, copy in pristine.items():
            shutil.copytree(staged, copy, symlinks=True)
        in_place = {"original": orig_dir, f"migrated-{devices}procs": mig_dir}

        def make(name: str, prefix: List[str], folder: Path, target_script: Path, single: bool) -> Run:
            if in_place.get(name) != folder:
                fresh = tmp / "runs" / name
                shutil.rmtree(fresh, ignore_errors=True)
                shutil.copytree(pristine[folder], fresh, symlinks=True)
                target_script, folder = fresh / target_script.relative_to(folder), fresh
            out_dir = str(out / name)
            return Run(name, prefix + _runner_cmd(steps, out_dir, target_script, script_args, single), str(folder),
                       out_dir)

        base_env = _env(accelerator, _deterministic_env(accelerator, deterministic))
        if cwd is not None:
            from migrator.verify.runner import ENV_KEEP_CWD
            base_env[ENV_KEEP_CWD] = "1"  # each run starts in its staged --cwd folder and stays there
        skipped = Run("not run", [], "", "")
        orig = single = multi = skipped
        # parity on one process first; an original that shuffles through its own DistributedSampler takes its order
        # from the sampler's seed, which the framework's loader on one process does not reproduce, but Fabric's
        # sampler on N processes (seeded by seed_everything) does: then rank 0 of N processes is compared with the
        # original under torchrun. Accelerate's sharding orders batches otherwise: there it is reported as a skip.
        own_sampler = "DistributedSampler" in script.read_text(encoding="utf-8", errors="replace")
        spawns = bool(_SPAWNS.search(script.read_text(encoding="utf-8", errors="replace")))
        orig_n = skipped
        started = time.time()  # checkpoints written from here on are the runs'
        if set(checks) & set("agij") or ("d" in checks and steps >= FULL_STEPS):  # d's coverage part (--full)
            orig = _execute(make("original", [py], orig_dir, orig_script, False), base_env, timeout)
        if set(checks) & set("aef"):
            single = _execute(make("migrated-1", [py], mig_dir, mig_script, target == "fabric"), base_env, timeout)
        parity_on_n = False
        if "a" in checks and own_sampler and not spawns and devices > 1 and target == "fabric" and \
                single.ok() and check_parity(orig, single).status == "fail":
            parity_on_n = True
            orig_n = _execute(make(f"original-{devices}procs", _torchrun(devices), orig_dir, orig_script, False),
                              base_env, timeout)
        if set(checks) & set("bcdefghijkl") or parity_on_n:
            multi_env = dict(base_env)
            if target == "fabric":
                mode = _fabric_launch_mode(source)
                prefix = [py] if mode == "python" else _torchrun(devices)
                if mode == "fabric-run":
                    multi_env.update({"LT_CLI_USED": "1", "LT_ACCELERATOR": accelerator, "LT_DEVICES": str(devices),
                                      "LT_NUM_NODES": "1", "LT_STRATEGY": "ddp"})
            else:
                mode, prefix = "torchrun", _torchrun(devices)
            report["notes"].append(f"multi-process launch: {mode}")
            if set(checks) & set("bcdefghijk") or parity_on_n:
                multi = _execute(make(f"migrated-{devices}procs", prefix, mig_dir, mig_script, False), multi_env,
                                 timeout)
        orig_l = multi_l = skipped
        if "l" in checks:  # the same runs, every evaluation given the same reference weights (migrator/verify/evaluation.py)
            same = {ENV_EVAL_REFERENCE: "1"}
            orig_l = _execute(make("original-eval", [py], orig_dir, orig_script, False), {**base_env, **same},
                              timeout)
            if orig_l.failure() or (_rank0(orig_l) or {}).get("eval_lines"):  # else l is a skip: no N-process run
                multi_l = _execute(make(f"migrated-{devices}procs-eval", prefix, mig_dir, mig_script, False),
                                   {**multi_env, **same}, timeout)

        def _evaluation() -> Check:
            first = check_evaluation(orig_l, multi_l, devices)
            if first.status != "fail" or not first.data.get("rank0"):
                return first
            # numbers that differ may come from the training (a loss on the same line) or from the global random
            # generator: the original once more, its training jittered, tells which (migrator/verify/evaluation.py)
            control = _execute(make("original-eval-control", [py], orig_dir, orig_script, False),
                               {**base_env, ENV_EVAL_REFERENCE: "1", ENV_EVAL_JITTER: "1"}, timeout)
            extra.append(control)
            return check_evaluation(orig_l, multi_l, devices, control)

        extra: List[Run] = []
        makers = {
            "g": lambda: check_schedule(orig, multi, devices),
            "h": lambda: check_initial_weights(multi, devices),
            "i": lambda: check_noise(orig, multi, devices),
            "j": lambda: check_checkpoints(orig_dir, mig_dir, started, [orig_script.parent, mig_script.parent]),
            "a": lambda: _parity(orig, single, orig_n, multi, devices, own_sampler and parity_on_n,
                                 own_sampler and target != "fabric", spawns),
            "b": lambda: check_multi(multi, devices, steps),
            "c": lambda: check_sync(multi, devices),
            "d": lambda: check_coverage(orig, multi, devices) or
            check_sharding(multi, devices, script.read_text(encoding="utf-8", errors="replace")),
            "e": lambda: check_output(single, multi, devices, target),
            "f": lambda: check_throughput(single, multi, devices),
            "k": lambda: check_written_once(multi, devices, target),
            "l": lambda: _evaluation(),
        }
        results = [makers[c]() for c in CHECKS if c in checks]
        report["checks"] = [c.as_dict() for c in results]
        report["runs"] = {r.name: r.summary() for r in (orig, orig_n, single, multi, orig_l, multi_l, *extra)
                          if r is not skipped}
        report["exit_code"] = 1 if any(c.status == "fail" for c in results) else 0
        return report
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def _numbers(line: str) -> List[str]:
    return [m.group(0) for m in _NUMBER.finditer(line)]


def _close(x: str, y: str) -> bool:
    """Within rtol 1e-4 or one unit of the last printed digit."""
    u, v = float(x), float(y)
    mantissa = x.split("e")[0].split("E")[0]
    digits = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return abs(u - v) <= max(1e-4 * max(abs(u), abs(v)), 1.01 * 10.0 ** -digits if digits else 0.0)


def _varying(orig: List[str], control: List[str]) -> List[set]:
    """Per line, the positions of the numbers that the control run prints otherwise, in any line printed by the
    same statement (the same text): they come from the training or from the global random generator, not from the
    evaluation."""
    by_text: Dict[str, set] = {}
    if len(control) == len(orig):
        for a, b in zip(orig, control):
            if _normalize(a) == _normalize(b):
                by_text.setdefault(_normalize(a), set()).update(
                    j for j, (x, y) in enumerate(zip(_numbers(a), _numbers(b))) if not _close(x, y))
    return [by_text.get(_normalize(a), set()) for a in orig]


def check_evaluation(orig: Run, multi: Run, n: int, control: Optional[Run] = None) -> Check:
    """l: with every evaluation given the same reference weights, rank 0 of N processes prints after its evaluations
    what the original prints after its own (a sharded evaluation prints a part of the set's metric). With `control`
    (the original again, its training jittered), numbers that the control prints otherwise are not compared."""
    o = _rank0(orig) if not orig.failure() else None
    if o is None:
        return Check("l", "fail", orig.failure() or "the original's run wrote no results")
    want = o.get("eval_lines") or []
    if not want:
        return Check("l", "skip", "the original prints nothing after an evaluation (a forward without gradients or in "
                                  "eval mode)")
    why = _usable(multi, n)
    if why:
        return Check("l", "fail" if multi.failure() else "skip", why)
    got = (_rank0(multi) or {}).get("eval_lines") or []
    c = _rank0(control) if control is not None and not control.failure() else None
    varying = _varying(want, (c or {}).get("eval_lines") or []) if c is not None else [set() for _ in want]
    data = {"original": want[:20], "rank0": got[:20], "not compared": [sorted(v) for v in varying[:20]]}
    for i, line in enumerate(want):
        if i >= len(got):
            return Check("l", "fail", f"the original prints {len(want)} line(s) after its evaluations, rank 0 of {n} "
                                      f"{len(got)}; the first missing: {line.strip()!r}", data)
        same = _normalize(line) == _normalize(got[i]) and all(
            j in varying[i] or _close(x, y) for j, (x, y) in enumerate(zip(_numbers(line), _numbers(got[i]))))
        if not same:
            return Check("l", "fail", f"evaluating the same weights, the original prints {line.strip()!r}, rank 0 of "
                                      f"{n} {got[i].strip()!r}: the evaluation on {n} processes does not measure "
                                      f"what one process measures (a sharded loader, padded duplicates, or a sum "
                                      f"that is not reduced)", data)
    skipped = len({(_normalize(a), j) for a, v in zip(want, varying) for j in v})
    return Check("l", "pass", f"{len(want)} line(s) printed after the evaluations of the same weights equal the "
                              f"original's on rank 0 of {n}" + (f" ({skipped} number(s) of a line that come from the "
                                                                 f"training or the global random generator not "
                                                                 f"compared)"
                                                                 if skipped else ""), data)


def check_schedule(orig: Run, multi: Run, n: int) -> Check:
    """g: the learning rate at the last step on N processes equals the original's at its last step."""
    o = _rank0(orig) if not orig.failure() else None
    if o is None or o.get("last_lr") is None:
        return Check("g", "fail" if orig.failure() else "skip", orig.failure() or "the original stepped no optimizer")
    why = _usable(multi, n)
    if why:
        return Check("g", "fail" if multi.failure() else "skip", why)
    data = {"original": [o["first_lr"], o["last_lr"], o["steps"]],
            "ranks": {r["rank"]: [r.get("last_lr"), r["steps"]] for r in multi.results}}
    for r in multi.results:
        a, b = o["last_lr"], r.get("last_lr")
        if b is None:
            return Check("g", "fail", f"rank {r['rank']} of {n} stepped no optimizer"
                                      f"{': ' + multi.failure() if multi.failure() else ''}", data)
        if abs(a - b) > 1e-6 * max(abs(a), abs(b)) + 1e-12:
            return Check("g", "fail", f"learning rate at the last step: original {a:.6g} after {o['steps']} steps, "
                                      f"rank {r['rank']} of {n} {b!r} after {r['steps']} steps: the schedule does not "
                                      f"end where the original's does", data)
    return Check("g", "pass", f"last learning rate {o['last_lr']:.6g} on every rank of {n}, as in the original", data)


def check_initial_weights(multi: Run, n: int) -> Check:
    """h: every rank starts from the same parameters (at its first training forward)."""
    why = _usable(multi, n)
    if why:
        return Check("h", "fail" if multi.failure() else "skip", why)
    hashes = {r["rank"]: r.get("init_param_hash") for r in multi.results}
    if None in hashes.values():
        return Check("h", "skip", "no training forward was seen", {"ranks": hashes})
    if len(set(hashes.values())) > 1:
        return Check("h", "fail", "the ranks started from different parameters", {"ranks": hashes})
    return Check("h", "pass", f"all {n} ranks start from the same parameters", {"ranks": hashes})


def check_noise(orig: Run, multi: Run, n: int) -> Check:
    """i: where the original draws random numbers in its loop, the ranks draw different ones."""
    o = _rank0(orig) if not orig.failure() else None
    if o is None or not o.get("noise_draws"):
        return Check("i", "skip", "the original draws no random numbers after its first step")
    why = _usable(multi, n)
    if why:
        return Check("i", "fail" if multi.failure() else "skip", why)
    hashes = {r["rank"]: r.get("noise_hash") for r in multi.results}
    data = {"original_draws": o["noise_draws"], "ranks": hashes}
    if len(set(hashes.values())) < len(hashes):
        return Check("i", "fail", f"ranks drew identical random numbers in the loop ({o['noise_draws']} draws in "
                                  f"the original): every process trains on the same noise", data)
    return Check("i", "pass", f"the {n} ranks drew different random numbers in the loop", data)


CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".tar")

# Run in the script's folder (a pickled module needs its class): what each checkpoint holds, as key -> shape.
_DESCRIBE = r"""
import json, sys, torch
def flat(o, prefix="", depth=0, out=None):
    out = {} if out is None else out
    if isinstance(o, torch.nn.Module):
        out[prefix + "<class>"] = type(o).__name__
        o = o.state_dict()
    if isinstance(o, torch.Tensor):
        out[prefix.rstrip(".").replace("_orig_mod.", "")] = list(o.shape)  # torch.compile's prefix: same class
    elif isinstance(o, dict) and depth < 4:
        for k, v in o.items():
            flat(v, f"{prefix}{k}.", depth + 1, out)
    return out
res = {}
for f in sys.argv[1:]:
    try:
        res[f] = flat(torch.load(f, map_location="cpu", weights_only=False))
    except Exception as e:
        res[f] = {"<error>": f"{type(e).__name__}: {e}"}
print(json.dumps(res))
"""


def _checkpoints(folder: Path, since: float) -> List[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and
                  p.suffix in CHECKPOINT_SUFFIXES and p.stat().st_mtime >= since)


def _describe(folder: Path, files: List[str], timeout: float = 120, script_dir: Optional[Path] = None
              ) -> Dict[str, Any]:
    if not files:
        return {}
    path = os.pathsep.join(str(p) for p in (script_dir, folder) if p is not None)  # pickled classes import from there
    try:
        out = subprocess.run([sys.executable, "-c", _DESCRIBE] + files, cwd=str(folder), capture_output=True,
                             text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                             env=dict(os.environ, PYTHONPATH=path))
        return json.loads(out.stdout.strip().splitlines()[-1])
    except Exception as e:  # pragma: no cover - reported as the check's failure
        return {f: {"<error>": repr(e)} for f in files}


def check_checkpoints(orig_dir: Path, mig_dir: Path, since: float, script_dirs: Optional[List[Path]] = None) -> Check:
    """j: every checkpoint the original writes, the migration writes too, with the same keys and shapes (so it
    loads into the original model class: no `module.` prefix, no wrapper pickled, nothing missing). torch.compile's
    `_orig_mod.` prefix is ignored on both sides (Fabric's save drops it; the class underneath is the same)."""
    want = _checkpoints(orig_dir, since)
    if not want:
        return Check("j", "skip", "the original wrote no checkpoint (.pt, .pth, .ckpt, .bin, .tar)")
    have = set(_checkpoints(mig_dir, since))
    missing = [f for f in want if f not in have]
    if missing:
        return Check("j", "fail", f"the migration did not write {', '.join(missing)}", {"files": want})
    dirs = script_dirs or [None, None]  # the staged scripts' folders, when the runs start elsewhere (--cwd)
    a, b = _describe(orig_dir, want, script_dir=dirs[0]), _describe(mig_dir, want, script_dir=dirs[1])
    for f in want:
        if "<error>" in b.get(f, {"<error>": "not read"}):
            return Check("j", "fail", f"{f} does not load: {b.get(f, {}).get('<error>', 'not read')}")
        oa, ob = a.get(f, {}), b.get(f, {})
        if "<error>" in oa:
            continue  # the original's own file does not load here: nothing to compare with
        if oa != ob:
            extra, lost = sorted(set(ob) - set(oa))[:3], sorted(set(oa) - set(ob))[:3]
            shapes = [k for k in set(oa) & set(ob) if oa[k] != ob[k]][:3]
            return Check("j", "fail", f"{f} differs from the original's: it would not load into the original model "
                                      f"class (keys only in the migration {extra}, missing {lost}, other shapes or "
                                      f"classes {shapes})", {"files": want})
    return Check("j", "pass", f"{len(want)} checkpoint(s) written as the original writes them (same keys, shapes "
                              f"and classes)", {"files": want})


def _print_table(report: Dict[str, Any]) -> None:
    migrated = f" (checking {report['migrated']})" if report.get("migrated") else \
        " (a migration made here for these devices; to check the file you wrote: --migrated FILE)"
    click.echo(f"pt-migrate verify: {report['script']} -> {report['target']}{migrated}, "
               f"{report['devices']} x {report['accelerator']}, "
               + ("to the end (--full)" if report['steps'] >= FULL_STEPS else f"{report['steps']} steps"))
    if report.get("error"):
        click.echo(f"error: {report['error']}", err=True)
        return
    for note in report.get("notes", []):
        click.echo(f"  note: {note}")
    marks = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP", "info": "INFO"}
    color = {"pass": "green", "fail": "red", "skip": "yellow", "info": "cyan"}
    click.echo("")
    for c in report["checks"]:
        label = f"{c['id']} {c['name']}"
        mark = click.style(f"{marks[c['status']]:<5}", fg=color[c["status"]])
        click.echo(f"  {label:<16} {mark} {c['message']}")
    click.echo("")
    for name, r in report["runs"].items():
        state = "timed out" if r["timed_out"] else f"exit {r['rc']}"
        cmd = ["python" if a == sys.executable else a for a in r["cmd"]]
        click.echo(f"  run {name:<12} {state:<10} {r['wall_s']:7.1f}s  {shlex.join(cmd)}")
    if report.get("tmp"):
        click.echo(f"  kept {report['tmp']}")
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    click.echo("")
    skipped = [c["id"] for c in report["checks"] if c["status"] == "skip"]
    also = f" ({len(skipped)} skipped: {', '.join(skipped)}; their reasons above)" if skipped else ""
    click.echo((f"{len(failed)} check(s) failed" if failed else "all checks passed") + also)
