"""PTM146 local-stop: a training loop that stops on a rank's own loss stops on the mean over ranks.

What it does: in the framework scope, an `if` inside a loop that backpropagates, whose test reads the loss (`loss`,
`loss.item()`) or a value computed from it (`l = loss.item()`, `running += loss.item()`), and whose body leaves the
loop or the function (`break`, `return`):
- where every rank reaches the `if` on every step its backward runs (the test reads the loss itself, the `if` is
  in the same function after the backward, with nothing between them that leaves the loop or rebinds the loss, and
  only counter or settings tests around it: rules/_reduce_logged.py), `loss_mean = fabric.all_reduce(loss.detach()
  .clone(), reduce_op="mean")` / `loss_mean = accelerator.reduce(loss.detach(), reduction="mean")` goes right before
  the `if`, and the test reads `loss_mean`;
- elsewhere the `if` gets a TODO saying that the value must be reduced over the ranks first.
Tests of step or epoch counters, settings and values reduced by the framework are left alone.

Why: each rank trains on its own shard, so its loss differs from the other ranks'. Stopping on it, the ranks leave
the loop at different steps, and the one still training waits in DDP's gradient all-reduce for ranks that are gone
(gloo: "connection closed"; NCCL hangs). The mean over ranks is the same number on every rank, so all stop at the
same step. Fabric's `all_reduce` works in place (hence the clone: `loss` keeps its value) and returns its input on
one process; Accelerate's `reduce` returns a clone unchanged on one process: one process stops exactly as before.

Example: `if loss.item() < tol: break` -> `loss_mean = fabric.all_reduce(loss.detach().clone(), reduce_op="mean")`
then `if loss_mean.item() < tol: break`.

Fabric form: `fabric.all_reduce(x, reduce_op="mean")`. Accelerate form: `accelerator.reduce(x, reduction="mean")`.

Fix safety: safe where the reduction is made (a collective that every rank reaches on the same steps); a TODO
elsewhere (the collective there could hang ranks that do not reach it). A `while loss > tol:` loop condition is
not looked at.
"""
from __future__ import annotations

from typing import Set

import libcst as cst

from migrator import matching as m
from migrator.names import dotted
from migrator.rules import _reduce_logged as rl
from migrator.rules.base import Context, Example, Rule, RuleTransformer

_REDUCTIONS = ("all_reduce", "reduce", "gather", "all_gather", "broadcast")


def _code(node: cst.CSTNode) -> str:
    return cst.Module([]).code_for_node(node)


def _exits(body: cst.BaseSuite) -> bool:
    """The block runs a `break` or `return` of its own (not one of a loop or function nested in it)."""
    def walk(stmts) -> bool:
        for stmt in stmts:
            if isinstance(stmt, cst.SimpleStatementLine):
                if any(isinstance(s, (cst.Break, cst.Return)) for s in stmt.body):
                    return True
            elif isinstance(stmt, (cst.If, cst.With, cst.Try)):
                if any(walk(inner) for _, inner in rl._blocks(stmt)):
                    return True
        return False
    return walk(body.body if isinstance(body, cst.IndentedBlock) else [])


class _Rename(cst.CSTTransformer):
    """The names `loss` -> `loss_mean` of a test (not an attribute `x.loss`, nor a keyword `f(loss=...)`)."""

    def __init__(self, names):
        super().__init__()
        self.names = names
        self.not_names: Set[int] = set()

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self.not_names.add(id(node.attr))

    def visit_Arg(self, node: cst.Arg) -> None:
        if node.keyword is not None:
            self.not_names.add(id(node.keyword))

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.Name:
        if id(original_node) in self.not_names or updated_node.value not in self.names:
            return updated_node
        return updated_node.with_changes(value=self.names[updated_node.value])


