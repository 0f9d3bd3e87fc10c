"""PTM108 print-once: `print(...)` on the training path becomes `fabric.print(...)` / `accelerator.print(...)`.

What it does: rewrites `print` calls in the setup scope and in functions that receive the framework object.

Why: every process runs the whole script; a plain print appears once per process. The framework print
writes once per node (local rank 0).

Example: `print(f"epoch {epoch} loss {loss.item():.4f}")` -> `fabric.print(f"epoch {epoch} loss {loss.item():.4f}")`.

Fabric form: `fabric.print(...)`. Accelerate form: `accelerator.print(...)`. Keyword arguments pass through.

A print that reports the rank on purpose (`print(f"[rank {rank}] samples seen: {n}")`: it reads a name
that ends in `rank`, `.rank` / `.local_rank` / `.global_rank` / `.process_index`, or `get_rank()`) stays a
plain `print` on every rank: the framework print would keep only rank 0's line. The rank variable itself is
taken from the framework by PTM137 (`rank = fabric.global_rank`).

Fix safety: safe. Prints in library code off the training path are left alone.
"""
from __future__ import annotations

import libcst as cst
from migrator import matching as m

from migrator.rules.base import Example, Context, Rule, RuleTransformer


RANK_ATTRS = {"rank", "local_rank", "global_rank", "node_rank", "process_index", "local_process_index"}


def reports_rank(call: cst.Call) -> bool:
    """The print's arguments read a rank: `rank`, `local_rank`, `args.rank`, `fabric.global_rank`, `get_rank()`."""
    for arg in call.args:
        for node in m.findall(arg.value, m.Name() | m.Attribute()):
            if isinstance(node, cst.Name):
                name = node.value.lower()
                if name.endswith("rank") or name in RANK_ATTRS or name == "get_rank":
                    return True
            elif node.attr.value in RANK_ATTRS or node.attr.value == "get_rank":
                return True
    return False


class _Transformer(RuleTransformer):
    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call):
        if isinstance(updated_node.func, cst.Name) and updated_node.func.value == "print" and self.in_fw_scope():
            if reports_rank(original_node):
                self.note(original_node, "kept `print`: it reports the rank, so every rank prints its own line")
                return updated_node
            self.report(original_node, f"`print` -> `{self.fw}.print`, once per node", True)
            return updated_node.with_changes(func=cst.Attribute(value=self.fw_expr(), attr=cst.Name("print")))
        return updated_node


class PrintOnce(Rule):
    code = "PTM108"
    plain_scripts_only = True  # the core migration: a framework script has done it its own way
    name = "print-once"
    triggers = ("print",)
    skips_other_statements = True
    fusable = True
    examples = [
        Example(
            before='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef train(model, optimizer):\n    loss = model(torch.randn(8, 4)).sum()\n    loss.backward()\n    optimizer.step()\n    print(f"loss {loss.item():.4f}")\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    train(model, optimizer)\n    print("done")\n',
            fabric='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef train(model, optimizer):\n    loss = model(torch.randn(8, 4)).sum()\n    loss.backward()\n    optimizer.step()\n    fabric.print(f"loss {loss.item():.4f}")\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    train(model, optimizer)\n    fabric.print("done")\n',
            accelerate='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef train(model, optimizer):\n    loss = model(torch.randn(8, 4)).sum()\n    loss.backward()\n    optimizer.step()\n    accelerator.print(f"loss {loss.item():.4f}")\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    train(model, optimizer)\n    accelerator.print("done")\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
