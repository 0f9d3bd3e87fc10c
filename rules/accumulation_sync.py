"""PTM139 accumulation-sync: gradient accumulation without `no_sync` skips the sync on micro-steps that do not step.

What it does: in a loop that calls backward every micro-step but steps the optimizer only under an `if`
(the guard, which also zeroes the gradients), wraps the forward and backward (from the first statement that
names the model to the backward) in a context that skips the gradient sync when the guard will not step:
`with fabric.no_backward_sync(model, enabled=<not guard>):` /
`with accelerator.no_sync(model) if <not guard> else contextlib.nullcontext():`, where `<not guard>` is the
guard negated by hand (`(i + 1) % k != 0`; `not x` gives `bool(x)`). The guard, the `loss / k` and everything
else stay as written. Only where the guard is a pure expression of the loop counter
(`for i, b in enumerate(...)` or `for i in range(...)`): the counter, numbers, `len(...)`, names and
attributes the loop does not rebind, arithmetic, comparisons and boolean operators. Then it has the same
value before the forward as at the guard.

Why: hand-written DDP all-reduces the gradients in every backward. Skipping the sync on the micro-steps that
only accumulate is what the frameworks' accumulation does; the all-reduce of the stepping micro-step then
sums what each rank accumulated, so the optimizer sees the same gradients.

Example: `loss.backward()` then `if (i + 1) % k == 0: optimizer.step(); optimizer.zero_grad()` ->
`with fabric.no_backward_sync(model, enabled=(i + 1) % k != 0):` around `loss = ...` and `loss.backward()`.

Fabric form: `fabric.no_backward_sync(model, enabled=...)`. Accelerate form: `accelerator.no_sync(model)` has no
`enabled=`, so the context is chosen by a conditional expression with `contextlib.nullcontext()` (and
`import contextlib`). PTM141 first gives Accelerate loops its own accumulation where that is equivalent.
Loops with `model.no_sync()` are PTM134's. A guard that is not pure (a step counter increased after the
backward, a condition on the loss), a backward nested in a block or called twice, a guard with an `else`,
or an optimizer whose model cannot be told: the loop is left as written, which is correct but syncs on every
micro-step, and an info diagnostic (no TODO) says so.

Fix safety: safe.
"""
from __future__ import annotations

import libcst as cst
from migrator import matching as m

from migrator.rules._accum import find, negate, pure, rebound
from migrator.rules.base import Context, Example, Rule, RuleTransformer


def wrap(body, start: int, end: int, item: str) -> list:
    """body[start:end + 1] moved into `with <item>:`, comments above it kept above the `with`."""
    region = list(body[start:end + 1])
    lead = region[0].leading_lines
    region[0] = region[0].with_changes(leading_lines=[])
    block = cst.With(items=[cst.WithItem(cst.parse_expression(item))], body=cst.IndentedBlock(body=region),
                     leading_lines=lead)
    return list(body[:start]) + [block] + list(body[end + 1:])


class _Transformer(RuleTransformer):
    def leave_For(self, original_node: cst.For, updated_node: cst.For):
        shape, why = find(updated_node, self.facts, self.fw)
        if (shape is None and why is None) or not self.in_fw_scope():
            return updated_node
        if shape is not None:
            test = shape.body[shape.guard].test
            if shape.counter is None:
                why = "the step guard does not test a loop counter (`for i, batch in enumerate(loader)`)"
            elif not m.findall(test, m.Name(shape.counter)):
                why = f"the step guard does not test the loop counter `{shape.counter}`"
            elif not pure(test, rebound(updated_node, shape.counter)):
                why = ("the step guard reads something the micro-step changes, so it cannot be evaluated before "
                       "the forward")
        fabric = self.ctx.target == "fabric"
        if why:
            ctx = "no_backward_sync(model, enabled=...)" if fabric else "no_sync(model)"
            self.note(original_node, f"gradient accumulation syncs gradients on every micro-step (correct, slower): "
                                     f"{why}; wrap the forward and backward of the micro-steps that do not step in "
                                     f"`with {self.fw}.{ctx}:` to skip it")
            return updated_node
        off = negate(test)
        if fabric:
            item = f"{self.fw}.no_backward_sync({shape.model}, enabled={off})"
        else:
            item = f"{self.fw}.no_sync({shape.model}) if {off} else contextlib.nullcontext()"
            self.ctx.imports.add("contextlib")
        self.report(original_node, f"micro-steps that do not step skip the gradient sync: `with {item}:` around the "
                                   f"forward and backward", True)
        body = wrap(shape.body, shape.start, shape.backward, item)
        return updated_node.with_changes(body=updated_node.body.with_changes(body=body))


class AccumulationSync(Rule):
    code = "PTM139"
    name = "accumulation-sync"
    examples = [
        Example(
            before='import torch\n\n\ndef main(loader, accumulate=4):\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    for i, (x, y) in enumerate(loader):\n        loss = torch.nn.functional.mse_loss(model(x), y) / accumulate\n        loss.backward()\n        if (i + 1) % accumulate == 0:\n            optimizer.step()\n            optimizer.zero_grad()\n',
            fabric='import torch\n\n\ndef main(loader, accumulate=4):\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    for i, (x, y) in enumerate(loader):\n        with fabric.no_backward_sync(model, enabled=(i + 1) % accumulate != 0):\n            loss = torch.nn.functional.mse_loss(model(x), y) / accumulate\n            loss.backward()\n        if (i + 1) % accumulate == 0:\n            optimizer.step()\n            optimizer.zero_grad()\n',
            accelerate='import torch\nimport contextlib\n\n\ndef main(loader, accumulate=4):\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    for i, (x, y) in enumerate(loader):\n        with accelerator.no_sync(model) if (i + 1) % accumulate != 0 else contextlib.nullcontext():\n            loss = torch.nn.functional.mse_loss(model(x), y) / accumulate\n            loss.backward()\n        if (i + 1) % accumulate == 0:\n            optimizer.step()\n            optimizer.zero_grad()\n',
        ),
        Example(
            before='import torch\n\n\ndef main(loader, accumulate=4):\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    step = 0\n    for x, y in loader:\n        loss = torch.nn.functional.mse_loss(model(x), y) / accumulate\n        loss.backward()\n        step += 1\n        if step % accumulate == 0:\n            optimizer.step()\n            optimizer.zero_grad()\n',
            fabric=None,
            accelerate=None,
        ),
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
