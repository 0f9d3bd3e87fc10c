"""Models trained without a torch.optim optimizer: parameters updated by hand from their gradients.

    for p in model.parameters():
        p.data.add_(p.grad, alpha=-lr)          # also p.data -= lr * p.grad, p.sub_(lr * p.grad) under no_grad

Such a model still has to be set up (`fabric.setup(model)` / `accelerator.prepare(model)`) for its gradients to be
averaged across the processes; there is no optimizer to set up with it. Found here, by the analysis, only in a
scope (a top-level function, the main guard or the module) that also builds the model, so that the setup has a
place; the rules (PTM105) set it up alone.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import libcst as cst

from migrator import matching as m
from migrator.names import assigned_names, dotted

UPDATES = {"add_", "sub_", "copy_", "addcmul_", "addcdiv_"}


def _updates_from_grad(loop: cst.For, p: str) -> bool:
    """The loop's body changes `p` (or `p.data`) in place and reads a `.grad`."""
    reads_grad = any(n.attr.value == "grad" for n in m.findall(loop.body, m.Attribute()))
    if not reads_grad:
        return False
    targets = {p, f"{p}.data"}
    for call in m.findall(loop.body, m.Call()):
        if isinstance(call.func, cst.Attribute) and call.func.attr.value in UPDATES \
                and dotted(call.func.value) in targets:
            return True
    for aug in m.findall(loop.body, m.AugAssign()):
        if dotted(aug.target) in targets and isinstance(aug.operator, (cst.SubtractAssign, cst.AddAssign)):
            return True
    return False


def _hand_loops(block) -> List[str]:
    """Models whose parameters a `for p in X.parameters():` loop inside `block` updates by hand."""
    found: List[str] = []
    for loop in m.findall(block, m.For()):
        it = loop.iter
        if not (isinstance(it, cst.Call) and isinstance(it.func, cst.Attribute)
                and it.func.attr.value == "parameters" and isinstance(loop.target, cst.Name)):
            continue
        model = dotted(it.func.value)
        if model and "." not in model and _updates_from_grad(loop, loop.target.value) and model not in found:
            found.append(model)
    return found


def _assigns(block, name: str) -> bool:
    return any(name in [n for t in a.targets for n in assigned_names(t.target)] for a in m.findall(block, m.Assign()))


def hand_trained(module: cst.Module, is_main_guard) -> Optional[Tuple[str, List[str]]]:
    """(scope, models) of the first scope that both builds a model and updates its parameters by hand: a top-level
    function's name, "<main-guard>" or "<module>" (the names of migrator.analysis); None when there is none."""
    from migrator.analysis import MAIN_GUARD, MODULE
    scopes = []
    loose = []
    for stmt in module.body:
        if isinstance(stmt, cst.FunctionDef):
            scopes.append((stmt.name.value, stmt.body))
        elif isinstance(stmt, cst.If) and is_main_guard(stmt):
            scopes.append((MAIN_GUARD, stmt.body))
        elif not isinstance(stmt, cst.ClassDef):
            loose.append(stmt)
    scopes.append((MODULE, cst.Module(body=loose)))
    for scope, block in scopes:
        models = [x for x in _hand_loops(block) if _assigns(block, x)]
        if models:
            return scope, models
    return None
