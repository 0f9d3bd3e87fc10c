"""PTM107 backward: `loss.backward()` becomes the framework's backward.

What it does: `loss.backward()` -> `fabric.backward(loss)` / `accelerator.backward(loss)`, for any
expression (`(a + b).backward()`) and with its arguments (`retain_graph=True` passes through).

Why: the framework's backward applies mixed-precision loss scaling, gradient accumulation scaling and
the strategy's own backward; a plain `.backward()` skips them.

Example: `loss.backward(retain_graph=True)` -> `fabric.backward(loss, retain_graph=True)`.

Fabric form: `fabric.backward(loss, *args, **kwargs)`.
Accelerate form: `accelerator.backward(loss, **kwargs)`: it takes keywords only, so positional arguments
become `gradient=`, `retain_graph=`, `create_graph=`, `inputs=`.

A backward where the framework object is out of reach (a method, a callback) gets a TODO.

Fix safety: safe.
"""
from __future__ import annotations

import libcst as cst

from migrator.names import dotted
from migrator.rules.base import Example, Context, Rule, RuleTransformer

BACKWARD_PARAMS = ("gradient", "retain_graph", "create_graph", "inputs")


class _Transformer(RuleTransformer):
    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call):
        func = updated_node.func
        if not (isinstance(func, cst.Attribute) and func.attr.value == "backward"):
            return updated_node
        receiver = dotted(func.value) or ""
        if receiver in (self.fw, "torch.autograd", "autograd") or receiver.endswith(f".{self.fw}"):
            return updated_node  # already the framework's backward (`self.fabric.backward(loss)`: idempotence)
        if not self.in_fw_scope():
            self.todo(original_node, f"`.backward()` out of reach of `{self.fw}`: call `{self.fw}.backward(...)` here")
            return updated_node
        if self.ctx.target == "accelerate" and any(a.star == "*" for a in updated_node.args):
            # accelerator.backward takes keywords only: `*args` cannot be spelled as keywords
            self.todo(original_node, "`.backward(*args)`: `accelerator.backward(loss, **kwargs)` takes keywords "
                                     "only; call it here with the arguments named")
            return updated_node
        loss = func.value
        if isinstance(loss, cst.BaseExpression) and loss.lpar and len(loss.lpar) == 1:
            loss = loss.with_changes(lpar=[], rpar=[])  # (a + b).backward() -> fabric.backward(a + b)
        args = [cst.Arg(loss)]
        for i, a in enumerate(updated_node.args):
            if a.keyword is None and not a.star and self.ctx.target == "accelerate" and i < len(BACKWARD_PARAMS):
                a = a.with_changes(keyword=cst.Name(BACKWARD_PARAMS[i]), equal=cst.AssignEqual(
                    whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")))
            args.append(a)
        args = [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in args]
        for i in range(len(args) - 1):
            args[i] = args[i].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        self.report(original_node, f"`.backward()` -> `{self.fw}.backward(...)`", True)
        return cst.Call(func=cst.Attribute(value=self.fw_expr(), attr=cst.Name("backward")), args=args)


class Backward(Rule):
    code = "PTM107"
    plain_scripts_only = True  # the core migration: a framework script has done it its own way
    name = "backward"
    triggers = ("backward",)
    skips_other_statements = True
    fusable = True
    examples = [
        Example(
            before='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    out = model(torch.randn(8, 4))\n    (out.sum() + out.mean()).backward(retain_graph=True)\n    out.sum().backward()\n    optimizer.step()\n',
            fabric='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    out = model(torch.randn(8, 4))\n    fabric.backward(out.sum() + out.mean(), retain_graph=True)\n    fabric.backward(out.sum())\n    optimizer.step()\n',
            accelerate='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    out = model(torch.randn(8, 4))\n    accelerator.backward(out.sum() + out.mean(), retain_graph=True)\n    accelerator.backward(out.sum())\n    optimizer.step()\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
