"""PTM135 clipping: gradient clipping goes through the framework.

What it does: `torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)` ->
`fabric.clip_gradients(model, optimizer, max_norm=max_norm)` / `accelerator.clip_grad_norm_(model.parameters(), max_norm)`;
`clip_grad_value_(model.parameters(), v)` -> `fabric.clip_gradients(model, optimizer, clip_val=v)` /
`accelerator.clip_grad_value_(model.parameters(), v)`.

Why: with mixed precision the gradients must be unscaled before clipping, and sharded strategies clip
across ranks; the framework's clipping does both.

Example: `torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)` -> `fabric.clip_gradients(model, optimizer, max_norm=1.0)`.

Fabric form: `fabric.clip_gradients(model, optimizer, max_norm=... | clip_val=...)`; the optimizer is the one
that trains the model. Accelerate form: `accelerator.clip_grad_norm_(params, max_norm)`; under
`accelerator.accumulate` it belongs under `if accelerator.sync_gradients:`.

A model trained without an optimizer (parameters updated by hand) keeps `torch.nn.utils.clip_grad_norm_` on Fabric
(`clip_gradients` needs the optimizer): after the backward the gradients are already averaged across the
processes, so each rank clips the same values. So does a model whose optimizer is made only under an `if`
(`if args.use_optimizer: opt = AdamW(...)`, the other path updates the parameters by hand): `clip_gradients`
would name an optimizer that the other path never binds.

Fix safety: safe. Clipping of parameters whose model or optimizer cannot be told gets a TODO (Fabric).
"""
from __future__ import annotations

import libcst as cst
from migrator import matching as m
from libcst.metadata import QualifiedNameProvider

from migrator.names import dotted, qualified_names
from migrator.rules.base import Context, Example, Rule, RuleTransformer

CLIPS = {"torch.nn.utils.clip_grad_norm_": ("max_norm", "clip_grad_norm_"),
         "torch.nn.utils.clip_grad.clip_grad_norm_": ("max_norm", "clip_grad_norm_"),
         "torch.nn.utils.clip_grad_value_": ("clip_val", "clip_grad_value_"),
         "torch.nn.utils.clip_grad.clip_grad_value_": ("clip_val", "clip_grad_value_")}


class _Transformer(RuleTransformer):
    METADATA_DEPENDENCIES = RuleTransformer.METADATA_DEPENDENCIES + (QualifiedNameProvider,)

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call):
        kind = next((CLIPS[q] for q in qualified_names(self, original_node.func) if q in CLIPS), None)
        if kind is None:
            return updated_node
        if not self.in_fw_scope():
            self.todo(original_node, "clipping out of reach of the framework object: clip through it")
            return updated_node
        args = list(updated_node.args)
        if self.ctx.target == "accelerate":
            self.report(original_node, f"clipping -> `{self.fw}.{kind[1]}`", True)
            return updated_node.with_changes(func=cst.Attribute(value=self.fw_expr(), attr=cst.Name(kind[1])))
        params = args[0].value if args else None
        owner = None
        if m.matches(params, m.Call(func=m.Attribute(attr=m.Name("parameters")))):
            owner = (dotted(params.func.value) or "").split(".")[0] or None
        optimizer = next((o for o, ms in self.facts.optimizers.items() if owner in ms), None)
        value = next((a.value for a in args[1:] if a.keyword is None or a.keyword.value in ("max_norm", "clip_value")), None)
        extra = [a for a in args[2:] if a.keyword is not None and a.keyword.value in ("norm_type", "error_if_nonfinite")]
        if owner is not None and optimizer is None and owner in self.facts.bare_models:
            self.note(original_node, f"kept `{kind[1]}`: `{owner}` has no optimizer for `{self.fw}.clip_gradients`; "
                                     f"the framework has averaged the gradients by then, so every rank clips alike")
            return updated_node
        if optimizer is not None and optimizer in self.facts.conditional_optimizers:
            self.note(original_node, f"kept `{kind[1]}`: `{optimizer}` is made only on some paths (the others update "
                                     f"`{owner}` by hand), so `{self.fw}.clip_gradients` could not name it; the "
                                     f"framework has averaged the gradients by then, so every rank clips alike")
            return updated_node
        if owner is None or optimizer is None or value is None:
            self.todo(original_node, f"cannot tell the model/optimizer of this clipping: use "
                                     f"`{self.fw}.clip_gradients(model, optimizer, {kind[0]}=...)`")
            return updated_node
        self.report(original_node, f"clipping -> `{self.fw}.clip_gradients(...)`", True)
        code = f"{self.fw}.clip_gradients({owner}, {optimizer}, {kind[0]}=__v__{''.join(', ' + a.keyword.value + '=__e' + str(i) + '__' for i, a in enumerate(extra))})"
        new = cst.parse_expression(code)

        class Fill(cst.CSTTransformer):
            def leave_Name(self, o, u):
                if u.value == "__v__":
                    return value
                if u.value.startswith("__e"):
                    return extra[int(u.value[3:-2])].value
                return u

        return new.visit(Fill())


class Clipping(Rule):
    code = "PTM135"
    name = "clipping"
    triggers = ("clip_grad_",)
    skips_other_statements = True
    examples = [
        Example(
            before='import torch\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n    optimizer.step()\n',
            fabric='import torch\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    fabric.clip_gradients(model, optimizer, max_norm=1.0)\n    optimizer.step()\n',
            accelerate='import torch\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    accelerator.clip_grad_norm_(model.parameters(), 1.0)\n    optimizer.step()\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
