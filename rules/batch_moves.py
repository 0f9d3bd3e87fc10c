"""PTM103 batch-moves: device moves of batches from a set-up loader are removed.

What it does: inside `for ... in loader` where `loader` went through `setup_dataloaders` / `prepare`
(in the setup scope, or a helper parameter that every call feeds such a loader), moves of the batch and of
names taken from it are removed: `x, y = x.to(device), y.to(device)` disappears,
`batch = {k: v.to(device) for k, v in batch.items()}` disappears, `model(x.to(device))` -> `model(x)`.

Why: set-up loaders already deliver batches on the process's device.

Example: `data, target = data.to(device), target.to(device)` is deleted.

Fabric form and Accelerate form: the same.

Fix safety: safe. Tensors that do not come from a set-up loader keep their move (the device variable now
names the framework's device); a name that is also bound to something else in the same function is
not treated as a batch.
"""
from __future__ import annotations

from typing import Dict, List, Set

import libcst as cst
from migrator import matching as m

from migrator.analysis import MAIN_GUARD, MODULE, batch_names, unwrap_loader_iter
from migrator.names import assigned_names, dotted
from migrator.rules._moves import rooted_in, strip_move
from migrator.rules.base import Example, Context, Rule, RuleTransformer

COMPREHENSIONS = (cst.ListComp, cst.SetComp, cst.DictComp, cst.GeneratorExp)


def _strip_all(node: cst.BaseExpression, facts) -> cst.BaseExpression:
    while isinstance(node, cst.Call):
        s = strip_move(node, facts)
        if s is None:
            break
        node = s
    return node


def derived_names(stmts: List[cst.CSTNode], base: Set[str], facts) -> Set[str]:
    """Names that only ever hold (parts of) batches: the loop targets and what is unpacked from them."""
    bindings: Dict[str, List[cst.CSTNode]] = {}

    def bind(target, value):
        for n in assigned_names(target):
            if "." not in n:
                bindings.setdefault(n, []).append(value)

    for stmt in stmts:
        for node in m.findall(stmt, m.Assign() | m.For() | m.AugAssign() | m.AnnAssign()):
            if isinstance(node, cst.Assign):
                for t in node.targets:
                    bind(t.target, node.value)
            elif isinstance(node, cst.For):
                bind(node.target, ("for", node.iter))
            elif isinstance(node, (cst.AugAssign, cst.AnnAssign)):
                bind(node.target, None)
    names = set(base)

    def is_batchy(value) -> bool:
        if value is None:
            return False
        if isinstance(value, tuple):  # a for loop
            it = value[1]
            return unwrap_loader_iter(it) in names or rooted_in(it, names)
        value = _strip_all(value, facts)
        if isinstance(value, COMPREHENSIONS):
            return _only_moves_items(value, names, facts)
        if isinstance(value, cst.Tuple):
            return all(is_batchy(e.value) for e in value.elements)
        if isinstance(value, (cst.Name, cst.Attribute, cst.Subscript)):
            return rooted_in(value, names)
        return False

    changed = True
    while changed:
        changed = False
        for n, values in bindings.items():
            if n in names:
                continue
            if all(is_batchy(v) for v in values):
                names.add(n)
                changed = True
    # a loop target that is also assigned something else is not a batch
    for n in list(names):
        if n in bindings and not all(is_batchy(v) or (isinstance(v, tuple)) for v in bindings[n]):
            names.discard(n)
    return names


def _only_moves_items(comp, names: Set[str], facts) -> bool:
    """`{k: v.to(device) for k, v in batch.items()}`: a comprehension over a batch that only moves its items."""
    f = comp.for_in
    if f.inner_for_in is not None or f.ifs or not rooted_in(f.iter, names):
        return False
    targets = {n for n in assigned_names(f.target) if "." not in n}
    parts = [comp.key, comp.value] if isinstance(comp, cst.DictComp) else [comp.elt]
    return all(dotted(_strip_all(p, facts)) in targets for p in parts)


