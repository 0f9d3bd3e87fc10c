"""PTM112 sharded-metric: sums over a set-up loader are reduced across ranks before `len(dataset)` divides them.

What it does: in a function that loops over a set-up loader (`for data, target in loader:`), adds up numbers in
that loop (`correct += ...`, `test_loss += ....item()`) and afterwards divides by, or prints next to,
`len(loader.dataset)`, each such sum is made a sum over every rank's samples. A sum that is started before the
loop with a number literal and is not carried over an enclosing loop qualifies. Any other `len(loader.dataset)`
of a set-up loader is reported with a TODO.

Why: after `setup_dataloaders` / `prepare` each process sees only its shard, but `len(loader.dataset)` still
counts every sample: an accuracy or mean loss computed this way comes out about world-size times too small.

Example: `test_loss /= len(test_loader.dataset)` after the test loop.

Fabric form: right after the loop, `correct = fabric.all_reduce(torch.tensor(correct, device=fabric.device),
reduce_op="sum").item()` (without `.item()` when the sum is a tensor). Fabric's sampler pads the last shard
with at most world-size - 1 repeated samples when the dataset does not split evenly; they count twice.

Accelerate form: in the loop, `correct += (pred == y).sum().item()` ->
`correct += accelerator.gather_for_metrics(pred == y).sum().item()`, and a loss summed with `reduction="sum"`
is gathered per sample with `reduction="none"`: `gather_for_metrics` drops the samples that Accelerate repeats
to even out the last batches (a whole batch can be repeated: summing them with `accelerator.reduce` gave 130%
on a fixture). A sum written any other way (`criterion(out, y)` with the reduction in the constructor) keeps
the TODO.

Fix safety: safe. A sum the rule cannot place (out of reach of the framework object, carried over an outer
loop, divided in another function) keeps its TODO.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Set

import libcst as cst
from migrator import matching as m

from migrator.analysis import MAIN_GUARD, MODULE, unwrap_loader_iter
from migrator.names import dotted
from migrator.rules.base import Example, Context, Rule, RuleTransformer

_NUMBER_CALLS = {"len", "float", "int", "sum"}
_REDUCTIONS = {"all_reduce", "reduce", "all_gather", "gather", "gather_for_metrics", "reduce_tensor", "sync_dist"}


def _dataset_len_loader(node: cst.CSTNode) -> Optional[str]:
    """`len(loader.dataset)` -> "loader"."""
    if m.matches(node, m.Call(func=m.Name("len"), args=[m.Arg(m.Attribute(attr=m.Name("dataset")))])):
        return dotted(node.args[0].value.value)
    return None


def _is_python_number(node: cst.BaseExpression) -> bool:
    """`x.item()`, `3`, `len(b)`, `x.size(0)`, `x.numel()`, `x.shape[0]`, `float(...)`: a Python number."""
    if isinstance(node, (cst.Integer, cst.Float)):
        return True
    if isinstance(node, cst.Call):
        if isinstance(node.func, cst.Attribute) and node.func.attr.value in ("item", "numel") and not node.args:
            return True
        if isinstance(node.func, cst.Attribute) and node.func.attr.value == "size" and len(node.args) == 1:
            return True
        return isinstance(node.func, cst.Name) and node.func.value in _NUMBER_CALLS
    if isinstance(node, cst.Subscript):
        return m.matches(node.value, m.Attribute(attr=m.Name("shape")))
    if isinstance(node, cst.BinaryOperation):
        return _is_python_number(node.left) and _is_python_number(node.right)
    return False


def gathered(value: cst.BaseExpression, fw: str) -> Optional[cst.BaseExpression]:
    """Accelerate: a per-batch sum written as a sum over per-sample values, rewritten to sum over every rank's
    samples without the padding: `E.sum().item()` -> `fw.gather_for_metrics(E).sum().item()`,
    `F.nll_loss(o, t, reduction="sum").item()` -> `fw.gather_for_metrics(F.nll_loss(o, t, reduction="none")).sum()
    .item()`. None for any other form."""
    item = isinstance(value, cst.Call) and m.matches(value.func, m.Attribute(attr=m.Name("item"))) and not value.args
    inner = value.func.value if item else value
    per_sample = None
    if isinstance(inner, cst.Call) and m.matches(inner.func, m.Attribute(attr=m.Name("sum"))) and not inner.args:
        per_sample = inner.func.value
    elif isinstance(inner, cst.Call):
        args = list(inner.args)
        for i, a in enumerate(args):
            if a.keyword is not None and a.keyword.value == "reduction" and isinstance(a.value, cst.SimpleString) \
                    and a.value.evaluated_value == "sum":
                args[i] = a.with_changes(value=cst.SimpleString(a.value.value[0] + "none" + a.value.value[-1]))
                per_sample = inner.with_changes(args=args)
    if per_sample is None:
        return None
    if per_sample.lpar:
        per_sample = per_sample.with_changes(lpar=[], rpar=[])
    call = cst.parse_expression(f"{fw}.gather_for_metrics(__x__).sum()" + (".item()" if item else ""))

    class Fill(cst.CSTTransformer):
        def leave_Name(self, o, u):
            return per_sample if u.value == "__x__" else u

    return call.visit(Fill())


def _number_init(stmt: cst.CSTNode) -> List[str]:
    """`correct = 0`, `test_loss, correct = 0.0, 0`, `a = b = 0`: the names started at a number literal."""
    if not (isinstance(stmt, cst.SimpleStatementLine)):
        return []
    out = []
    for small in stmt.body:
        if not isinstance(small, cst.Assign):
            continue
        for t in small.targets:
            if isinstance(t.target, cst.Name) and isinstance(small.value, (cst.Integer, cst.Float)):
                out.append(t.target.value)
            elif isinstance(t.target, cst.Tuple) and isinstance(small.value, cst.Tuple) \
                    and len(t.target.elements) == len(small.value.elements):
                for te, ve in zip(t.target.elements, small.value.elements):
                    if isinstance(te.value, cst.Name) and isinstance(ve.value, (cst.Integer, cst.Float)):
                        out.append(te.value.value)
    return out


def _sums_in(loop: cst.For) -> Dict[str, List[cst.AugAssign]]:
    """name -> the `name += value` statements in the loop's body (nested functions aside)."""
    found: Dict[str, List[cst.AugAssign]] = {}
    other: Set[str] = set()
    for node in m.findall(loop.body, m.AugAssign() | m.Assign()):
        if isinstance(node, cst.AugAssign) and isinstance(node.target, cst.Name):
            if isinstance(node.operator, cst.AddAssign):
                found.setdefault(node.target.value, []).append(node)
            else:
                other.add(node.target.value)
        elif isinstance(node, cst.Assign):
            for t in node.targets:
                if isinstance(t.target, cst.Name):
                    other.add(t.target.value)
    return {k: v for k, v in found.items() if k not in other}


