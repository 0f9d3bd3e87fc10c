"""Scripts that are not data parallel: Hogwild training, where `model.share_memory()` puts one model in shared
memory and several `multiprocessing.Process` workers each update it in place, with no gradient averaging.

Fabric and Accelerate replicate the model per process and average gradients, which is a different algorithm;
rewriting such a script (a framework object and setup inside each worker) hung on 2 GPUs. The engine leaves it
as it is, with one TODO above the `share_memory()` call that says why.
"""
from __future__ import annotations

import ast
from typing import Optional

NOT_DATA_PARALLEL = "PTM007"
MESSAGE = ("Hogwild training (a model in shared memory updated by several processes) is not data parallel: "
           "Fabric and Accelerate replicate the model and average gradients instead. The script was left unchanged")
_PROCESS = {"Process", "start_processes"}


def hogwild_line(tree: ast.Module) -> Optional[int]:
    """The line of `X.share_memory()` when the module also starts processes (`mp.Process(target=...)`), else
    None. Input: the module's standard-library syntax tree."""
    share = process = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "share_memory" and not node.args and share is None:
                share = node.lineno
            elif node.func.attr in _PROCESS:
                process = node.lineno
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _PROCESS:
            process = node.lineno
    return share if share is not None and process is not None else None


def with_todo(source: str, line: int, code: str = NOT_DATA_PARALLEL, message: str = MESSAGE) -> str:
    """`source` with `# TODO(pt-migrate) CODE: message` above line `line`, indented like it (once: a second run
    adds nothing). Shared by the whole-file declines (PTM007 here, PTM008 in migrator/foreign_engine.py)."""
    lines = source.splitlines(keepends=True)
    target = lines[line - 1]
    indent = target[:len(target) - len(target.lstrip())]
    marker = f"# TODO(pt-migrate) {code}:"
    if line >= 2 and lines[line - 2].strip().startswith(marker):
        return source
    newline = "\r\n" if target.endswith("\r\n") else "\n"
    lines.insert(line - 1, f"{indent}{marker} {message}{newline}")
    return "".join(lines)
