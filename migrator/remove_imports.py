"""Remove imports nothing uses any more, as libcst's RemoveImportsVisitor would, in the common shapes.

RemoveImportsVisitor needs libcst.codemod (0.17 s to import) and a scope analysis of the module. The imports the
engine removes (torch.distributed, DDP, GradScaler...) sit at the top level as plain lines; for those, "used"
means what the visitor means: the bound name is read somewhere, listed in `__all__`, or named in a string
annotation. Shapes this does not handle (a parenthesized import, several statements on one line) return None,
and the caller falls back to the visitor.
"""
from __future__ import annotations

import ast
import re
from typing import List, Optional, Set, Tuple

import libcst as cst

from migrator.names import dotted

Candidate = Tuple[str, Optional[str], Optional[str]]  # (module, object or None, alias or None)


def _used_names(source: str) -> Optional[Set[str]]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    used: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Store):
            used.add(node.id)
        elif isinstance(node, (ast.arg, ast.AnnAssign, ast.FunctionDef, ast.AsyncFunctionDef)):
            ann = node.returns if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else node.annotation
            if isinstance(ann, ast.Constant) and isinstance(ann.value, str):
                used.update(re.findall(r"[A-Za-z_]\w*", ann.value))
    for node in tree.body:  # __all__ = [...] exports
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets) \
                and isinstance(node.value, (ast.List, ast.Tuple)):
            used.update(e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str))
    return used


def _bound(alias: cst.ImportAlias) -> List[str]:
    """The names an alias binds, as the visitor checks them: `import a.b` -> a.b and a; `as x` -> x."""
    if alias.asname is not None:
        return [alias.asname.name.value]
    name = dotted(alias.name) or ""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


def _unused_aliases(small: cst.BaseSmallStatement, wanted: set, used: Set[str]) -> list:
    if isinstance(small, cst.ImportFrom):
        if isinstance(small.names, cst.ImportStar) or small.module is None or small.relative:
            return []
        mod = dotted(small.module)
        keys = [(a, (mod, dotted(a.name), a.asname.name.value if a.asname else None)) for a in small.names]
    elif isinstance(small, cst.Import):
        keys = [(a, (dotted(a.name), None, a.asname.name.value if a.asname else None)) for a in small.names]
    else:
        return []
    return [a for a, key in keys if key in wanted and not any(n in used for n in _bound(a))]


def remove_unused(module: cst.Module, candidates: List[Candidate], source: str) -> Optional[cst.Module]:
    used = _used_names(source)
    if used is None:
        return None
    wanted = {(mod, obj, asname) for mod, obj, asname in candidates}
    body = list(module.body)
    changed = False
    for i, stmt in enumerate(module.body):
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        for small in stmt.body:
            drop = _unused_aliases(small, wanted, used)
            if not drop:
                continue
            if len(stmt.body) != 1 or (isinstance(small, cst.ImportFrom) and small.lpar is not None):
                return None  # not a shape handled here
            keep = [a for a in small.names if a not in drop]
            changed = True
            if not keep:
                body[i] = None
                continue
            if keep[-1] is not small.names[-1]:
                keep[-1] = keep[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
            body[i] = stmt.with_changes(body=[small.with_changes(names=keep)])
    if not changed:
        return module
    return module.with_changes(body=[s for s in body if s is not None])
