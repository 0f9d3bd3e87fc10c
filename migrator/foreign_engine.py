"""Scripts whose model and optimizer are taken over by another training library: a call is handed both and
rebinds both from what it returns, e.g. Opacus' `model, optimizer, loader = privacy_engine.make_private(
module=model, optimizer=optimizer, data_loader=loader, ...)`, apex's `model, optimizer = amp.initialize(model,
optimizer)`, `engine, optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, ...)`.

The library returns its own wrappers (per-sample gradient modules, a noise-adding optimizer, a Poisson-sampling
loader), with their own rules for several processes (Opacus needs its DPDDP, not DDP). Setting them up with
Fabric or Accelerate on top would break them or change the algorithm, and setting up the plain model before the
call would hand the library a wrapper it does not expect (`_FabricDataLoader` has no `multiprocessing_context`).
The engine leaves such a script as it is, with one TODO above the call that says why.
"""
from __future__ import annotations

import ast
from typing import Optional, Set, Tuple

FOREIGN_ENGINE = "PTM008"
MESSAGE = ("the model and the optimizer are handed to `{call}`, which returns its own wrappers of them: Fabric and "
           "Accelerate cannot set those up as well (use that library's own multi-process support). The script "
           "was left unchanged")
# the entry points of such libraries: Opacus' PrivacyEngine, apex.amp and DeepSpeed, Intel's ipex, ColossalAI's
# Booster. A name, not a type: a helper of the script's own (`model, opt = load_checkpoint(model, opt)`) hands
# back the same objects and must not stop the migration, so a function the module defines never counts.
ENTRY_POINTS = {"make_private", "make_private_with_epsilon", "initialize", "optimize", "boost"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    if isinstance(node, ast.Call):  # `PrivacyEngine().make_private`
        inner = _dotted(node.func)
        return f"{inner}()" if inner else ""
    return ""


def _optimizer_owners(tree: ast.Module) -> Set[Tuple[str, str]]:
    """(optimizer name, model name) for `opt = torch.optim.X(model.parameters(), ...)`-like assignments."""
    pairs = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and node.value.args:
            first = node.value.args[0]
            if (isinstance(first, ast.Call) and isinstance(first.func, ast.Attribute)
                    and first.func.attr in ("parameters", "named_parameters")):
                model = _dotted(first.func.value)
                for t in node.targets:
                    if isinstance(t, ast.Name) and model:
                        pairs.add((t.id, model))
    return pairs


def engine_call(tree: ast.Module) -> Optional[Tuple[int, str]]:
    """(line, callee) of the first call that receives an optimizer and its model and whose result is unpacked
    into names including one of them; None when the module has none. Input: the module's standard-library
    syntax tree. Only the libraries' entry points count (ENTRY_POINTS), never a function the module defines."""
    pairs = _optimizer_owners(tree)
    if not pairs:
        return None
    local = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
            continue
        callee = _dotted(node.value.func)
        if not callee or callee.split(".")[-1] not in ENTRY_POINTS or callee in local:
            continue
        given = {_dotted(a) for a in node.value.args} | {_dotted(k.value) for k in node.value.keywords}
        bound = {_dotted(e) for t in node.targets if isinstance(t, ast.Tuple) for e in t.elts}
        for optimizer, model in pairs:
            if optimizer in given and model in given and bound & {optimizer, model}:
                return node.lineno, callee
    return None


def with_todo(source: str, line: int, message: str) -> str:
    """`source` with `# TODO(pt-migrate) PTM008: message` above line `line` (once: a second run adds nothing)."""
    from migrator.hogwild import with_todo as todo_above
    return todo_above(source, line, FOREIGN_ENGINE, message)
