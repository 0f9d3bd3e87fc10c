"""Several rules in one traversal of the tree.

Each rule pass rebuilds the whole tree (a libcst transform costs about a parse), so rules that act on disjoint
nodes and never remove one (backward, print, seed; the report-only rules) share a traversal: every node goes
through each rule's hooks in registry order, as it would in separate passes. Where a hook removes a node or
changes its type, the later rules could not take it as separate passes would: the traversal is abandoned and the
engine runs the rules one by one. tests/test_engine_shortcuts.py compares both ways on every fixture and example.
"""
from __future__ import annotations

from typing import List, Optional

import libcst as cst
from libcst.metadata import MetadataWrapper


class _Together(cst.CSTTransformer):
    def __init__(self, transformers: list):
        super().__init__()
        self.transformers = transformers
        self.failed = False

    def on_visit(self, node: cst.CSTNode) -> bool:
        descend = False
        for t in self.transformers:  # every one sees every node: their own bookkeeping needs it
            descend = t.on_visit(node) or descend
        return descend

    def on_leave(self, original_node, updated_node):
        result = updated_node
        for t in self.transformers:
            if type(result) is not type(original_node):
                self.failed = True
                result = original_node  # the later rules still see the node, for their bookkeeping
            result = t.on_leave(original_node, result)
        return result

    def on_visit_attribute(self, node: cst.CSTNode, attribute: str) -> None:
        pass  # no rule has per-attribute hooks (tests/test_engine_shortcuts.py)

    def on_leave_attribute(self, node: cst.CSTNode, attribute: str) -> None:
        pass


def apply_together(rules: list, wrapper: MetadataWrapper, ctx) -> Optional[cst.Module]:
    """The tree after all of `rules`, or None when they cannot share the traversal (run them one by one)."""
    transformers = [r.prepared(wrapper, ctx) for r in rules]
    together = _Together(transformers)
    updated = wrapper.module.visit(together)
    if together.failed or type(updated) is not cst.Module:
        return None
    for t in transformers:
        t.place_reports(wrapper.module)
    return updated if any(t.changed for t in transformers) else wrapper.module
