"""Shared by PTM141 and PTM142: giving the `Accelerator(...)` constructor a keyword argument.

When the script already creates the object, the call is edited where it is; otherwise the argument goes to
`Facts.accelerator_kwargs` and PTM100 writes it when it creates the object. A name passed as a value must
be bound before the constructor runs: only a module-level constant bound once to an integer qualifies.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Set, Tuple

import libcst as cst
from migrator import matching as m

from migrator.analysis import MAIN_GUARD, MODULE, Facts, is_main_guard
from migrator.names import dotted


@dataclass
class Slot:
    call: Optional[cst.Call]  # the script's own constructor call; None: PTM100 creates it
    anchor: Optional[int]  # top-level statements before this index have run when the constructor runs
    keywords: Set[str]


def _ctors(module: cst.Module, fw: str):
    pattern = m.Assign(targets=[m.AssignTarget(m.Name(fw))], value=m.Call())
    for i, stmt in enumerate(module.body):
        for a in m.findall(stmt, pattern):
            if (dotted(a.value.func) or "").split(".")[-1] == "Accelerator":
                yield i, a.value


def _call_site(module: cst.Module, index: int) -> Optional[int]:
    """The first top-level statement after a top-level function that names it (the call of `main()`); the end
    of the module when none does: then it can only be called once the module has run."""
    fn = module.body[index]
    if not isinstance(fn, cst.FunctionDef):
        return None
    return next((j for j, s in enumerate(module.body) if j > index and m.findall(s, m.Name(fn.name.value))),
                len(module.body))


def slot(module: cst.Module, facts: Facts) -> Optional[Slot]:
    """Where the constructor is (or will be); None when it cannot be told."""
    if facts.fw_exists:
        found = list(_ctors(module, facts.fw))
        if len(found) != 1:
            return None
        i, call = found[0]
        stmt = module.body[i]
        anchor = _call_site(module, i) if isinstance(stmt, cst.FunctionDef) else i
        if isinstance(stmt, cst.ClassDef):
            return None
        keywords = {a.keyword.value for a in call.args if a.keyword is not None}
        return Slot(call, anchor, keywords | ({"**"} if any(a.star == "**" for a in call.args) else set()))
    scope = facts.setup_scope
    if scope is None:
        return None
    if scope == MODULE:
        return Slot(None, None, set(facts.accelerator_kwargs))
    if scope == MAIN_GUARD:
        anchor = next((i for i, s in enumerate(module.body) if is_main_guard(s)), None)
        return Slot(None, anchor, set(facts.accelerator_kwargs))
    index = next((i for i, s in enumerate(module.body)
                  if isinstance(s, cst.FunctionDef) and s.name.value == scope), None)
    return Slot(None, None if index is None else _call_site(module, index), set(facts.accelerator_kwargs))


def constant(module: cst.Module, name: str) -> Optional[Tuple[int, int]]:
    """(top-level index, value) of `NAME = <int>`, when that is the only binding of the name in the module."""
    found = None
    for i, stmt in enumerate(module.body):
        if m.matches(stmt, m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name(name))],
                                                                value=m.Integer())])):
            if found is not None:
                return None
            found = (i, int(stmt.body[0].value.value, 0))
    return found if found is not None and _bindings(module, name) == 1 else None


def _bindings(module: cst.Module, name: str) -> int:
    n = m.Name(name)
    binders = (m.AssignTarget(n) | m.AugAssign(target=n) | m.AnnAssign(target=n) | m.NamedExpr(target=n)
               | m.Param(name=n) | m.ImportAlias(asname=m.AsName(name=n)) | m.ImportAlias(name=n)
               | m.FunctionDef(name=n) | m.ClassDef(name=n) | m.NameItem(name=n) | m.AsName(name=n)
               | m.Del(target=n))
    count = len(m.findall(module, binders))
    for node in m.findall(module, m.For() | m.CompFor() | m.AssignTarget()):
        target = node.target
        if not isinstance(target, cst.Name) and m.findall(target, n):
            count += 1  # unpacking: `NAME, x = ...`, `for NAME, x in ...`
        elif isinstance(node, (cst.For, cst.CompFor)) and isinstance(target, cst.Name) and target.value == name:
            count += 1
    return count


def value_code(module: cst.Module, where: Slot, k: cst.BaseExpression) -> Optional[str]:
    """Code for a constructor argument that must equal `k` (an integer, or the name of a module constant)."""
    if isinstance(k, cst.Integer):
        return k.value
    if not isinstance(k, cst.Name):
        return None
    const = constant(module, k.value)
    if const is None:
        return None
    if where.anchor is not None and const[0] < where.anchor:
        return k.value
    if where.call is None and where.anchor is None:
        return str(const[1])  # module-level script: PTM100 may put the object above the constant
    return None


class AddKeywords(cst.CSTTransformer):
    """Append `kw=value` arguments to one call (matched by identity, in a pass over the tree it came from)."""

    def __init__(self, call: cst.Call, keywords: dict):
        super().__init__()
        self.call, self.keywords = call, keywords

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call):
        if original_node is not self.call:
            return updated_node
        return add_keywords(updated_node, self.keywords)


def add_keywords(call: cst.Call, keywords: dict) -> cst.Call:
    new = cst.parse_expression("f(" + ", ".join(f"{k}={v}" for k, v in keywords.items()) + ")").args
    args = list(call.args)
    if args:
        args[-1] = args[-1].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
    return call.with_changes(args=args + list(new))
