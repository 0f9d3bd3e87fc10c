"""The few libcst.matchers features the rules use, without importing libcst.matchers.

libcst.matchers defines a matcher class for every node type and costs about 0.17 s to import, half of what
pt-migrate needs to start; the rules only ever match node types with field patterns. Same meaning as libcst's:

    m.Call(func=m.Name("print"))           # node type, then fields; positional patterns follow the node's fields
    m.Name("a") | m.Name("b")              # either
    m.Arg(m.Attribute(attr=m.Name("x")))   # nested
    m.Call(args=[])                        # a sequence field: same length, element by element
    m.matches(node, pattern), m.findall(tree, pattern)   # findall: every matching node, in visiting order
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Tuple

import libcst as cst

_FIELDS: Dict[type, Tuple[str, ...]] = {}


class Pattern:
    __slots__ = ("node_type", "fields")

    def __init__(self, node_type: type, args: tuple, kwargs: dict):
        names = _FIELDS.get(node_type)
        if names is None:
            names = _FIELDS[node_type] = tuple(f.name for f in dataclasses.fields(node_type))
        fields = dict(zip(names, args))
        fields.update(kwargs)
        self.node_type = node_type
        self.fields = fields

    def __or__(self, other) -> "OneOf":
        return OneOf(self, other)

    def test(self, node: Any) -> bool:
        if not isinstance(node, self.node_type):
            return False
        return all(_test(getattr(node, name), want) for name, want in self.fields.items())


class OneOf:
    __slots__ = ("options",)

    def __init__(self, *options):
        flat: List[Any] = []
        for o in options:
            flat.extend(o.options if isinstance(o, OneOf) else (o,))
        self.options = tuple(flat)

    def __or__(self, other) -> "OneOf":
        return OneOf(self, other)

    def test(self, node: Any) -> bool:
        return any(_test(node, o) for o in self.options)


def _test(value: Any, want: Any) -> bool:
    if isinstance(want, (Pattern, OneOf)):
        return want.test(value)
    if isinstance(want, (list, tuple)):
        if not isinstance(value, (list, tuple)) or len(value) != len(want):
            return False
        return all(_test(v, w) for v, w in zip(value, want))
    return value == want


def matches(node: Any, pattern, metadata_resolver=None) -> bool:
    return _test(node, pattern)


class Visitor(cst.CSTVisitor):
    """A CSTVisitor without libcst's per-attribute hooks (`visit_Call_func`, ...), which none of ours define:
    libcst looks each one up by name for every attribute of every node, a good part of a walk's time."""

    def on_visit_attribute(self, node: cst.CSTNode, attribute: str) -> None:
        pass

    def on_leave_attribute(self, node: cst.CSTNode, attribute: str) -> None:
        pass


class _FindAll(Visitor):
    def __init__(self, pattern):
        super().__init__()
        self.pattern = pattern
        self.found: List[cst.CSTNode] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        if self.pattern.test(node):
            self.found.append(node)
        return True


def findall(tree: cst.CSTNode, pattern, metadata_resolver=None) -> List[cst.CSTNode]:
    finder = _FindAll(pattern)
    tree.visit(finder)
    return finder.found


def __getattr__(name: str):
    node_type = getattr(cst, name, None)
    if not (isinstance(node_type, type) and issubclass(node_type, cst.CSTNode)):
        raise AttributeError(f"module 'migrator.matching' has no attribute {name!r}")

    def make(*args, **kwargs) -> Pattern:
        return Pattern(node_type, args, kwargs)

    make.__name__ = name
    globals()[name] = make  # once per node type
    return make
