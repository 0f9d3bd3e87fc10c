"""How to start a migrated script on several devices, for the summary the CLI prints."""
from __future__ import annotations

import ast
import re
import shlex
import warnings
from typing import Dict, List, Optional

from migrator.options import Options

_FRAMEWORK_CALLS = {"Fabric", "Accelerator"}
_TRAINING_METHODS = {"backward", "step", "launch"}


def is_entry_script(code: str) -> bool:
    """Whether `code` (a migrated module) is started as a script: it has a main guard (`if __name__ ==
    "__main__":`) or trains at module level (creates the framework object, or calls a backward / step / launch or
    a function of the module that does, outside any function or class). A helper module that a sibling calls (its functions migrated, with a `fabric`
    parameter or a framework object of its own) is not: a launch command for it would start nothing.
    Input: source text; output: bool; a text that does not parse is no entry script."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    trainers = _training_functions(tree)
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if isinstance(stmt, ast.If) and _is_main_test(stmt.test):
            return True
        if any(_trains(node, trainers) for node in _outside_defs(stmt)):
            return True
    return False


def _training_functions(tree: ast.Module) -> set:
    """Names of the module's top-level functions that train, directly or through each other (`main()` called at
    module level starts the training as much as a loop there does)."""
    defs = {s.name: s for s in tree.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))}
    found: set = set()
    while True:
        more = {name for name, f in defs.items() if name not in found and
                any(_trains(n, found) for n in ast.walk(f))}
        if not more:
            return found
        found |= more


def _is_main_test(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    return any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides) and \
        any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides)


def _outside_defs(node: ast.AST):
    """`node` and what it holds, but not the bodies of functions, lambdas and classes (code that runs later)."""
    yield node
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            yield from _outside_defs(child)


def _trains(node: ast.AST, trainers: set = frozenset()) -> bool:
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    return (isinstance(f, ast.Name) and (f.id in _FRAMEWORK_CALLS or f.id in trainers)) or \
        (isinstance(f, ast.Attribute) and (f.attr in _TRAINING_METHODS or f.attr in _FRAMEWORK_CALLS))


_RANK_ENV = re.compile(r"""os\.(?:environ(?:\.get)?\s*[\[(]|getenv\s*\()\s*["']RANK["']|["']RANK["']\s+(?:not\s+)?in\s+os\.environ""")


def reads_rank_env(texts: Dict[str, str]) -> Optional[str]:
    """`path:line` of the first read of the RANK environment variable in `texts` (path -> module text), or None.
    Framework fact: torchrun sets RANK in every process; Fabric's own launcher (`python script.py` with several
    devices) sets LOCAL_RANK, WORLD_SIZE and NODE_RANK but not RANK, so code that reads it sees a single process."""
    for path, text in texts.items():
        m = _RANK_ENV.search(text)
        if m:
            return f"{path}:{text.count(chr(10), 0, m.start()) + 1}"
    return None


def launch_lines(script: str, target: str, options: Options, rank_env_at: Optional[str] = None,
                 code: str = "") -> List[str]:
    """The commands that start `script` on several devices. `rank_env_at` (`path:line`, from reads_rank_env): the
    code reads RANK, which only torchrun sets, so Fabric's own launcher is not offered. `code`: the migrated
    script; where it creates the object for CPU processes itself (PTM101, PTM114), without --devices Fabric's own
    launcher would start one process (lightning 2.6: `devices="auto"` on the CPU is 1), so torchrun is offered."""
    script = shlex.quote(str(script))  # pasted into a shell: `Seq2Seq(Attention).py` needs quotes
    n = options.devices or "N"
    forced = 'Fabric(accelerator="cpu"' in code or "Accelerator(cpu=True" in code
    cpu = options.accelerator == "cpu" or forced
    nodes = options.num_nodes or 2
    lines: List[str] = []
    if target == "fabric" and options.launcher == "fabric-run":
        acc = options.accelerator or "cuda"
        lines.append(f"fabric run --accelerator={acc} --devices={n} {script}")
        lines.append(f"fabric run --accelerator={acc} --devices={n} --num-nodes={nodes} --node-rank=RANK "
                     f"--main-address=HOST --main-port=29500 {script}    # on each node")
        return lines
    if target == "fabric" and rank_env_at:
        lines.append(f"torchrun --nproc_per_node {n} {script}    # not `python {script}`: {rank_env_at} reads RANK, "
                     f"which Fabric's own launcher does not set")
    elif target == "fabric" and forced and not options.devices:
        lines.append(f"torchrun --nproc_per_node {n} {script}    # CPU processes, as the comment above `Fabric(...)` "
                     f"says")
    elif target == "fabric":
        if options.devices:
            lines.append(f"python {script}    # Fabric starts {options.devices} processes itself")
        else:
            lines.append(f"python {script}    # all GPUs of this machine (one process on a CPU machine)")
        lines.append(f"torchrun --nproc_per_node {n} {script}")
    else:
        if cpu:
            lines.append(f"torchrun --nproc_per_node {n} {script}    # CPU: `accelerate launch --cpu` starts one process")
        else:
            lines.append(f"accelerate launch --multi_gpu --num_processes {n} {script}    # GPUs")
            lines.append(f"torchrun --nproc_per_node {n} {script}    # GPUs, or processes on a CPU-only machine")
    lines.append(f"torchrun --nnodes {nodes} --node_rank RANK --nproc_per_node {n} --rdzv_backend c10d "
                 f"--rdzv_endpoint HOST:29500 {script}    # on each node")
    return lines
