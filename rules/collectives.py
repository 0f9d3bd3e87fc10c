"""PTM138 collectives: `torch.distributed` collectives become the framework's, mapped by meaning.

What it does: in the framework scope, for a bare statement call on a plain name or attribute `t`:
`dist.all_reduce(t)` / `dist.all_reduce(t, op=dist.ReduceOp.SUM)` -> `t = fabric.all_reduce(t, reduce_op="sum")`
/ `t = accelerator.reduce(t, reduction="sum")` (ReduceOp.AVG gives "mean"); `dist.broadcast(t, src)` ->
`t = fabric.broadcast(t, src)` / `t = broadcast(t, from_process=src)` (from accelerate.utils);
`dist.barrier()` -> `fabric.barrier()` / `accelerator.wait_for_everyone()`. Other reduce ops (MAX, MIN,
PRODUCT), a `group=` or `async_op=`, a result that is used, or a tensor that is a subscript or expression
get a TODO. `dist.all_gather(out_list, t)` gets a TODO that tells how the framework's gather differs.

Why: the names do not match the meanings. `torch.distributed.all_reduce` sums in place; `fabric.all_reduce`
averages by default and returns a new tensor; `accelerator.reduce` sums by default and returns a new tensor.
`fabric.all_gather(t)` stacks into a new leading dimension (world, ...); `accelerator.gather(t)`
concatenates on dim 0. A rename would silently change a metric.

Example: `dist.all_reduce(correct)` -> `correct = fabric.all_reduce(correct, reduce_op="sum")`.

Fabric form: `t = fabric.all_reduce(t, reduce_op="sum"|"mean")`, `t = fabric.broadcast(t, src)`,
`fabric.barrier()`; all_gather: `fabric.all_gather(t)` of shape (world, ...), `.flatten(0, 1)` for a cat.
Accelerate form: `t = accelerator.reduce(t, reduction="sum"|"mean")`, `t = broadcast(t, from_process=src)`,
`accelerator.wait_for_everyone()`; all_gather: `accelerator.gather(t)` (a cat), or
`accelerator.gather_for_metrics(t)` in evaluation. Accelerate's reduce and broadcast get `t.to(accelerator.device)`
and give the result back on `t.device`: they pass the tensor to torch.distributed as it is, and NCCL has no CPU
backend (a gloo script's CPU tensor failed on 2 GPUs); Fabric's all_reduce moves it itself.

Fix safety: safe for the rewritten forms (checked with 2 CPU processes: all_reduce of [1, 10] and [2, 20]
gives [3, 30] with "sum" on both frameworks, broadcast from rank 1 reaches rank 0); the rebinding `t = ...`
does not update other names that alias the same tensor.
"""
from __future__ import annotations

from typing import Optional

import libcst as cst
from libcst.metadata import QualifiedNameProvider

from migrator.names import dotted, qualified_names
from migrator.rules.base import Example, Context, Rule, RuleTransformer

DIST = "torch.distributed."
REDUCE_OPS = {"SUM": "sum", "AVG": "mean"}


def _arg(call: cst.Call, index: int, keyword: str) -> Optional[cst.Arg]:
    for a in call.args:
        if a.keyword is not None and a.keyword.value == keyword:
            return a
    positional = [a for a in call.args if a.keyword is None]
    return positional[index] if index < len(positional) else None


def _to(t: cst.BaseExpression, device: str) -> cst.Call:
    """`t.to(device)`."""
    return cst.Call(func=cst.Attribute(value=t, attr=cst.Name("to")), args=[cst.Arg(cst.parse_expression(device))])


def _on_device(call: cst.Call, t: cst.BaseExpression) -> cst.Call:
    """`call.to(t.device)`: Accelerate's reduce and broadcast hand the tensor to torch.distributed as it is, and NCCL
    has no CPU backend ("No backend type associated with device type cpu", a gloo script's CPU tensor on 2 GPUs);
    on the framework's device and back, the tensor keeps the device the script gave it."""
    return _to(call, f"{cst.Module([]).code_for_node(t)}.device")


def _call(func: str, args) -> cst.Call:
    """`func(a, k=v)` with plain spacing."""
    out = []
    for i, (kw, value) in enumerate(args):
        arg = cst.Arg(value=value, keyword=cst.Name(kw) if kw else None,
                      equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""),
                                            whitespace_after=cst.SimpleWhitespace("")) if kw else cst.MaybeSentinel.DEFAULT)
        if i < len(args) - 1:
            arg = arg.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        out.append(arg)
    return cst.Call(func=cst.parse_expression(func), args=out)


