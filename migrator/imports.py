"""Qualified names read off a module's import statements: what the rules ask of a name, without a scope analysis.

libcst's QualifiedNameProvider builds the scopes of the whole module, which costs about ten parses of it, and a
rule pass would need it again after every pass that changed the tree. The rules only ask whether a name is
`torch.save`, `torch.distributed.all_reduce`, ...: the import statements decide that, and `ast` reads them in
about a parse. The analysis, once per file, still uses the provider.

One difference: a local name that shadows an import (a parameter called `dist`) still resolves to the import
here. Names that no import binds resolve to nothing, as with the provider for an unbound name.
"""
from __future__ import annotations

import ast
from typing import Dict, Iterator, Optional, Set

import libcst as cst
from libcst.metadata import QualifiedName, QualifiedNameProvider, QualifiedNameSource

from migrator.names import dotted


class ImportTable:
    def __init__(self, source: str):
        self.aliases: Dict[str, Set[str]] = {}
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return  # the parse that got the tree here is libcst's; the table is then empty, never wrong
        for node in _statements(tree.body):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        self._add(a.asname, a.name)
                    else:
                        head = a.name.split(".")[0]
                        self._add(head, head)
            elif isinstance(node, ast.ImportFrom):
                base = "." * node.level + (node.module or "")
                for a in node.names:
                    if a.name != "*":
                        self._add(a.asname or a.name, f"{base}.{a.name}" if node.module else base + a.name)

    def _add(self, alias: str, qualified: str) -> None:
        self.aliases.setdefault(alias, set()).add(qualified)

    def names(self, node: cst.CSTNode) -> Set[str]:
        name = dotted(node) if isinstance(node, (cst.Name, cst.Attribute)) else None
        if not name:
            return set()
        head, _, rest = name.partition(".")
        return {q + "." + rest if rest else q for q in self.aliases.get(head, ())}


def _statements(body) -> Iterator[ast.stmt]:
    """Every statement, nested ones included (imports inside functions, `try`, `if`), without visiting expressions."""
    for stmt in body:
        yield stmt
        for field in ("body", "orelse", "finalbody"):
            inner = getattr(stmt, field, None)
            if isinstance(inner, list):
                yield from _statements(inner)
        for handler in getattr(stmt, "handlers", ()):
            yield from _statements(handler.body)
        for case in getattr(stmt, "cases", ()):
            yield from _statements(case.body)


class ImportQualifiedNames:
    """Stands in for the QualifiedNameProvider's mapping in `transformer.metadata`: node -> {QualifiedName}."""

    def __init__(self, source: str):
        self.table = ImportTable(source)

    def get(self, node: cst.CSTNode, default=None):
        names = self.table.names(node)
        if not names:
            return default if default is not None else set()
        return {QualifiedName(n, QualifiedNameSource.IMPORT) for n in names}

    def __getitem__(self, node: cst.CSTNode):
        return self.get(node, set())


def with_import_names(visitor, module: cst.Module, source: Optional[str] = None) -> cst.Module:
    """Give a visitor that declares QualifiedNameProvider the import-table names instead; returns the module to
    visit with `module.visit(visitor)` (not through a MetadataWrapper, which would compute the provider)."""
    visitor.metadata = {QualifiedNameProvider: ImportQualifiedNames(source if source is not None else module.code)}
    return module
