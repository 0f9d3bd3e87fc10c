"""Does a module train? The part of migrator.analysis's `is_training` that a lone `.backward()` needs.

A file is migrated only when it trains: it steps an optimizer, or a sibling entry script hands it the framework
object (migrator.project), or its `.backward()` is reached from a loop. A library utility that calls
`.backward()` once (lightning's `measure_flops`, a gradient check) trains nothing: it is left byte for byte,
without a TODO, because a new `fabric` parameter would break every caller and a TODO on library code is noise.

Read with the standard library's `ast` (about a parse of the file, no libcst walk): only files with a plain
backward and no optimizer step get here.
"""
from __future__ import annotations

import ast
from typing import Dict, Iterable, Optional, Set

_LOOPS = (ast.For, ast.AsyncFor, ast.While)


def _dotted(node: ast.AST) -> Optional[str]:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


class _Walk(ast.NodeVisitor):
    def __init__(self, framework_receivers: Set[str]):
        self.skip = framework_receivers
        self.func = "<module>"
        self.loops = 0
        self.calls: Dict[str, Set[str]] = {}  # function name -> names of what it calls
        self.called_in_loops: Set[str] = set()
        self.backward_in: Set[str] = set()  # functions holding a plain backward outside any loop of theirs
        self.in_loop = False  # a plain backward inside a loop

    def _function(self, node) -> None:
        saved = self.func, self.loops
        self.func, self.loops = node.name, 0  # a def inside a loop runs only when called
        for d in node.decorator_list:
            self.visit(d)
        for stmt in node.body:
            self.visit(stmt)
        self.func, self.loops = saved

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def _loop(self, node) -> None:
        for head in (getattr(node, "target", None), getattr(node, "iter", None), getattr(node, "test", None)):
            if head is not None:
                self.visit(head)
        self.loops += 1
        for stmt in node.body:
            self.visit(stmt)
        self.loops -= 1
        for stmt in node.orelse:
            self.visit(stmt)

    visit_For = visit_AsyncFor = visit_While = _loop

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else (func.id if isinstance(func, ast.Name) else None)
        if name == "backward" and isinstance(func, ast.Attribute) and self._plain(func.value):
            if self.loops:
                self.in_loop = True
            else:
                self.backward_in.add(self.func)
        elif name:
            self.calls.setdefault(self.func, set()).add(name)
            if self.loops:
                self.called_in_loops.add(name)
        self.generic_visit(node)

    def _plain(self, receiver: ast.AST) -> bool:
        """Not `torch.autograd.backward(...)`, not the framework's own `fabric.backward(...)`."""
        name = _dotted(receiver)
        return not (name and (name in self.skip or name.rsplit(".", 1)[-1] == "autograd"))


def backward_reached_from_loop(source: str, framework_receivers: Iterable[str] = ()) -> bool:
    """Is a plain `.backward()` of `source` inside a `for` / `while` loop, or in a function (or method, matched by
    name) that a loop of this module calls, directly or through other functions of the module? True when the
    source does not parse with `ast` (newer syntax): then the backward alone decides, as it always did."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return True
    walk = _Walk(set(framework_receivers))
    try:
        walk.visit(tree)
    except RecursionError:
        return True
    if walk.in_loop:
        return True
    if not walk.backward_in:
        return False
    reached: Set[str] = set()
    todo = list(walk.called_in_loops)
    while todo:
        f = todo.pop()
        if f in reached:
            continue
        reached.add(f)
        todo.extend(walk.calls.get(f, ()))
    return bool(walk.backward_in & reached)