def reduces_itself(stmts) -> bool:
    """The code calls a reduction (all_reduce, reduce, gather_for_metrics, ...): the script reduces across ranks
    itself, or a previous run of this rule did."""
    return any((dotted(call.func) or "").rsplit(".", 1)[-1] in _REDUCTIONS
               for stmt in stmts for call in m.findall(stmt, m.Call()))


def plan_reductions(stmts, loaders: Set[str], gather: bool = False) -> Dict[int, List[tuple]]:
    """id(for loop over a set-up loader) -> [(name, python number?, its `+=` statements)] of the sums to reduce.
    With `gather` (Accelerate), only loops whose every such `+=` can be gathered per sample (`gathered`).

    A sum qualifies when it is started with a number literal before the loop, in the same block or one around
    it that no other loop separates from it, and a later statement of the function reads it next to
    `len(<that loader>.dataset)`."""
    plan: Dict[int, List[tuple]] = {}
    flat = list(stmts)
    if reduces_itself(flat):
        return plan
    # statements of the function that use len(L.dataset), with the names they read
    uses: List[tuple] = []  # (loader, names read)
    aliases: List[tuple] = []  # (loader, name bound to its len(loader.dataset))
    for stmt in flat:
        for line in m.findall(stmt, m.SimpleStatementLine()):
            lens = {_dataset_len_loader(c) for c in m.findall(line, m.Call(func=m.Name("len")))} - {None}
            lens |= {l for l, alias in aliases if any(n.value == alias for n in m.findall(line, m.Name()))}
            if lens & loaders:
                names = {n.value for n in m.findall(line, m.Name())}
                uses.extend((l, names) for l in lens & loaders)
                # `n = len(loader.dataset)`: a later `correct / n` divides by it too
                for small in line.body:
                    if isinstance(small, cst.Assign) and len(small.targets) == 1 \
                            and isinstance(small.targets[0].target, cst.Name) and _dataset_len_loader(small.value):
                        aliases.append((_dataset_len_loader(small.value), small.targets[0].target.value))

    def walk(block, inits: Set[str]) -> None:
        inits = set(inits)
        for stmt in block:
            inits |= set(_number_init(stmt))
            if isinstance(stmt, cst.For):
                loader = unwrap_loader_iter(stmt.iter)
                if loader in loaders:
                    sums = _sums_in(stmt)
                    chosen = [(n, all(_is_python_number(v.value) for v in augs), augs) for n, augs in sums.items()
                              if n in inits and any(l == loader and n in names for l, names in uses)]
                    if chosen and (not gather or all(gathered(a.value, "fw") is not None
                                                     for _, _, augs in chosen for a in augs)):
                        plan[id(stmt)] = chosen
                    continue
                walk(stmt.body.body, set())  # another loop: sums started outside it are carried over it
            elif isinstance(stmt, cst.While):
                walk(stmt.body.body, set())
            elif isinstance(stmt, (cst.With, cst.If, cst.Try)):
                for sub in _blocks(stmt):
                    walk(sub, inits)
    walk(flat, set())
    return plan


