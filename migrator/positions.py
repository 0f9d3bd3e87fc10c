"""Start positions of a few nodes, from one plain code generation of the module.

libcst's PositionProvider records a range for every node and counts lines token by token: several times a plain
`module.code`. Diagnostics need the start of the handful of nodes a pass reported on, so this records where
those nodes start in the token stream and counts lines once at the end. Same numbers as PositionProvider's
`.start`: the syntactic start where libcst records one, else where the node's code begins.
"""
from __future__ import annotations

import contextlib
import re
from typing import Dict, Iterable, Tuple

import libcst as cst
from libcst._nodes.internal import CodegenState

_NEWLINE = re.compile(r"\r\n?|\n")
_NULL = contextlib.nullcontext()


class _MarkingState(CodegenState):
    def __init__(self, module: cst.Module, targets: set):
        super().__init__(default_indent=module.default_indent, default_newline=module.default_newline)
        self.targets = targets
        self.before: Dict[int, int] = {}  # id(node) -> index of its first token
        self.syntactic: Dict[int, int] = {}
        self.alias: Dict[int, int] = {}  # node -> the child whose start is its start

    def before_codegen(self, node) -> None:
        key = id(node)
        if key in self.targets and key not in self.before:
            self.before[key] = len(self.tokens)

    def record_syntactic_position(self, node, *, start_node=None, end_node=None):
        key = id(node)
        if key in self.targets and key not in self.syntactic and key not in self.alias:
            if start_node is None:
                self.syntactic[key] = len(self.tokens)
            else:
                self.alias[key] = id(start_node)
                self.targets.add(id(start_node))
        return _NULL


def start_positions(module: cst.Module, nodes: Iterable[cst.CSTNode]) -> Dict[int, Tuple[int, int]]:
    """id(node) -> (line, column), one-based line and zero-based column, for each node found in `module`."""
    targets = {id(n) for n in nodes}
    if not targets:
        return {}
    state = _MarkingState(module, set(targets))
    module._codegen(state)
    index: Dict[int, int] = {}
    for key in targets:
        key2 = state.alias.get(key, key)
        found = state.syntactic.get(key2, state.before.get(key2))
        if found is not None:
            index[key] = found
    out: Dict[int, Tuple[int, int]] = {}
    line, column, done = 1, 0, 0
    tokens = state.tokens
    for key, at in sorted(index.items(), key=lambda kv: kv[1]):
        if at > done:
            chunk = "".join(tokens[done:at])
            parts = _NEWLINE.split(chunk)
            if len(parts) == 1:
                column += len(chunk)
            else:
                line += len(parts) - 1
                column = len(parts[-1])
            done = at
        out[key] = (line, column)
    return out
