"""PTM102 model-moves: `.to(device)` / `.cuda()` on a model that the framework sets up is removed.

What it does: `model = Net().to(device)` -> `model = Net()`; a lone `model.to(device)` or `model.cuda()`
statement is deleted. Only models handed to `setup`/`prepare` (those an optimizer trains) are touched;
a frozen or evaluation-only model keeps its move, pointed at the framework's device.

Why: `fabric.setup` / `accelerator.prepare` move the model to the process's device. A hand move first is
redundant, and `.cuda()` would put every rank on GPU 0.

Example: `model = Net().to(device)` -> `model = Net()`.

Fabric form and Accelerate form: the same; the move is gone.

A model built again after the setup point (`model = Net().to(device)` once more, to load the saved weights
for inference) is a new instance that is never set up: it keeps its move, and its inputs keep theirs.

Fix safety: safe. A dtype given with the device stays: `model.to(device, torch.bfloat16)` -> `model.to(torch.bfloat16)`.
"""
from __future__ import annotations

import libcst as cst

from migrator.names import dotted
from migrator.rules._moves import plain_after_setup, plain_models_here, strip_move
from migrator.rules.base import Example, Context, Rule, RuleTransformer


def strip_moves_in_chain(node: cst.BaseExpression, facts) -> cst.BaseExpression:
    """`Net(3).to(device).train()` style chains: drop the move links."""
    if isinstance(node, cst.Call):
        stripped = strip_move(node, facts)
        if stripped is not None:
            return strip_moves_in_chain(stripped, facts)
        if isinstance(node.func, cst.Attribute):
            inner = strip_moves_in_chain(node.func.value, facts)
            if inner is not node.func.value:
                return node.with_changes(func=node.func.with_changes(value=inner))
    return node


class _Transformer(RuleTransformer):
    def visit_Module(self, node: cst.Module):
        self.plain = plain_after_setup(node, self.facts)
        return True

    def leave_SimpleStatementLine(self, original_node, updated_node):
        models = (set(self.facts.models) | self.facts.model_aliases) - plain_models_here(self, self.plain)
        if len(updated_node.body) != 1:
            return updated_node
        small = updated_node.body[0]
        if isinstance(small, cst.Expr) and isinstance(small.value, cst.Call):
            stripped = strip_move(small.value, self.facts)
            if stripped is not None and dotted(stripped) in models:
                self.report(original_node, f"removed the move of `{dotted(stripped)}`: setup moves it", True)
                return self.remove(original_node)
        if isinstance(small, cst.Assign) and len(small.targets) == 1:
            target = dotted(small.targets[0].target)
            if target in models:
                new_value = strip_moves_in_chain(small.value, self.facts)
                if new_value is not small.value:
                    self.report(original_node, f"removed the move of `{target}`: setup moves it", True)
                    if dotted(new_value) == target:
                        return self.remove(original_node)
                    return updated_node.with_changes(body=[small.with_changes(value=new_value)])
        return updated_node


class ModelMoves(Rule):
    code = "PTM102"
    plain_scripts_only = True  # the core migration: a framework script has done it its own way
    name = "model-moves"
    examples = [
        Example(
            before='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main(device):\n    model = torch.nn.Linear(4, 1).to(device)\n    teacher = torch.nn.Linear(4, 1).to(device)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n',
            fabric='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main(device):\n    model = torch.nn.Linear(4, 1)\n    teacher = torch.nn.Linear(4, 1).to(device)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n',
            accelerate='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main(device):\n    model = torch.nn.Linear(4, 1)\n    teacher = torch.nn.Linear(4, 1).to(device)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