class _Transformer(RuleTransformer):
    METADATA_DEPENDENCIES = RuleTransformer.METADATA_DEPENDENCIES + (QualifiedNameProvider,)

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine):
        if len(node.body) == 1 and isinstance(node.body[0], cst.Expr) and isinstance(node.body[0].value, cst.Call):
            self._bare = getattr(self, "_bare", set()) | {id(node.body[0].value)}
        return True

    def _which(self, call: cst.Call) -> Optional[str]:
        for q in qualified_names(self, call.func):
            if q.startswith(DIST) and q[len(DIST):] in ("all_reduce", "barrier", "broadcast", "all_gather"):
                return q[len(DIST):]
        return None

    def leave_SimpleStatementLine(self, original_node: cst.SimpleStatementLine, updated_node):
        if not (len(original_node.body) == 1 and isinstance(original_node.body[0], cst.Expr)):
            return updated_node
        call = original_node.body[0].value
        if not isinstance(call, cst.Call) or not self.in_fw_scope():
            return updated_node
        which = self._which(call)
        if which not in ("all_reduce", "broadcast"):
            return updated_node
        new = self._all_reduce(call) if which == "all_reduce" else self._broadcast(call)
        if new is None:
            return updated_node
        target, value, message = new
        self.report(call, message, True)
        assign = cst.Assign(targets=[cst.AssignTarget(target=target)], value=value)
        return updated_node.with_changes(body=[assign])

    def _tensor(self, call: cst.Call, name: str) -> Optional[cst.BaseExpression]:
        arg = _arg(call, 0, "tensor")
        if arg is None or arg.star or dotted(arg.value) is None:
            self.todo(call, f"`{name}` of something other than a plain name or attribute: "
                            f"rebind the result of the framework call by hand ({self._advice(name)})")
            return None
        return arg.value

    def _extra(self, call: cst.Call, name: str, allowed) -> bool:
        extra = [a.keyword.value for a in call.args if a.keyword is not None and a.keyword.value not in allowed]
        if extra or sum(1 for a in call.args if a.keyword is None) > len(allowed):
            self.todo(call, f"`{name}` with {', '.join(extra) or 'extra arguments'}: not migrated "
                            f"({self._advice(name)})")
            return True
        return False

    def _advice(self, name: str) -> str:
        fabric = self.ctx.target == "fabric"
        return {
            "all_reduce": f'`t = {self.fw}.all_reduce(t, reduce_op="sum")`, which returns a new tensor' if fabric
            else f'`t = {self.fw}.reduce(t, reduction="sum")`, which returns a new tensor',
            "broadcast": f"`t = {self.fw}.broadcast(t, src)`" if fabric
            else "`t = broadcast(t, from_process=src)` from accelerate.utils",
            "barrier": f"`{self.fw}.barrier()`" if fabric else f"`{self.fw}.wait_for_everyone()`",
        }[name]

    def _all_reduce(self, call: cst.Call):
        if self._extra(call, "all_reduce", ("tensor", "op")):
            return None
        t = self._tensor(call, "all_reduce")
        if t is None:
            return None
        op_arg = _arg(call, 1, "op")
        reduction = "sum"
        if op_arg is not None:
            ops = {q.rsplit(".", 1)[-1] for q in qualified_names(self, op_arg.value)
                   if q.startswith(DIST + "ReduceOp.")}
            reduction = next((REDUCE_OPS[o] for o in ops if o in REDUCE_OPS), None)
            if reduction is None:
                self.todo(call, f"`all_reduce` with op={dotted(op_arg.value) or 'an expression'}: "
                                f"only SUM and AVG are migrated; "
                                + (f'`{self.fw}.all_reduce(t, reduce_op=...)` takes "sum", "mean" or a ReduceOp'
                                   if self.ctx.target == "fabric" else
                                   f'`{self.fw}.reduce` takes "sum" or "mean" only: use torch.distributed here'))
                return None
        if self.ctx.target == "fabric":
            value = _call(f"{self.fw}.all_reduce", [(None, t), ("reduce_op", cst.SimpleString(f'"{reduction}"'))])
        else:
            value = _on_device(_call(f"{self.fw}.reduce", [(None, _to(t, f"{self.fw}.device")),
                                                           ("reduction", cst.SimpleString(f'"{reduction}"'))]), t)
        return t, value, f"in-place `all_reduce` ({reduction}) -> `{dotted(value.func)}(..., \"{reduction}\")`, rebound"

    def _broadcast(self, call: cst.Call):
        if self._extra(call, "broadcast", ("tensor", "src")):
            return None
        t = self._tensor(call, "broadcast")
        src = _arg(call, 1, "src")
        if t is None:
            return None
        if src is None:
            self.todo(call, "`broadcast` without a source rank: not migrated")
            return None
        if self.ctx.target == "fabric":
            value = _call(f"{self.fw}.broadcast", [(None, t), (None, src.value)])
        else:
            self.ctx.imports.add("accelerate.utils", "broadcast")
            value = _on_device(_call("broadcast", [(None, _to(t, f"{self.fw}.device")), ("from_process", src.value)]),
                               t)
        return t, value, f"in-place `broadcast` -> `{dotted(value.func)}(...)`, rebound"

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call):
        if not self.in_fw_scope():
            return updated_node
        which = self._which(original_node)
        if which is None:
            return updated_node
        fabric = self.ctx.target == "fabric"
        if which == "barrier":
            if [a for a in original_node.args if not (a.keyword and a.keyword.value == "device_ids")]:
                self.todo(original_node, f"`barrier` with a group or timeout: not migrated ({self._advice('barrier')})")
                return updated_node
            attr = "barrier" if fabric else "wait_for_everyone"
            self.report(original_node, f"`barrier()` -> `{self.fw}.{attr}()`", True)
            return cst.Call(func=cst.Attribute(value=self.fw_expr(), attr=cst.Name(attr)))
        if which == "all_gather":
            if fabric:
                msg = (f"`all_gather(out_list, t)` fills a list: `{self.fw}.all_gather(t)` returns ONE tensor that "
                       "STACKS the ranks into a new leading dimension (world, ...): use "
                       f"`{self.fw}.all_gather(t).flatten(0, 1)` where the list is concatenated with torch.cat. In "
                       "evaluation the last shard is padded with duplicate samples and Fabric has no de-duplicating "
                       "gather: trim to len(dataset) or use torchmetrics")
            else:
                msg = (f"`all_gather(out_list, t)` fills a list: `{self.fw}.gather(t)` returns ONE tensor "
                       "CONCATENATED on dim 0 (what torch.cat of the list gives); in evaluation use "
                       f"`{self.fw}.gather_for_metrics(t)`, which drops the duplicate samples padded into the "
                       "last shard")
            self.todo(original_node, msg)
            return updated_node
        if id(original_node) not in getattr(self, "_bare", set()):
            self.todo(original_node, f"`{which}` works in place and returns None: write it as its own statement "
                                     f"and rebind: {self._advice(which)}")
        return updated_node