def _blocks(stmt: cst.BaseCompoundStatement) -> List[list]:
    out = [list(stmt.body.body)] if isinstance(stmt.body, cst.IndentedBlock) else []
    if isinstance(stmt, cst.If) and stmt.orelse is not None:
        if isinstance(stmt.orelse, cst.If):
            out.extend(_blocks(stmt.orelse))
        elif isinstance(stmt.orelse.body, cst.IndentedBlock):
            out.append(list(stmt.orelse.body.body))
    if isinstance(stmt, cst.Try):
        for h in stmt.handlers:
            out.append(list(h.body.body))
    return out


class _Transformer(RuleTransformer):
    def __init__(self, rule, ctx):
        super().__init__(rule, ctx)
        self._plans: List[Dict[int, List[tuple]]] = []
        self._reduced: List[Set[str]] = []  # loaders whose sums this function reduces

    def _loaders(self) -> Set[str]:
        scope = self.scope
        loaders = set(self.facts.loader_params.get(scope, set()))
        if scope == self.facts.setup_scope or (self.facts.setup_scope == MAIN_GUARD and scope == MODULE):
            loaders |= set(self.facts.loaders)
        return loaders

    def visit_FunctionDef(self, node: cst.FunctionDef):
        super().visit_FunctionDef(node)
        gather = self.ctx.target == "accelerate"
        plan = plan_reductions(node.body.body, self._loaders(), gather) if self.in_fw_scope() and self.scope else {}
        self._plans.append(plan)
        loaders = self._loaders() if reduces_itself(node.body.body) else set()
        self._reduced.append(loaders | {unwrap_loader_iter(f.iter) for f in m.findall(node.body, m.For()) if id(f) in plan})
        return True

    def leave_FunctionDef(self, original_node, updated_node):
        self._plans.pop()
        self._reduced.pop()
        return super().leave_FunctionDef(original_node, updated_node)

    def visit_Module(self, node: cst.Module):
        stmts = [s for s in node.body if not isinstance(s, (cst.FunctionDef, cst.ClassDef))]
        guard = [s for s in stmts if isinstance(s, cst.If) and s.body and _is_guard(s)]
        plan: Dict[int, List[tuple]] = {}
        if self.facts.setup_scope in (MODULE, MAIN_GUARD):
            loaders = set(self.facts.loaders)
            gather = self.ctx.target == "accelerate"
            plan = plan_reductions(stmts, loaders, gather)
            for g in guard:
                plan.update(plan_reductions(g.body.body, loaders, gather))
        self._plans.append(plan)
        loaders = set(self.facts.loaders) if reduces_itself(stmts) else set()
        self._reduced.append(loaders | {unwrap_loader_iter(f.iter) for s in stmts for f in m.findall(s, m.For())
                                        if id(f) in plan})
        return True

    def _gathered_augs(self) -> Set[int]:
        return {id(a) for plan in self._plans[-1:] for entries in plan.values() for _, _, augs in entries
                for a in augs} if self.ctx.target == "accelerate" else set()

    def leave_AugAssign(self, original_node: cst.AugAssign, updated_node: cst.AugAssign):
        if id(original_node) not in self._gathered_augs():
            return updated_node
        new = gathered(updated_node.value, self.fw)
        return updated_node if new is None else updated_node.with_changes(value=new)

    def leave_For(self, original_node: cst.For, updated_node: cst.For):
        names = self._plans[-1].get(id(original_node)) if self._plans else None
        if not names:
            return updated_node
        fw = self.fw
        loader = unwrap_loader_iter(original_node.iter)
        listed = ", ".join(f"`{n}`" for n, _, _ in names)
        if self.ctx.target == "accelerate":
            self.report(original_node, f"{listed} summed over every rank's samples with `{fw}.gather_for_metrics` "
                                       f"(which drops the padding): `len({loader}.dataset)` counts them all", True)
            return updated_node
        stmts = [updated_node]
        for name, number, _ in names:
            code = f'{name} = {fw}.all_reduce(torch.tensor({name}, device={fw}.device), reduce_op="sum")'
            if number:
                code += ".item()"
            else:
                code = code.replace("torch.tensor(", "torch.as_tensor(", 1)
            stmts.append(cst.parse_statement(code))
        self.ctx.imports.add("torch")
        self.report(original_node, f"{listed} summed over the ranks after the loop: `len({loader}.dataset)` counts "
                                   f"every rank's samples (the last shard is padded with repeated samples when the "
                                   f"dataset does not split evenly)", True)
        return cst.FlattenSentinel(stmts)

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call):
        loader = _dataset_len_loader(original_node)
        if loader is None:
            return updated_node
        if loader in self._loaders() and not (self._reduced and loader in self._reduced[-1]):
            fix = ("all_reduce the metric and its count" if self.ctx.target == "fabric"
                   else "use accelerator.gather_for_metrics")
            self.todo(original_node, f"`len({loader}.dataset)` counts all ranks' samples but this rank sees only its "
                                     f"shard: {fix}")
        return updated_node


