"""Shared by the fixture tests: where fixtures live and which Options each file is migrated with.

Until migrator.project is done, the multi-file options are computed here: a top-level function of a sibling
module that calls `.backward()` (directly, or through another such function of its module) takes the
framework object, and every file of the case is told about all of them.
"""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Dict, List

from migrator import Options

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
TARGETS = ("fabric", "accelerate")


def cases() -> List[Path]:
    return sorted(p for p in FIXTURES.iterdir() if (p / "before").is_dir())


def before_files(case: Path) -> List[Path]:
    return sorted((case / "before").glob("*.py"))


def whole_script_cases() -> List[Path]:
    """Single-device scripts: the original runs with plain `python` (see test_whole_scripts.py)."""
    return [c for c in cases() if not is_noop(c) and not is_distributed(c) and not gpu_only(c)
            and not (c / "static_only.json").exists() and all((c / t).is_dir() for t in TARGETS)]


def is_noop(case: Path) -> bool:
    """noop_* cases: every file must come out byte-identical."""
    return case.name.startswith("noop_")


def has_goldens(case: Path) -> bool:
    return any((case / t).is_dir() for t in TARGETS)


def gpu_only(case: Path) -> bool:
    """Fixtures that need CUDA or torchvision: migrated in CI, run by benchmarks/gpu_verify.sh."""
    return (case / "gpu_only.json").exists()


def not_sharded(case: Path) -> bool:
    """Scripts whose batches are cut by hand from a tensor (no DataLoader): every process trains on all the data,
    and the migration says so with a TODO. Their 2-process runs print as many step lines as one process."""
    return (case / "not_sharded.json").exists()


def stops_early(case: Path) -> bool:
    """Scripts that stop on a loss threshold: on 2 processes each step sees other batches, so the step at which they
    stop is their own. Their 2-process runs must end without a traceback from any rank (every rank stopping at the
    same step: a rank left training fails in the gradient all-reduce), with any number of step lines."""
    return (case / "stops_early.json").exists()


def is_distributed(case: Path) -> bool:
    """Hand-written distributed originals (torchrun / mp.spawn); checked by test_distributed_scripts.py."""
    return (case / "distributed.json").exists()


def distributed_cases() -> List[Path]:
    return [c for c in cases() if is_distributed(c)]


def _fw_functions(path: Path) -> List[str]:
    tree = ast.parse(path.read_text())
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}

    def calls(fn):
        return [c for c in ast.walk(fn) if isinstance(c, ast.Call)]

    needs = {name for name, fn in funcs.items()
             if any(isinstance(c.func, ast.Attribute) and c.func.attr == "backward" for c in calls(fn))}
    changed = True
    while changed:
        changed = False
        for name, fn in funcs.items():
            if name not in needs and any(isinstance(c.func, ast.Name) and c.func.id in needs for c in calls(fn)):
                needs.add(name)
                changed = True
    # classes whose methods call backward take the object in __init__ when a sibling that makes it calls them
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)
               and any(isinstance(c.func, ast.Attribute) and c.func.attr == "backward" for c in calls(n))}
    return [f"{path.stem}.{n}" for n in sorted(needs | classes)]


def project_options(case: Path) -> Dict[str, dict]:
    """Options kwargs per file name: module_name and external_fw_functions for multi-file cases, as the CLI's
    project index (migrator.project) gives them."""
    from migrator.project import folder_fw_functions
    files = before_files(case)
    if len(files) < 2:
        return {f.name: {} for f in files}
    external = folder_fw_functions({f.stem: f.read_text() for f in files})
    return {f.name: {"module_name": f.stem, "external_fw_functions": external} for f in files}


def options_for(case: Path, file: Path, **overrides) -> Options:
    return dataclasses.replace(Options(**project_options(case)[file.name]), **overrides)


GLOO_EXIT_ABORT = "terminate called without an active exception"


def ran_to_exit(code: int, out: str) -> bool:
    """Whether a script started without the observing runner (whose os._exit avoids this) did all its work.

    torch's CPU gloo backend sometimes aborts at interpreter exit when the process group was left to the
    framework ("terminate called without an active exception", SIGABRT, about 1 run in 20 under load; torchrun then
    exits 1 and names the signal), after
    every line of the script has run. The callers check the printed results themselves, so such a run counts.
    """
    if code == 0:
        return True
    # under torchrun the aborted child makes the launcher exit 1 and report the signal
    return GLOO_EXIT_ABORT in out and (code in (-6, 134) or (code == 1 and ("SIGABRT" in out or "Signal 6" in out)))
