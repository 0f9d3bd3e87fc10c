"""PTM104 tensor-device: tensors that do not come from a set-up loader go to the framework's device.

What it does: `x.cuda()` -> `x.to(fabric.device)`; `x.to("cuda")` / `x.to(rank)` -> `x.to(fabric.device)`;
`torch.zeros(3, device="cuda")` -> `torch.zeros(3, device=fabric.device)`. Moves through a device variable
(`x.to(device)`) stay: that variable now names the framework's device (PTM101).

Why: tensors made in the loop, sampled from a custom source or held by a helper still need a device;
dropping their move would leave them on the CPU, and "cuda" would put every rank on GPU 0.

Example: `noise = torch.randn(64, 100).cuda()` -> `noise = torch.randn(64, 100).to(fabric.device)`.

Fabric form: `fabric.device`. Accelerate form: `accelerator.device`.

Fix safety: safe. Inside a method or a function that the framework object cannot reach, a TODO is left.
"""
from __future__ import annotations

import libcst as cst

from migrator.names import dotted
from migrator.rules._moves import is_device_arg, retarget_move
from migrator.rules.base import Example, Context, Rule, RuleTransformer


class _Transformer(RuleTransformer):
    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call):
        models = set(self.facts.models) | self.facts.model_aliases
        func = updated_node.func
        if isinstance(func, cst.Attribute) and func.attr.value in ("to", "cuda"):
            if dotted(func.value) in models:
                return updated_node  # PTM102 owns model moves
            new = retarget_move(updated_node, self.facts, self.fw)
            if new is None:
                return updated_node
            if not self.in_fw_scope():
                if func.attr.value == "cuda":
                    self.todo(original_node, "`.cuda()` out of reach of the framework object: "
                                             "use the device of an input (`x.device`) or a buffer")
                return updated_node
            self.report(original_node, f"moved to `{self.fw}.device`", True)
            return new
        # device="cuda" in a tensor factory
        for i, a in enumerate(updated_node.args):
            if a.keyword is not None and a.keyword.value == "device" and not isinstance(a.value, (cst.Name, cst.Attribute)) \
                    and is_device_arg(a.value, self.facts) and self.in_fw_scope():
                args = list(updated_node.args)
                args[i] = a.with_changes(value=cst.parse_expression(f"{self.fw}.device"))
                self.report(original_node, f"`device=` -> `{self.fw}.device`", True)
                return updated_node.with_changes(args=args)
        return updated_node


class TensorMoves(Rule):
    code = "PTM104"
    plain_scripts_only = True  # the core migration: a framework script has done it its own way
    name = "tensor-device"
    examples = [
        Example(
            before='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    x = torch.randn(8, 4).cuda()\n    mask = torch.ones(8, 1, device="cuda")\n    (model(x) * mask).sum().backward()\n    optimizer.step()\n',
            fabric='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    x = torch.randn(8, 4).to(fabric.device)\n    mask = torch.ones(8, 1, device=fabric.device)\n    (model(x) * mask).sum().backward()\n    optimizer.step()\n',
            accelerate='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    x = torch.randn(8, 4).to(accelerator.device)\n    mask = torch.ones(8, 1, device=accelerator.device)\n    (model(x) * mask).sum().backward()\n    optimizer.step()\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