def _is_guard(stmt) -> bool:
    from migrator.analysis import is_main_guard
    return is_main_guard(stmt)


class ShardedMetric(Rule):
    code = "PTM112"
    name = "sharded-metric"
    triggers = ("dataset",)
    examples = [
        Example(
            before='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef test(model, loader):\n    correct = 0\n    for x, y in loader:\n        correct += (model(x).argmax(1) == y).sum().item()\n    print(correct / len(loader.dataset))\n\n\ndef main():\n    model = torch.nn.Linear(4, 2)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loader = DataLoader(TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,))), batch_size=4)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n    test(model, loader)\n',
            fabric='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef test(model, loader):\n    correct = 0\n    for x, y in loader:\n        correct += (model(x).argmax(1) == y).sum().item()\n    correct = fabric.all_reduce(torch.tensor(correct, device=fabric.device), reduce_op="sum").item()\n    print(correct / len(loader.dataset))\n\n\ndef main():\n    model = torch.nn.Linear(4, 2)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loader = DataLoader(TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,))), batch_size=4)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n    test(model, loader)\n',
            accelerate='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef test(model, loader):\n    correct = 0\n    for x, y in loader:\n        correct += accelerator.gather_for_metrics(model(x).argmax(1) == y).sum().item()\n    print(correct / len(loader.dataset))\n\n\ndef main():\n    model = torch.nn.Linear(4, 2)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loader = DataLoader(TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,))), batch_size=4)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n    test(model, loader)\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