class _Transformer(RuleTransformer):
    def visit_Module(self, node: cst.Module):
        self.index = rl.Index(node)
        return True

    def leave_If(self, original_node: cst.If, updated_node: cst.If):
        result = super().leave_If(original_node, updated_node)
        if not self.in_fw_scope() or id(original_node) not in self.index.where or not _exits(original_node.body):
            return result
        scope, ancestors, _ = self.index.where[id(original_node)]
        loops = {id(n) for n, _ in ancestors if isinstance(n, (cst.For, cst.While))}
        read = {n.value for n in m.findall(original_node.test, m.Name())}
        losses = [name for name in sorted(read) if any(
            loops & {id(a) for a, _ in self.index.where[id(b)][1]} for b in self.index.backwards(scope, name))]
        derived = sorted(self._derived(scope, read - set(losses), loops))
        if not losses and not derived:
            return result
        if losses and not derived:
            reason = next((r for r in (rl.why_not(self.index, original_node, n) for n in losses) if r), None)
            news = {n: next((x for x in (f"{n}_mean", f"{n}_mean_ranks") if x not in self.index.names), None)
                    for n in losses}
            if reason is None and all(news.values()):
                return self._reduced(original_node, result, news)
        values = ", ".join(f"`{n}`" for n in losses + derived)
        self.todo(original_node, f"`if {_code(original_node.test)[:50]}:` stops on this rank's own value ({values}): "
                                 f"ranks would stop at different steps and the one still training waits in the "
                                 f"gradient all-reduce; reduce the value across ranks first ({self._call('x')}) "
                                 f"where every rank reaches it")
        return result

    def _call(self, value: str) -> str:
        if self.ctx.target == "fabric":
            return f'`{self.fw}.all_reduce({value}, reduce_op="mean")`'
        return f'`{self.fw}.reduce({value}, reduction="mean")`'

    def _reduced(self, original_node: cst.If, result: cst.If, news):
        stmts = [rl.reduction(self.ctx.target, self.fw, n, new) for n, new in news.items()]
        test = result.test.visit(_Rename(news))
        self.report(original_node, f"`if {_code(original_node.test)[:50]}:` stops the loop: it now reads the mean over "
                                   f"ranks ({', '.join(f'`{v}`' for v in news.values())}), so every rank stops at the "
                                   f"same step; on one process it is the same value", True)
        stmts[0] = stmts[0].with_changes(leading_lines=result.leading_lines)
        return cst.FlattenSentinel(stmts + [result.with_changes(test=test, leading_lines=[])])

    def _derived(self, scope, names: Set[str], loops: Set[int]) -> Set[str]:
        """The names among `names` that the scope binds from a value of a loss backpropagated in the loops (not
        through one of the framework's reductions)."""
        out = set()
        for stmt in self.index.order:
            if self.index.where[id(stmt)][0] is not scope or not isinstance(stmt, cst.SimpleStatementLine):
                continue
            for small in stmt.body:
                if isinstance(small, cst.Assign):
                    targets, value = [t.target for t in small.targets], small.value
                elif isinstance(small, (cst.AugAssign, cst.AnnAssign)) and small.value is not None:
                    targets, value = [small.target], small.value
                else:
                    continue
                bound = {dotted(t) for t in targets} & names
                if not bound or self._reduces(value):
                    continue
                reads = {n.value for n in m.findall(value, m.Name())}
                if any(loops & {id(a) for a, _ in self.index.where[id(b)][1]}
                       for r in reads for b in self.index.backwards(scope, r)):
                    out |= bound
        return out

    def _reduces(self, value: cst.BaseExpression) -> bool:
        for call in m.findall(value, m.Call()):
            name = dotted(call.func) or ""
            if name.startswith(self.facts.fw + ".") or name.startswith(f"self.{self.facts.fw}."):
                if name.rsplit(".", 1)[-1] in _REDUCTIONS:
                    return True
        return False


class LocalStop(Rule):
    code = "PTM146"
    name = "local-stop"
    triggers = ("break", "return")
    plain_scripts_only = True  # a script on the framework chose how its ranks stop
    examples = [
        Example(
            before='import torch\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    for step in range(100):\n        loss = model(torch.randn(8, 4)).pow(2).mean()\n        loss.backward()\n        optimizer.step()\n        if step % 10 == 0:\n            print(step)\n        if loss.item() < 0.01:\n            break\n',
            fabric='import torch\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    for step in range(100):\n        loss = model(torch.randn(8, 4)).pow(2).mean()\n        loss.backward()\n        optimizer.step()\n        if step % 10 == 0:\n            print(step)\n        loss_mean = fabric.all_reduce(loss.detach().clone(), reduce_op="mean")\n        if loss_mean.item() < 0.01:\n            break\n',
            accelerate='import torch\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    for step in range(100):\n        loss = model(torch.randn(8, 4)).pow(2).mean()\n        loss.backward()\n        optimizer.step()\n        if step % 10 == 0:\n            print(step)\n        loss_mean = accelerator.reduce(loss.detach(), reduction="mean")\n        if loss_mean.item() < 0.01:\n            break\n',
        ),
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