class _Transformer(RuleTransformer):
    def __init__(self, rule, ctx):
        super().__init__(rule, ctx)
        self.derived: List[Set[str]] = []

    def visit_Module(self, node: cst.Module):
        base = batch_names(self.facts, MODULE) | batch_names(self.facts, MAIN_GUARD)
        stmts = [s for s in node.body if not isinstance(s, (cst.FunctionDef, cst.ClassDef))]
        self.derived.append(derived_names(stmts, base, self.facts) if base else set())
        return True

    def visit_FunctionDef(self, node: cst.FunctionDef):
        super().visit_FunctionDef(node)
        scope = self.scope if len(self._func) == 1 else None
        base = batch_names(self.facts, scope) if scope else set()
        self.derived.append(derived_names([node.body], base, self.facts) if base else
                            (self.derived[-1] if len(self._func) > 1 else set()))
        return True

    def leave_FunctionDef(self, original_node, updated_node):
        self.derived.pop()
        return super().leave_FunctionDef(original_node, updated_node)

    def _visit_comp(self, node):
        names = set(self.derived[-1])
        for_in = node.for_in
        while for_in is not None:
            if rooted_in(for_in.iter, names):
                names |= {n for n in assigned_names(for_in.target) if "." not in n}
            for_in = for_in.inner_for_in
        self.derived.append(names)
        return True

    def _leave_comp(self, original_node, updated_node):
        self.derived.pop()
        return updated_node

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _visit_comp
    leave_ListComp = leave_SetComp = leave_DictComp = leave_GeneratorExp = _leave_comp

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call):
        if not self.derived or not self.derived[-1]:
            return updated_node
        stripped = strip_move(updated_node, self.facts)
        if stripped is not None and rooted_in(updated_node.func.value, self.derived[-1]):
            self.report(original_node, "removed a batch move: the set-up loader delivers batches on the device", True)
            return stripped
        return updated_node

    def leave_SimpleStatementLine(self, original_node, updated_node):
        if len(updated_node.body) == 1 and isinstance(updated_node.body[0], cst.Assign) and self.derived and \
                self.derived[-1] and _is_identity(updated_node.body[0]) and not _is_identity(original_node.body[0]):
            return self.remove(original_node)
        return updated_node


def _is_identity(assign: cst.Assign) -> bool:
    """`x = x`, `x, y = x, y`, `b = {k: v for k, v in b.items()}`."""
    if len(assign.targets) != 1:
        return False
    target, value = assign.targets[0].target, assign.value
    if isinstance(target, cst.Tuple) and isinstance(value, cst.Tuple):
        return len(target.elements) == len(value.elements) and all(
            dotted(a.value) is not None and dotted(a.value) == dotted(b.value)
            for a, b in zip(target.elements, value.elements))
    if dotted(target) is not None and dotted(target) == dotted(value):
        return True
    if isinstance(value, cst.DictComp) and value.for_in.inner_for_in is None:
        k, v = dotted(value.key), dotted(value.value)
        t = value.for_in.target
        it = value.for_in.iter
        return (isinstance(t, cst.Tuple) and [dotted(e.value) for e in t.elements] == [k, v]
                and m.matches(it, m.Call(func=m.Attribute(attr=m.Name("items"))))
                and dotted(it.func.value) == dotted(target))
    return False


class BatchMoves(Rule):
    code = "PTM103"
    plain_scripts_only = True  # the core migration: a framework script has done it its own way
    name = "batch-moves"
    examples = [
        Example(
            before='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main(device):\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loader = DataLoader(TensorDataset(torch.randn(8, 4), torch.randn(8, 1)), batch_size=4)\n    for x, y in loader:\n        x, y = x.to(device), y.to(device)\n        noise = torch.randn(4, 4).to(device)\n        loss = ((model(x + noise) - y) ** 2).mean()\n        loss.backward()\n        optimizer.step()\n',
            fabric='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main(device):\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loader = DataLoader(TensorDataset(torch.randn(8, 4), torch.randn(8, 1)), batch_size=4)\n    for x, y in loader:\n        noise = torch.randn(4, 4).to(device)\n        loss = ((model(x + noise) - y) ** 2).mean()\n        loss.backward()\n        optimizer.step()\n',
            accelerate='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main(device):\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loader = DataLoader(TensorDataset(torch.randn(8, 4), torch.randn(8, 1)), batch_size=4)\n    for x, y in loader:\n        noise = torch.randn(4, 4).to(device)\n        loss = ((model(x + noise) - y) ** 2).mean()\n        loss.backward()\n        optimizer.step()\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
