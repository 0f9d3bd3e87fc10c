"""Whether a block binds a name on every path: an optimizer created only under `if args.use_optimizer:` (pytorch
examples' word_language_model) is unbound on the other path, so a setup or clipping inserted after that `if` must
not name it.

Only `if` makes a binding conditional here; a loop, `with` or `try` that assigns the name counts as binding it
(the engine's earlier behaviour, and what scripts rely on). `name = None` binds no object (a placeholder).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import libcst as cst

from migrator import matching as m
from migrator.names import assigned_names

ALWAYS, MAYBE, NO = "always", "maybe", "no"


def _assigns(stmt: cst.CSTNode, name: str) -> bool:
    return any(name in assigned_names(t.target) for a in m.findall(stmt, m.Assign()) for t in a.targets)


def _placeholder(stmt: cst.SimpleStatementLine, name: str) -> bool:
    """`opt = None`: binds no object."""
    return all(isinstance(s, cst.Assign) and m.matches(s.value, m.Name("None"))
               for s in stmt.body if isinstance(s, cst.Assign) and _assigns(s, name))


def block_binds(stmts: Sequence[cst.CSTNode], name: str) -> str:
    """ALWAYS when some statement of the block binds `name` to an object on every path through it, MAYBE when one
    binds it on some paths only, NO otherwise."""
    found = NO
    for stmt in stmts:
        got = stmt_binds(stmt, name)
        if got == ALWAYS:
            return ALWAYS
        if got == MAYBE:
            found = MAYBE
    return found


def _branches(stmt: cst.If) -> Iterable:
    """The blocks of an if / elif / else chain; None stands for the missing `else`."""
    while True:
        yield stmt.body
        if isinstance(stmt.orelse, cst.If):
            stmt = stmt.orelse
            continue
        yield stmt.orelse.body if isinstance(stmt.orelse, cst.Else) else None
        return


def _body(block) -> Sequence[cst.CSTNode]:
    return list(block.body) if isinstance(block, cst.IndentedBlock) else [cst.SimpleStatementLine(body=block.body)]


def stmt_binds(stmt: cst.CSTNode, name: str) -> str:
    """block_binds for one statement."""
    if isinstance(stmt, cst.SimpleStatementLine):
        return NO if not _assigns(stmt, name) or _placeholder(stmt, name) else ALWAYS
    if isinstance(stmt, cst.If):
        got = [NO if b is None else block_binds(_body(b), name) for b in _branches(stmt)]
        return ALWAYS if all(g == ALWAYS for g in got) else NO if all(g == NO for g in got) else MAYBE
    if isinstance(stmt, cst.With):
        return block_binds(_body(stmt.body), name)
    return ALWAYS if _assigns(stmt, name) else NO


def maybe_unbound(stmts: Sequence[cst.CSTNode], names: Iterable[str]) -> set:
    """The names that the block binds on some paths only (see block_binds)."""
    return {n for n in names if block_binds(stmts, n) == MAYBE}
