"""PTM102 model-moves: `.to(device)` / `.cuda()` on a model that the framework sets up is removed.

What it does: `model = Net().to(device)` -> `model = Net()`; a lone `model.to(device)` or `model.cuda()`
statement is deleted. Only models handed to `setup`/`prepare` (those an optimizer trains) are touched;
a frozen or evaluation-only model keeps its move, pointed at the framework's device.

Why: `fabric.setup` / `accelerator.prepare` move the model to the process's device. A hand move first is
redundant, and `.cuda()` would put every rank on GPU 0.

Example: `model = Net().to(device)` -> `model = Net()`.

Fabric form and Accelerate form: the same; the move is gone.

A deep copy of such a model (`ema = copy.deepcopy(model)`) made before its setup goes to the framework's device
with it (`copy.deepcopy(model).to(fabric.device)`), unless the script moved the model only after the copy.

A model built again after the setup point (`model = Net().to(device)` once more, to load the saved weights
for inference) is a new instance that is never set up: it keeps its move, and its inputs keep theirs.

Fix safety: safe. A dtype given with the device stays: `model.to(device, torch.bfloat16)` -> `model.to(torch.bfloat16)`.
"""
from __future__ import annotations

import libcst as cst

from migrator import matching as m
from migrator.names import dotted
from migrator.rules._captures import deepcopy_of
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


def _moves(stmt: cst.CSTNode, name: str, facts) -> bool:
    """Does the statement move `name` (`name.to(...)`, `name.cuda()`, `name = name.to(...)`)?"""
    for call in m.findall(stmt, m.Call()):
        stripped = strip_move(call, facts)
        if stripped is not None and dotted(stripped) == name:
            return True
    return False


class _Transformer(RuleTransformer):
    def visit_Module(self, node: cst.Module):
        self.plain = plain_after_setup(node, self.facts)
        self.copies = set()  # ids of `ema = copy.deepcopy(model)` that go to the framework's device
        self._find_copies(node.body)
        return True

    def visit_IndentedBlock(self, node: cst.IndentedBlock):
        self._find_copies(node.body)
        return True

    def _find_copies(self, body) -> None:
        """A deep copy of a set-up model (an EMA, a teacher) is on the model's device at copy time. The model's
        move is removed here (setup moves it), so a copy made after that move, or from a model never moved (a CPU
        script: the model now goes to the GPU), would stay on the CPU and meet the model's parameters on the GPU
        ("found at least two devices"). It goes to the framework's device, unless the model was moved only after
        the copy, as the script chose."""
        models = set(self.facts.models) | self.facts.model_aliases
        for i, stmt in enumerate(body):
            if not (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1
                    and isinstance(stmt.body[0], cst.Assign) and len(stmt.body[0].targets) == 1):
                continue
            model = deepcopy_of(stmt.body[0].value, models)
            copy = dotted(stmt.body[0].targets[0].target)
            if not model or not copy or copy in models:
                continue
            if any(_moves(later, model, self.facts) or _moves(later, copy, self.facts) for later in body[i + 1:]):
                continue
            self.copies.add(id(stmt))

    def leave_SimpleStatementLine(self, original_node, updated_node):
        if id(original_node) in self.copies and self.in_fw_scope():
            small = updated_node.body[0]
            copy = dotted(small.targets[0].target)
            self.report(original_node, f"`{copy}`, a copy of a set-up model, goes to `{self.facts.fw}.device` with "
                                       f"the model", True)
            moved = cst.Call(func=cst.Attribute(value=small.value, attr=cst.Name("to")),
                             args=[cst.Arg(cst.Attribute(value=self.fw_expr(), attr=cst.Name("device")))])
            return updated_node.with_changes(body=[small.with_changes(value=moved)])
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
