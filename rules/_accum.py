"""Shared by PTM139 and PTM141: recognising a k-step gradient-accumulation loop and reading its step guard.

The shape: a `for` loop whose body calls backward in one top-level statement and steps the optimizer only
inside one later top-level `if` (the guard), which also zeroes the gradients.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Set, Tuple

import libcst as cst
from migrator import matching as m

from migrator.analysis import Facts, unwrap_loader_iter
from migrator.names import assigned_names, dotted

SYNC_CONTEXTS = {"no_sync", "no_backward_sync", "accumulate"}
CLIPS = ("clip_grad_norm_", "clip_grad_value_", "clip_gradients")
_EMPTY = cst.Module([])


def code(node: cst.CSTNode) -> str:
    return _EMPTY.code_for_node(node)


def bare(e: cst.BaseExpression) -> cst.BaseExpression:
    return e.with_changes(lpar=[], rpar=[]) if getattr(e, "lpar", None) else e


@dataclass
class Shape:
    body: List[cst.BaseStatement]
    backward: int  # index of the statement that calls backward
    guard: int  # index of the `if` that steps
    optimizer: str
    model: str
    start: int  # first statement of the forward: the first that names the model
    counter: Optional[str]  # `i` of `for i, b in enumerate(...)` / `for i in range(...)`
    first: int  # the counter's first value (enumerate's start; 0 for range)
    loader: Optional[str]  # what enumerate() walks, unwrapped


def calls(node: cst.CSTNode, attr: str, receivers=None) -> List[cst.Call]:
    found = m.findall(node, m.Call(func=m.Attribute(attr=m.Name(attr))))
    return [c for c in found if receivers is None or dotted(c.func.value) in receivers]


def loss_of(call: cst.Call, fw: str) -> Optional[cst.BaseExpression]:
    """The loss of `loss.backward(...)` or `fw.backward(loss, ...)`."""
    recv = dotted(call.func.value) or ""
    if recv == fw or recv.endswith("." + fw):
        a = call.args[0] if call.args else None
        return a.value if a is not None and a.keyword is None and not a.star else None
    return None if recv in ("torch.autograd", "autograd") else call.func.value


def skips_sync_already(body: cst.CSTNode) -> bool:
    """A sync-skipping context (PTM134's, or a framework's) or nanoGPT's flag is already there."""
    for item in m.findall(body, m.WithItem()):
        if any(c.func.attr.value in SYNC_CONTEXTS for c in m.findall(item, m.Call(func=m.Attribute()))):
            return True
    return bool(m.findall(body, m.Attribute(attr=m.Name("require_backward_grad_sync"))))


def find(loop: cst.For, facts: Facts, fw: str) -> Tuple[Optional[Shape], Optional[str]]:
    """(shape, None) for a loop of the supported shape; (None, why) for an accumulation loop of another
    shape; (None, None) for anything else, or a loop whose sync skipping is already written."""
    if not isinstance(loop.body, cst.IndentedBlock) or skips_sync_already(loop.body):
        return None, None
    body = list(loop.body.body)
    opts = set(facts.optimizers)
    guards = [i for i, s in enumerate(body) if isinstance(s, cst.If) and calls(s.body, "step", opts)]
    stepping = [i for i, s in enumerate(body) if calls(s, "step", opts)]
    if len(guards) != 1 or stepping != guards:
        return None, None
    g = guards[0]
    guard = body[g]
    step = calls(guard.body, "step", opts)[0]
    optimizer = dotted(step.func.value)
    if guard.orelse is not None and calls(guard.orelse, "step", opts):
        return None, None
    models = facts.optimizers.get(optimizer) or []
    zeroing = [i for i, s in enumerate(body) if calls(s, "zero_grad", {optimizer, *models})]
    if zeroing != [g]:
        return None, None  # zeroed every micro-step (or never): not accumulation
    backwards = [i for i, s in enumerate(body) if calls(s, "backward")]
    if not backwards:
        return None, None
    if guard.orelse is not None:
        return None, "the step guard has an `else` branch"
    if len(backwards) != 1 or len(calls(body[backwards[0]], "backward")) != 1 or backwards[0] > g:
        return None, "backward is called more than once, or after the step"
    b = backwards[0]
    if not isinstance(body[b], cst.SimpleStatementLine):
        return None, "backward is nested in another block"
    if len(models) != 1:
        return None, f"cannot tell which model `{optimizer}` trains"
    model = models[0]
    start = next((i for i in range(b + 1) if m.findall(body[i], m.Name(model))), 0)
    counter, first, loader = _counter(loop)
    return Shape(body, b, g, optimizer, model, start, counter, first, loader), None


