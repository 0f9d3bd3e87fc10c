"""Add the imports the rules ask for, as libcst's AddImportsVisitor would, without libcst.codemod.

libcst.codemod pulls in libcst.matchers (about 0.17 s of start-up) and the visitor walks and copies the whole
tree; the rules only ever ask for plain absolute imports (`import os`, `from lightning.fabric import Fabric`),
which this handles with the same result: an import already at the top of the module is not repeated, a name
joins an existing `from x import ...` of the top block, and new lines go after the top block of imports
(`import a` lines sorted, then `from a import b, c` lines sorted), with an empty line before the code.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Set

import libcst as cst

from migrator.names import dotted


class ImportRequests:
    def __init__(self):
        self.modules: Set[str] = set()
        self.objects: Dict[str, Set[str]] = {}

    def add(self, module: str, obj: Optional[str] = None) -> None:
        if obj is None:
            self.modules.add(module)
        else:
            self.objects.setdefault(module, set()).add(obj)

    def __bool__(self) -> bool:
        return bool(self.modules or self.objects)


def _one_import(stmt: cst.CSTNode):
    if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 and \
            isinstance(stmt.body[0], (cst.Import, cst.ImportFrom)):
        return stmt.body[0]
    return None


def _skip_first(module: cst.Module) -> bool:
    """A docstring or a `__strict__ = ...` flag stays first."""
    if not module.body or not isinstance(module.body[0], cst.SimpleStatementLine) or len(module.body[0].body) != 1:
        return False
    small = module.body[0].body[0]
    if isinstance(small, cst.Expr):
        return isinstance(small.value, cst.SimpleString)
    return (isinstance(small, cst.Assign) and len(small.targets) == 1 and
            isinstance(small.targets[0].target, cst.Name) and small.targets[0].target.value == "__strict__")


def add_imports(module: cst.Module, requests: ImportRequests) -> cst.Module:
    if not requests:
        return module
    modules = set(requests.modules)
    objects = {mod: set(objs) for mod, objs in sorted(requests.objects.items())}
    start = 1 if _skip_first(module) else 0
    top: List[int] = []  # indexes of the top block's import statements
    for i in range(start, len(module.body)):
        if _one_import(module.body[i]) is None:
            break
        top.append(i)
    for i in top:  # what the top block already imports
        imp = _one_import(module.body[i])
        if isinstance(imp, cst.Import):
            modules -= {dotted(a.name) for a in imp.names if a.asname is None}
        elif not imp.relative and imp.module is not None:
            mod = dotted(imp.module)
            if mod in objects:
                if isinstance(imp.names, cst.ImportStar):
                    del objects[mod]
                else:
                    objects[mod] -= {dotted(a.name) for a in imp.names if a.asname is None}
                    if not objects[mod]:
                        del objects[mod]
    body = list(module.body)
    for i in top:  # a name joins the first `from mod import ...` of its module
        imp = _one_import(body[i])
        if isinstance(imp, cst.ImportFrom) and not imp.relative and imp.module is not None and \
                not isinstance(imp.names, cst.ImportStar) and dotted(imp.module) in objects:
            new = [cst.ImportAlias(name=cst.Name(n)) for n in sorted(objects.pop(dotted(imp.module)))]
            body[i] = body[i].with_changes(body=[imp.with_changes(names=[*new, *imp.names])])
    if not modules and not objects:
        return module.with_changes(body=body)
    end = top[-1] + 1 if top else start
    config = module.config_for_parsing
    added = [cst.parse_statement(f"import {mod}", config=config) for mod in sorted(modules)]
    added += [cst.parse_statement(f"from {mod} import {', '.join(sorted(objs))}", config=config)
              for mod, objs in objects.items()]
    after = body[end:]
    if after:  # an empty line between the imports and the code
        first = after[0]
        if not first.leading_lines:
            after[0] = first.with_changes(leading_lines=(cst.EmptyLine(),))
        elif first.leading_lines[0].comment is not None:
            after[0] = first.with_changes(leading_lines=(cst.EmptyLine(), *first.leading_lines))
    return module.with_changes(body=[*body[:end], *added, *after])
