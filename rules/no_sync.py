"""PTM134 no-sync: hand-written gradient-accumulation sync skipping goes through the framework.

What it does: `with model.no_sync():` -> `with fabric.no_backward_sync(model):` /
`with accelerator.no_sync(model):`. The user's own accumulation logic (the modulo guard, `loss / k`) stays
exactly as written. `model.require_backward_grad_sync = ...` (nanoGPT style) gets a TODO.

Why: the framework's model is wrapped by the framework; its own context manager knows the strategy
(and is a no-op on one device, where `no_sync` of a plain module would fail).

Example: `with model.no_sync(): loss.backward()` -> `with fabric.no_backward_sync(model): fabric.backward(loss)`.

Fabric form: `fabric.no_backward_sync(model)` (enabled by default where the script skipped the sync).
Accelerate form: `accelerator.no_sync(model)`. A loop that already skips the sync keeps its own logic: the
idiomatic `Accelerator(gradient_accumulation_steps=k)` + `accelerator.accumulate(model)` rewrite (which deletes
the manual `loss / k` and the guard) is PTM141's, for loops without `no_sync` whose guard provably steps when
accelerate's does (`(i + 1) % k == 0 or i + 1 == len(loader)`); PTM139 skips the sync in the other loops
without `no_sync`.

Fix safety: safe.
"""
from __future__ import annotations

import libcst as cst
from migrator import matching as m

from migrator.names import dotted
from migrator.rules.base import Context, Example, Rule, RuleTransformer


class _Transformer(RuleTransformer):
    def leave_WithItem(self, original_node: cst.WithItem, updated_node: cst.WithItem):
        call = updated_node.item
        if not m.matches(call, m.Call(func=m.Attribute(attr=m.Name("no_sync")), args=[])):
            return updated_node
        model = dotted(call.func.value)
        if model is None or model.split(".")[0] == self.fw:
            return updated_node
        if model.endswith(".module"):
            model = model[: -len(".module")]
        if not self.in_fw_scope():
            self.todo(original_node, f"`no_sync` out of reach of `{self.fw}`")
            return updated_node
        method = "no_backward_sync" if self.ctx.target == "fabric" else "no_sync"
        self.report(original_node, f"`{model}.no_sync()` -> `{self.fw}.{method}({model})`", True)
        return updated_node.with_changes(item=cst.parse_expression(f"{self.fw}.{method}({model})"))

    def leave_Assign(self, original_node: cst.Assign, updated_node: cst.Assign):
        if any(m.matches(t.target, m.Attribute(attr=m.Name("require_backward_grad_sync"))) for t in original_node.targets):
            method = "no_backward_sync(model, enabled=...)" if self.ctx.target == "fabric" else "no_sync(model)"
            self.todo(original_node, f"wrap the micro-steps that skip the sync in `with {self.fw}.{method}:` "
                                     f"instead of setting require_backward_grad_sync")
        return updated_node


class NoSync(Rule):
    code = "PTM134"
    name = "no-sync"
    triggers = ("no_sync", "require_backward_grad_sync")
    examples = [
        Example(
            before='import torch\n\n\ndef main(loader, accumulate=4):\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    for i, x in enumerate(loader):\n        loss = model(x).sum() / accumulate\n        if (i + 1) % accumulate != 0:\n            with model.no_sync():\n                loss.backward()\n        else:\n            loss.backward()\n            optimizer.step()\n            optimizer.zero_grad()\n',
            fabric='import torch\n\n\ndef main(loader, accumulate=4):\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    for i, x in enumerate(loader):\n        loss = model(x).sum() / accumulate\n        if (i + 1) % accumulate != 0:\n            with fabric.no_backward_sync(model):\n                loss.backward()\n        else:\n            loss.backward()\n            optimizer.step()\n            optimizer.zero_grad()\n',
            accelerate='import torch\n\n\ndef main(loader, accumulate=4):\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    for i, x in enumerate(loader):\n        loss = model(x).sum() / accumulate\n        if (i + 1) % accumulate != 0:\n            with accelerator.no_sync(model):\n                loss.backward()\n        else:\n            loss.backward()\n            optimizer.step()\n            optimizer.zero_grad()\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
