"""Hand-written distributed training where no framework object can take over: left as it is, with TODOs.

The rules that remove a DDP / DataParallel wrapper, a DistributedSampler, `init_process_group` or an `mp.spawn`
launch rely on the framework object to do that work instead: `setup` / `prepare` wrap the model and shard the
loaders, `launch` starts the processes and the process group. The object is made where the training is set up (an
optimizer built in a function or at module level, or a model updated by hand: migrator/analysis.py) or handed to
the functions and trainer classes that need it. A training module where neither happens (the loop is in a class
that nothing hands the object to, or the optimizer is a kind pt-migrate does not know) would lose its machinery
with nothing in its place: each rank would train alone, on all the data. The engine leaves such a file unchanged
but for TODOs (PTM009), before any rule runs: one above the first of that machinery, saying why, and a short one
above each other construct a migration would have replaced (the rest of the machinery, GradScaler, `.backward()`),
so that a reader of any of them learns that it stays on purpose.
"""
from __future__ import annotations

import ast
from typing import List, Optional, Tuple

from migrator.imports import ImportTable

NO_OBJECT = "PTM009"
_WRAPPERS = {"torch.nn.parallel.DistributedDataParallel", "torch.nn.parallel.distributed.DistributedDataParallel",
             "torch.nn.DataParallel", "torch.nn.parallel.DataParallel", "torch.nn.parallel.data_parallel.DataParallel"}
_SAMPLERS = {"torch.utils.data.DistributedSampler", "torch.utils.data.distributed.DistributedSampler"}
_GROUP = {"torch.distributed.init_process_group"}
_SPAWN = {"torch.multiprocessing.spawn", "torch.multiprocessing.spawn.spawn"}
_SCALERS = {"torch.cuda.amp.GradScaler", "torch.amp.GradScaler", "torch.GradScaler", "torch.amp.grad_scaler.GradScaler"}
MACHINERY = ((_SPAWN, "the `mp.spawn` launch"), (_GROUP, "`init_process_group`"),
             (_WRAPPERS, "the DDP/DataParallel wrapper"), (_SAMPLERS, "the DistributedSampler"))
_OTHERS = ((_SCALERS, "the GradScaler"),)
_FW_NAMES = ("fabric", "accelerator")


def constructs(source: str, tree: ast.Module) -> List[Tuple[int, str, bool]]:
    """(line of the enclosing statement, what, is machinery) for each call a migration would replace, in line order:
    the distributed machinery (PTM130-PTM132), GradScaler constructions and `.backward()` calls. Names are resolved
    through the module's imports, as the rules resolve them."""
    table = ImportTable(source)
    found = set()
    for stmt in _statements(tree.body):
        for node in _own_nodes(stmt):
            if not isinstance(node, ast.Call):
                continue
            names = _qualified(node.func, table)
            for kinds, is_machinery in ((MACHINERY, True), (_OTHERS, False)):
                for kind, what in kinds:
                    if names & kind:
                        found.add((stmt.lineno, what, is_machinery))
            if isinstance(node.func, ast.Attribute) and node.func.attr == "backward" and not _framework_call(node):
                found.add((stmt.lineno, "`.backward()`", False))
    return sorted(found)


def _framework_call(call: ast.Call) -> bool:
    recv = call.func.value
    name = recv.attr if isinstance(recv, ast.Attribute) else recv.id if isinstance(recv, ast.Name) else ""
    return name.lower().endswith(_FW_NAMES) or name == "autograd"


def _statements(body):
    for stmt in body:
        yield stmt
        for field in ("body", "orelse", "finalbody"):
            inner = getattr(stmt, field, None)
            if isinstance(inner, list):
                yield from _statements(inner)
        for handler in getattr(stmt, "handlers", ()):
            yield from _statements(handler.body)


def _own_nodes(stmt: ast.stmt):
    """The nodes of a statement outside the statements nested in it (each is visited on its own)."""
    todo = [v for f, v in ast.iter_fields(stmt) if f not in ("body", "orelse", "finalbody", "handlers")]
    while todo:
        v = todo.pop()
        if isinstance(v, list):
            todo.extend(v)
        elif isinstance(v, ast.AST) and not isinstance(v, ast.stmt):
            yield v
            todo.extend(getattr(v, f) for f in v._fields)


def _qualified(func: ast.expr, table: ImportTable) -> set:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        return set()
    rest = ".".join(reversed(parts))
    return {q + "." + rest if rest else q for q in table.aliases.get(func.id, ())}


def why_no_object(facts) -> Optional[str]:
    """Why no framework object would be made in or handed to this module, or None when one is (then the rules
    replace the machinery). Input: the analysis' Facts of a training module."""
    if facts.fw_exists or facts.setup_scope or facts.fw_functions or facts.fw_classes or facts.fw_own \
            or facts.fw_globals or facts.external_fw:
        return None
    if facts.class_candidates:
        names = ", ".join(f"`{c}`" for c in sorted(facts.class_candidates))
        return (f"the training step is in class {names}, and nothing in this module makes a framework object or hands "
                f"one to it")
    return ("pt-migrate found no torch.optim optimizer (nor a model updated by hand) built in a function or at module "
            "level, where it would make the framework object")


def marks(reason: str, found: List[Tuple[int, str, bool]]) -> List[Tuple[int, str]]:
    """(input line, TODO text) for a declined file: the full reason above the first machinery statement, a short
    note above every other statement in `found` (from `constructs`). [] when the file has no machinery."""
    machinery = [(line, what) for line, what, is_machinery in found if is_machinery]
    if not machinery:
        return []
    first: dict = {}
    for line, what in machinery:
        first.setdefault(what, line)
    listed = ", ".join(f"{what} (line {line})" for what, line in first.items())
    head = machinery[0][0]
    out = [(head, f"not migrated: {reason}, so nothing would replace {listed}; the file was left unchanged (set "
                  f"the model and optimizer up where a framework object is made, or migrate this part by hand)")]
    by_line: dict = {}
    for line, what, _ in found:
        if line != head:
            by_line.setdefault(line, []).append(what)
    for line, whats in sorted(by_line.items()):
        out.append((line, f"kept as written: {' and '.join(dict.fromkeys(whats))} (this file is not migrated: see "
                          f"the first {NO_OBJECT} TODO)"))
    return out


def with_todos(source: str, todos: List[Tuple[int, str]]) -> str:
    """`source` with `# TODO(pt-migrate) PTM009: text` above each line of `todos`, at that line's indentation; a
    line that has a PTM009 TODO right above it already gets none (a second run adds nothing)."""
    lines = source.splitlines(keepends=True)
    marker = f"# TODO(pt-migrate) {NO_OBJECT}:"
    for line, text in sorted(todos, reverse=True):  # bottom up: the line numbers above stay valid
        target = lines[line - 1]
        if line >= 2 and lines[line - 2].strip().startswith(marker):
            continue
        indent = target[:len(target) - len(target.lstrip())]
        newline = "\r\n" if target.endswith("\r\n") else "\n"
        lines.insert(line - 1, f"{indent}{marker} {text}{newline}")
    return "".join(lines)
