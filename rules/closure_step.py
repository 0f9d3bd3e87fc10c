"""PTM143 closure-step: a loss given back by `optimizer.step(closure)` survives the move to Accelerate.

What it does: Accelerate only. `loss = optimizer.step(closure)` (LBFGS, or any optimizer stepped through a closure,
whose result the script uses) becomes `loss = optimizer.optimizer.step(closure)`: the prepared optimizer's inner
optimizer, which returns the closure's loss. Where the script trains in mixed precision (the scaler must see the
step) the line keeps `optimizer.step(closure)` and gets a TODO.

Why: `AcceleratedOptimizer.step` returns None (accelerate 1.15), so `loss.item()` after the step fails with
AttributeError. Fabric's optimizer gives the result back; on Fabric nothing changes. Without a gradient scaler the
wrapper's step does nothing but call the inner step once gradients are synced, which they are after every
backward when the script does not accumulate.

Example: `loss = optimizer.step(closure)` -> `loss = optimizer.optimizer.step(closure)`.

Fabric form: unchanged. Accelerate form: `optimizer.optimizer.step(closure)`.

Fix safety: safe; in mixed precision a TODO instead.
"""
from __future__ import annotations

import libcst as cst
from migrator import matching as m

from migrator.rules.base import Context, Example, Rule, RuleTransformer


class _Transformer(RuleTransformer):
    def leave_Assign(self, original_node: cst.Assign, updated_node: cst.Assign):
        call = updated_node.value
        if not (m.matches(call, m.Call(func=m.Attribute(value=m.Name(), attr=m.Name("step")))) and call.args
                and call.func.value.value in self.facts.optimizers and not call.args[0].keyword):
            return updated_node
        if self.ctx.options.precision or self.facts.precision is not None:
            self.todo(original_node, "`AcceleratedOptimizer.step` returns None: take the loss from the closure "
                                     "(the gradient scaler must see this step, so the inner optimizer is not called)")
            return updated_node
        inner = cst.Attribute(value=call.func.value, attr=cst.Name("optimizer"))
        self.report(original_node, "`optimizer.step(closure)` -> `optimizer.optimizer.step(closure)`: the prepared "
                                   "optimizer's step returns None, its inner optimizer gives the loss back", True)
        return updated_node.with_changes(value=call.with_changes(func=call.func.with_changes(value=inner)))


class ClosureStep(Rule):
    code = "PTM143"
    name = "closure-step"
    targets = ("accelerate",)
    plain_scripts_only = True
    triggers = (".step(",)
    examples = [
        Example(
            before='import torch\n\n\ndef main():\n    model = torch.nn.Linear(1, 1)\n    optimizer = torch.optim.LBFGS(model.parameters())\n    x = torch.ones(4, 1)\n\n    def closure():\n        optimizer.zero_grad()\n        loss = model(x).pow(2).mean()\n        loss.backward()\n        return loss\n\n    loss = optimizer.step(closure)\n    print(loss.item())\n',
            fabric=None,
            accelerate='import torch\n\n\ndef main():\n    model = torch.nn.Linear(1, 1)\n    optimizer = torch.optim.LBFGS(model.parameters())\n    x = torch.ones(4, 1)\n\n    def closure():\n        optimizer.zero_grad()\n        loss = model(x).pow(2).mean()\n        loss.backward()\n        return loss\n\n    loss = optimizer.optimizer.step(closure)\n    print(loss.item())\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