def _counter(loop: cst.For) -> Tuple[Optional[str], int, Optional[str]]:
    it, target = loop.iter, bare(loop.target)
    if m.matches(it, m.Call(func=m.Name("range"))) and isinstance(target, cst.Name):
        return target.value, 0, None
    if not (m.matches(it, m.Call(func=m.Name("enumerate"))) and it.args and isinstance(target, cst.Tuple)
            and len(target.elements) == 2 and isinstance(target.elements[0].value, cst.Name)):
        return None, 0, None
    first = 0
    for a in it.args[1:]:
        if (a.keyword is not None and a.keyword.value != "start") or not isinstance(a.value, cst.Integer):
            return None, 0, None
        first = int(a.value.value)
    return target.elements[0].value.value, first, unwrap_loader_iter(it.args[0].value)


def rebound(loop: cst.For, counter: Optional[str]) -> Set[str]:
    """Names (dotted) that the loop's header or body binds, but the counter from the header."""
    names = set(assigned_names(loop.target)) - {counter}
    for node in m.findall(loop.body, m.Assign() | m.AugAssign() | m.AnnAssign() | m.For() | m.NamedExpr()):
        targets = node.targets if isinstance(node, cst.Assign) else [node]
        for t in targets:
            names.update(assigned_names(t.target))
    for item in m.findall(loop.body, m.WithItem()):
        if item.asname is not None:
            names.update(assigned_names(item.asname.name))
    return names


def pure(e: cst.BaseExpression, unstable: Set[str]) -> bool:
    """Made only of names and attributes the loop does not rebind, numbers, `len(...)`, arithmetic,
    comparisons and boolean operators: the same value before the forward as at the guard, no side effects."""
    if isinstance(e, (cst.Name, cst.Attribute)):
        name = dotted(e)
        return name is not None and not any(name == u or name.startswith(u + ".") for u in unstable)
    if isinstance(e, (cst.Integer, cst.Float)):
        return True
    if isinstance(e, cst.Call):
        return (dotted(e.func) == "len" and len(e.args) == 1 and e.args[0].keyword is None
                and not e.args[0].star and pure(e.args[0].value, unstable))
    if isinstance(e, (cst.BinaryOperation, cst.BooleanOperation)):
        return pure(e.left, unstable) and pure(e.right, unstable)
    if isinstance(e, cst.UnaryOperation):
        return pure(e.expression, unstable)
    if isinstance(e, cst.Comparison):
        return pure(e.left, unstable) and all(pure(c.comparator, unstable) for c in e.comparisons)
    return False


_OPS = {cst.Equal: "==", cst.NotEqual: "!=", cst.LessThan: "<", cst.GreaterThanEqual: ">=",
        cst.GreaterThan: ">", cst.LessThanEqual: "<=", cst.In: "in", cst.NotIn: "not in", cst.Is: "is",
        cst.IsNot: "is not"}
_FLIP = {"==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">", "in": "not in",
         "not in": "in", "is": "is not", "is not": "is"}


def negate(e: cst.BaseExpression) -> str:
    """Python code for `not e`, written the way a person would (`a % k != 0 and i + 1 != n`)."""
    return _negate(e)[0]


def _negate(e: cst.BaseExpression) -> Tuple[str, str]:
    e = bare(e)
    if isinstance(e, cst.UnaryOperation) and isinstance(e.operator, cst.Not):
        inner = bare(e.expression)
        if isinstance(inner, cst.BooleanOperation):
            return code(inner), "or" if isinstance(inner.operator, cst.Or) else "and"
        if isinstance(inner, (cst.Comparison, cst.UnaryOperation)):
            return code(inner), "atom"
        return f"bool({code(inner)})", "atom"  # `not (i + 1) % k` -> `bool((i + 1) % k)`, a bool like the guard's
    if isinstance(e, cst.BooleanOperation):
        op = "and" if isinstance(e.operator, cst.Or) else "or"
        parts = [_negate(e.left), _negate(e.right)]
        text = f" {op} ".join(f"({t})" if op == "and" and kind == "or" else t for t, kind in parts)
        return text, op
    if isinstance(e, cst.Comparison) and len(e.comparisons) == 1:
        c = e.comparisons[0]
        return f"{code(e.left)} {_FLIP[_OPS[type(c.operator)]]} {code(c.comparator)}", "atom"
    if isinstance(e, (cst.Name, cst.Attribute, cst.Call, cst.Subscript)):
        return f"not {code(e)}", "atom"
    return f"not ({code(e)})", "atom"