class Collectives(Rule):
    code = "PTM138"
    name = "collectives"
    triggers = ("all_reduce", "barrier", "broadcast", "all_gather")
    skips_other_statements = True
    examples = [
        Example(
            before='import torch\nimport torch.distributed as dist\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loss = model(torch.randn(8, 4)).sum()\n    loss.backward()\n    optimizer.step()\n    correct = torch.tensor([3.0])\n    dist.all_reduce(correct, op=dist.ReduceOp.SUM)\n    dist.all_reduce(loss, op=dist.ReduceOp.AVG)\n    dist.barrier()\n    dist.broadcast(correct, 0)\n    preds = [torch.zeros(8, 1) for _ in range(2)]\n    dist.all_gather(preds, model(torch.randn(8, 4)))\n',
            fabric='import torch\nimport torch.distributed as dist\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loss = model(torch.randn(8, 4)).sum()\n    loss.backward()\n    optimizer.step()\n    correct = torch.tensor([3.0])\n    correct = fabric.all_reduce(correct, reduce_op="sum")\n    loss = fabric.all_reduce(loss, reduce_op="mean")\n    fabric.barrier()\n    correct = fabric.broadcast(correct, 0)\n    preds = [torch.zeros(8, 1) for _ in range(2)]\n    # TODO(pt-migrate) PTM138: `all_gather(out_list, t)` fills a list: `fabric.all_gather(t)` returns ONE tensor that STACKS the ranks into a new leading dimension (world, ...): use `fabric.all_gather(t).flatten(0, 1)` where the list is concatenated with torch.cat. In evaluation the last shard is padded with duplicate samples and Fabric has no de-duplicating gather: trim to len(dataset) or use torchmetrics\n    dist.all_gather(preds, model(torch.randn(8, 4)))\n',
            accelerate='import torch\nimport torch.distributed as dist\nfrom accelerate.utils import broadcast\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loss = model(torch.randn(8, 4)).sum()\n    loss.backward()\n    optimizer.step()\n    correct = torch.tensor([3.0])\n    correct = accelerator.reduce(correct.to(accelerator.device), reduction="sum").to(correct.device)\n    loss = accelerator.reduce(loss.to(accelerator.device), reduction="mean").to(loss.device)\n    accelerator.wait_for_everyone()\n    correct = broadcast(correct.to(accelerator.device), from_process=0).to(correct.device)\n    preds = [torch.zeros(8, 1) for _ in range(2)]\n    # TODO(pt-migrate) PTM138: `all_gather(out_list, t)` fills a list: `accelerator.gather(t)` returns ONE tensor CONCATENATED on dim 0 (what torch.cat of the list gives); in evaluation use `accelerator.gather_for_metrics(t)`, which drops the duplicate samples padded into the last shard\n    dist.all_gather(preds, model(torch.randn(8, 4)))\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
