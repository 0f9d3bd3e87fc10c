"""The walk behind PTM114's tracing (rules/_device_flow.py): scopes, bindings, uses, model calls and the nodes where
values meet, each with its place in the flow (statement order, enclosing blocks and loops).

Scopes: the module (the main guard included) and each top-level function (those under the main guard too); a
function inside a function is part of it (its parameters are not followed). Class bodies are not walked.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Set, Tuple

import libcst as cst

from migrator.analysis import MODULE, Facts, is_main_guard
from migrator.names import assigned_names, dotted

# calls on a set-up model that are not its forward
MODEL_NOT_FORWARD = {"parameters", "named_parameters", "buffers", "named_buffers", "modules", "named_modules",
                     "children", "named_children", "state_dict", "load_state_dict", "train", "eval", "zero_grad",
                     "to", "cuda", "cpu", "half", "float", "double", "bfloat16", "apply", "requires_grad_",
                     "register_buffer", "register_parameter", "register_forward_hook", "register_forward_pre_hook",
                     "register_full_backward_hook", "add_module", "get_submodule", "get_parameter", "type",
                     "extra_repr", "share_memory", "mark_forward_method", "configure_optimizers", "make_optimizer"}


@dataclass
class Binding:
    kind: str  # value | item | for | aug | param | import | opaque | def
    value: Optional[cst.CSTNode]
    index: Optional[int]
    stmt: Optional[cst.CSTNode]
    order: int
    blocks: Tuple[int, ...]  # ids of the enclosing blocks
    loops: Tuple[int, ...]  # ids of the enclosing loops
    scope: str
    name: str


@dataclass
class Use:
    node: cst.Name
    order: int
    blocks: Tuple[int, ...]
    loops: Tuple[int, ...]
    scope: str


class Walker(cst.CSTVisitor):
    """Scopes, bindings, uses, model calls and mixing nodes of a module, with their places in the flow."""

    def __init__(self, facts: Facts):
        super().__init__()
        self.models = set(facts.models) | set(facts.model_aliases)
        self.bindings: Dict[Tuple[str, str], List[Binding]] = {}
        self.uses: Dict[int, Use] = {}
        self.uses_of: Dict[Tuple[str, str], List[Use]] = {}
        self.parent: Dict[int, cst.CSTNode] = {}
        self.scope_of: Dict[int, str] = {}
        self.in_guard: Set[int] = set()
        self.sinks: List[cst.Call] = []  # calls of a set-up model
        self.mixes: List[cst.CSTNode] = []  # arithmetic, comparisons and other calls
        self.numpy: List[cst.Call] = []
        self.functions: Dict[str, cst.FunctionDef] = {}
        self.classes: Dict[str, cst.ClassDef] = {}
        self.calls_of: Dict[str, List[cst.Call]] = {}
        self.not_called: Set[str] = set()  # names used other than as the callee of a call
        self._scope: List[str] = [MODULE]
        self._blocks: List[int] = []
        self._loops: List[List[int]] = [[]]
        self._stmts: List[cst.CSTNode] = []
        self._nodes: List[cst.CSTNode] = []
        self._order = 0
        self._guard = 0
        self._callee: Set[int] = set()
        self.seq: Dict[int, int] = {}

    @property
    def scope(self) -> str:
        return self._scope[-1]

    def statement(self, node: cst.CSTNode) -> Optional[cst.CSTNode]:
        """The innermost statement around a node of the walk."""
        while node is not None and not isinstance(node, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
            node = self.parent.get(id(node))
        return node

    def order_of(self, node: cst.CSTNode) -> int:
        return self.seq.get(id(node), 0)

    # -- the walk
    def on_visit(self, node: cst.CSTNode) -> bool:
        if self._nodes:
            self.parent[id(node)] = self._nodes[-1]
        self._nodes.append(node)
        self.seq[id(node)] = len(self.seq)
        if isinstance(node, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
            self._stmts.append(node)
            self._order += 1
        self.scope_of[id(node)] = self.scope
        if self._guard:
            self.in_guard.add(id(node))
        return super().on_visit(node)

    def on_leave(self, original_node: cst.CSTNode) -> None:
        super().on_leave(original_node)  # libcst calls it for a node whose children were skipped too
        self._nodes.pop()
        if isinstance(original_node, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
            self._stmts.pop()

    # -- scopes and blocks
    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        if len(self._scope) == 1:
            self.classes[node.name.value] = node
        self._bind(node.name.value, "def", None, None)
        return False  # class bodies are not followed

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        self._callee.add(id(node.name))  # its own name is no use of it
        self._bind(node.name.value, "def", None, None)
        params = list(node.params.posonly_params) + list(node.params.params) + list(node.params.kwonly_params)
        stars = [s for s in (node.params.star_arg, node.params.star_kwarg) if isinstance(s, cst.Param)]
        if len(self._scope) == 1:
            self.functions.setdefault(node.name.value, node)
            self._scope.append(node.name.value)
            self._loops.append([])
            self._blocks.append(id(node.body))
            for p in params:
                self._bind(p.name.value, "param", p, None, order=-1)
            for s in stars:
                self._bind(s.name.value, "opaque", None, None, order=-1)
            self._blocks.pop()
        else:  # a function in a function: its parameters are not followed, its body reads the enclosing names
            for p in params + stars:
                self._bind(p.name.value, "opaque", None, None)
        return True

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        if len(self._scope) > 1 and self.functions.get(self._scope[-1]) is node:
            self._scope.pop()
            self._loops.pop()

    def visit_Lambda(self, node: cst.Lambda) -> bool:
        return False

    def visit_If(self, node: cst.If) -> None:
        if len(self._scope) == 1 and is_main_guard(node):
            self._guard += 1

    def leave_If(self, node: cst.If) -> None:
        if len(self._scope) == 1 and is_main_guard(node):
            self._guard -= 1

    def visit_IndentedBlock(self, node: cst.IndentedBlock) -> None:
        self._blocks.append(id(node))

    def leave_IndentedBlock(self, node: cst.IndentedBlock) -> None:
        self._blocks.pop()

    def visit_For(self, node: cst.For) -> None:
        self._loops[-1].append(id(node))
        for n in assigned_names(node.target):
            self._bind(n, "for", node, None)

    def leave_For(self, node: cst.For) -> None:
        self._loops[-1].pop()

    def visit_While(self, node: cst.While) -> None:
        self._loops[-1].append(id(node))

    def leave_While(self, node: cst.While) -> None:
        self._loops[-1].pop()

    # -- bindings
    def _bind(self, name: str, kind: str, value, index, order: Optional[int] = None) -> None:
        if "." in name:
            return
        b = Binding(kind, value, index, self._stmts[-1] if self._stmts else None,
                    self._order if order is None else order, tuple(self._blocks), tuple(self._loops[-1]),
                    self.scope, name)
        self.bindings.setdefault((self.scope, name), []).append(b)

    def visit_Assign(self, node: cst.Assign) -> None:
        for t in node.targets:
            target = t.target
            if isinstance(target, (cst.Tuple, cst.List)):
                for i, el in enumerate(target.elements):
                    if isinstance(el.value, cst.Name) and not isinstance(el, cst.StarredElement):
                        self._bind(el.value.value, "item", node.value, i)
                    else:
                        for n in assigned_names(el.value):
                            self._bind(n, "opaque", None, None)
            elif isinstance(target, cst.Name):
                self._bind(target.value, "value", node.value, None)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if node.value is not None and isinstance(node.target, cst.Name):
            self._bind(node.target.value, "value", node.value, None)

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        if isinstance(node.target, cst.Name):
            self._bind(node.target.value, "aug", node.value, None)
        self.mixes.append(node)  # `total += model(x).sum()`: the target meets the value

    def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
        if isinstance(node.target, cst.Name):
            self._bind(node.target.value, "value", node.value, None)

    def visit_WithItem(self, node: cst.WithItem) -> None:
        if node.asname is not None:
            for n in assigned_names(node.asname.name):
                self._bind(n, "opaque", None, None)

    def visit_ExceptHandler(self, node: cst.ExceptHandler) -> None:
        if node.name is not None:
            for n in assigned_names(node.name.name):
                self._bind(n, "opaque", None, None)

    def visit_CompFor(self, node: cst.CompFor) -> None:
        for n in assigned_names(node.target):
            self._bind(n, "for", node, None)

    def visit_Global(self, node: cst.Global) -> None:
        for item in node.names:
            self._bind(item.name.value, "opaque", None, None)

    def visit_Import(self, node: cst.Import) -> bool:
        for a in node.names:
            name = a.asname.name.value if a.asname and isinstance(a.asname.name, cst.Name) else (
                dotted(a.name) or "").split(".")[0]
            self._bind(name, "import", None, None)
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        if not isinstance(node.names, cst.ImportStar):
            for a in node.names:
                name = a.asname.name.value if a.asname and isinstance(a.asname.name, cst.Name) else dotted(a.name)
                self._bind(name or "", "import", None, None)
        return False

    # -- uses and calls
    def visit_Name(self, node: cst.Name) -> None:
        use = Use(node, self._order, tuple(self._blocks), tuple(self._loops[-1]), self.scope)
        self.uses[id(node)] = use
        self.uses_of.setdefault((self.scope, node.value), []).append(use)
        if id(node) not in self._callee:
            self.not_called.add(node.value)

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self._callee.add(id(node.attr))

    def visit_Arg(self, node: cst.Arg) -> None:
        if node.keyword is not None:
            self._callee.add(id(node.keyword))

    def visit_Param(self, node: cst.Param) -> None:
        self._callee.add(id(node.name))

    def visit_Call(self, node: cst.Call) -> None:
        if isinstance(node.func, cst.Name):
            self._callee.add(id(node.func))
            self.calls_of.setdefault(node.func.value, []).append(node)
        if self.is_model_call(node):
            self.sinks.append(node)
        else:
            self.mixes.append(node)
        if isinstance(node.func, cst.Attribute) and node.func.attr.value == "numpy" and not node.args:
            self.numpy.append(node)

    def visit_BinaryOperation(self, node: cst.BinaryOperation) -> None:
        self.mixes.append(node)

    def visit_Comparison(self, node: cst.Comparison) -> None:
        self.mixes.append(node)

    def is_model_call(self, node: cst.Call) -> bool:
        func = node.func
        if isinstance(func, cst.Name):
            return func.value in self.models
        if isinstance(func, cst.Attribute):
            return dotted(func.value) in self.models and func.attr.value not in MODEL_NOT_FORWARD
        return False


def reaching(bindings: List[Binding], use: Use) -> List[Binding]:
    """The bindings whose value a use can read (see the module docstring)."""
    before = [b for b in bindings if b.order < use.order or (b.order == use.order and b.kind == "for")]
    blocks = set(use.blocks)
    kill = None
    for b in before:
        if b.kind != "aug" and set(b.blocks) <= blocks and (kill is None or b.order >= kill.order):
            kill = b
    found = list(before) if kill is None else [kill] + [b for b in before if b.order > kill.order]
    carried = [loop for loop in use.loops if kill is None or loop not in kill.loops]
    for b in bindings:
        if b.order >= use.order and b not in found and any(loop in b.loops for loop in carried):
            found.append(b)
    return found
