"""The few libcst.matchers features the rules use, without importing libcst.matchers.

libcst.matchers defines a matcher class for every node type and costs about 0.17 s to import, half of what
pt-migrate needs to start; the rules only ever match node types with field patterns. Same meaning as libcst's:

    m.Call(func=m.Name("print"))           # node type, then fields; positional patterns follow the node's fields
    m.Name("a") | m.Name("b")              # either
    m.Arg(m.Attribute(attr=m.Name("x")))   # nested
    m.Call(args=[])                        # a sequence field: same length, element by element
    m.matches(node, pattern), m.findall(tree, pattern)   # findall: every matching node, in visiting order
    m.iter_nodes(tree)                     # every node, in visiting order, without libcst's copy of each
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Tuple

import libcst as cst

_FIELDS: Dict[type, Tuple[str, ...]] = {}


def _kinds(node_type: type) -> frozenset:
    """`node_type` and every subclass of it: a set lookup of `type(node)` instead of isinstance, which goes
    through ABCMeta for libcst's node classes (several times slower)."""
    kinds = _KINDS.get(node_type)
    if kinds is None:
        found, todo = {node_type}, [node_type]
        while todo:
            for sub in todo.pop().__subclasses__():
                if sub not in found:
                    found.add(sub)
                    todo.append(sub)
        kinds = _KINDS[node_type] = frozenset(found)
    return kinds


_KINDS: Dict[type, frozenset] = {}


class Pattern:
    __slots__ = ("node_type", "fields", "kinds")

    def __init__(self, node_type: type, args: tuple, kwargs: dict):
        names = _FIELDS.get(node_type)
        if names is None:
            names = _FIELDS[node_type] = tuple(f.name for f in dataclasses.fields(node_type))
        fields = dict(zip(names, args))
        fields.update(kwargs)
        self.node_type = node_type
        self.fields = fields
        self.kinds = _kinds(node_type)

    def __or__(self, other) -> "OneOf":
        return OneOf(self, other)

    def test(self, node: Any) -> bool:
        if type(node) not in self.kinds:
            return False
        return all(_test(getattr(node, name), want) for name, want in self.fields.items())


class OneOf:
    __slots__ = ("options", "kinds")

    def __init__(self, *options):
        flat: List[Any] = []
        for o in options:
            flat.extend(o.options if isinstance(o, OneOf) else (o,))
        self.options = tuple(flat)
        self.kinds = frozenset().union(*(o.kinds for o in flat))

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


class _Order(cst.CSTVisitor):
    """Records the attributes that libcst's own visit of one node goes through, in order, without entering them."""

    def __init__(self):
        super().__init__()
        self.names: List[str] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        return False

    def on_leave(self, original_node: cst.CSTNode) -> None:
        pass

    def on_visit_attribute(self, node: cst.CSTNode, attribute: str) -> None:
        if attribute not in self.names:
            self.names.append(attribute)

    def on_leave_attribute(self, node: cst.CSTNode, attribute: str) -> None:
        pass


_ORDER: Dict[type, Tuple[str, ...]] = {}


def _child_names(node: cst.CSTNode) -> Tuple[str, ...]:
    """The attributes holding a node's children, in libcst's visiting order (source order), learnt once per node
    type from libcst's own `_visit_and_replace_children`: every visit helper reports its attribute, whatever the
    value (None, a sentinel, a sequence or a node), so the order depends on the type only. The one exception, an
    f-string part's `format_spec`, is visited last and only when present: a field that the recording missed and
    that could hold a node is walked last."""
    kind = type(node)
    names = _ORDER.get(kind)
    if names is None:
        recorder = _Order()
        node._visit_and_replace_children(recorder)
        rest = [f.name for f in dataclasses.fields(node) if f.name not in recorder.names
                and not isinstance(getattr(node, f.name), (str, int, float))]
        names = _ORDER[kind] = tuple(recorder.names + rest)
    return names


def iter_nodes(tree: cst.CSTNode):
    """Every node of `tree`, itself first, in the order a libcst visitor's `on_visit` sees them. A read-only walk:
    libcst's `visit` builds a copy of every node it passes (`_visit_and_replace_children`) even for a visitor that
    changes nothing, which is most of the cost of a search; this reads the attributes instead."""
    stack = [tree]
    pop, push, order, sequence = stack.pop, stack.extend, _ORDER, (tuple, list)
    while stack:
        node = pop()
        yield node
        names = order.get(type(node))
        if names is None:
            names = _child_names(node)
        if not names:
            continue
        children = []
        for name in names:
            value = getattr(node, name)
            kind = type(value)
            if kind in order or kind in _NODE_TYPES:
                children.append(value)
            elif kind in sequence:
                children.extend(value)
            elif value is not None and kind is not _SENTINEL and isinstance(value, cst.CSTNode):  # a type not met yet
                children.append(value)
        if children:
            children.reverse()
            push(children)


_SENTINEL = type(cst.MaybeSentinel.DEFAULT)
_NODE_TYPES = frozenset(c for c in vars(cst).values() if isinstance(c, type) and issubclass(c, cst.CSTNode))


def findall(tree: cst.CSTNode, pattern, metadata_resolver=None) -> List[cst.CSTNode]:
    """Every node of `tree` (itself included) that matches `pattern`, in libcst's visiting order, as
    libcst.matchers.findall gives them. Node types are checked first, by a set lookup."""
    test, kinds = pattern.test, pattern.kinds
    return [node for node in iter_nodes(tree) if type(node) in kinds and test(node)]


def __getattr__(name: str):
    node_type = getattr(cst, name, None)
    if not (isinstance(node_type, type) and issubclass(node_type, cst.CSTNode)):
        raise AttributeError(f"module 'migrator.matching' has no attribute {name!r}")

    def make(*args, **kwargs) -> Pattern:
        return Pattern(node_type, args, kwargs)

    make.__name__ = name
    globals()[name] = make  # once per node type
    return make
