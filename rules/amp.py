"""PTM133 amp: hand-written mixed precision becomes the framework's precision setting.

What it does: deletes `torch.autocast(...)` / `torch.cuda.amp.autocast()` blocks around a model's forward
(their body stays), and every GradScaler use: the `scaler = GradScaler()` line, `scaler.scale(loss).backward()`
-> `loss.backward()` (then PTM107 makes it the framework backward), `scaler.step(opt)` -> `opt.step()`,
`scaler.update()` and `scaler.unscale_(opt)` go. An autocast block that does not call a set-up model becomes
`with fabric.autocast():` / `with accelerator.autocast():`. The precision comes from the dtype the script used
(float16 -> `16-mixed` / `fp16`, bfloat16 -> `bf16-mixed` / `bf16`), is set on the constructor by PTM100, and
`--precision` overrides it. AMP switched by a runtime condition (`enabled=use_amp`) becomes
`precision="16-mixed" if torch.cuda.is_available() else "32-true"`: the usual meaning of such a switch. A
GradScaler made on the script's own switch (`GradScaler() if dtype == torch.float16 else None`) in a script with no
autocast asks for no precision: the script casts by hand (nanochat), the framework would add an autocast the
original never runs, and that scaler stays and scales the loss as before (PTM120 notes it).

Why: the framework applies autocast to the forward and scales the loss in its backward; keeping the
script's own scaler as well would scale twice or step with unscaled gradients.

Example: `with torch.autocast("cuda", dtype=torch.bfloat16):` around `out = model(x)` is removed and the
constructor gets `precision="bf16-mixed"`.

Fabric form: `Fabric(precision=...)`, `fabric.autocast()` for code outside the forward.
Accelerate form: `Accelerator(mixed_precision=...)`, `accelerator.autocast()` for code outside the forward.

A scaler's state in a checkpoint dict (`"scaler": scaler.state_dict()`) and a `scaler.load_state_dict(...)`
statement go too: the framework keeps its own. A use the rule cannot take over (`scaler.get_scale()`,
`torch.save(scaler.state_dict(), path)`) keeps the scaler's construction, unused for stepping, so the script
still runs, and gets a TODO.

Fix safety: safe.
"""
from __future__ import annotations

from typing import Dict, Optional, Set

import libcst as cst
from migrator import matching as m
from migrator.matching import Visitor
from libcst.metadata import QualifiedNameProvider

from migrator.names import assigned_names, dotted, qualified_names
from migrator.precision import AUTOCASTS, SCALERS
from migrator.rules.base import Context, Example, Rule, RuleTransformer


TAKEN_OVER = {"scale", "step", "update", "unscale_"}  # calls on the scaler the rule rewrites or removes


def scaler_method(node: cst.BaseExpression, scalers: Set[str]) -> Optional[str]:
    """`scaler.step(...)` -> "step" when `scaler` is one of `scalers`; anything else -> None."""
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and dotted(node.func.value) in scalers:
        return node.func.attr.value
    return None


class _ScalerUses(Visitor):
    """Names of a scaler (ids of their Name nodes) in uses the rule cannot take over."""

    def __init__(self, scalers: Set[str], scaler_params: Dict[str, Set[str]]):
        super().__init__()
        self.scalers, self.scaler_params = scalers, scaler_params
        self.handled: Set[int] = set()
        self.unhandled: Set[int] = set()

    def visit_Call(self, node: cst.Call) -> None:
        if scaler_method(node, self.scalers) in TAKEN_OVER:
            self.handled.add(id(node.func.value))
        if isinstance(node.func, cst.Name) and node.func.value in self.scaler_params:
            self.handled.update(id(a.value) for a in node.args if isinstance(a.value, cst.Name))

    def visit_DictElement(self, node: cst.DictElement) -> None:
        if scaler_method(node.value, self.scalers) == "state_dict":  # {"scaler": scaler.state_dict()}: the element goes
            self.handled.add(id(node.value.func.value))

    def visit_Expr(self, node: cst.Expr) -> None:
        if scaler_method(node.value, self.scalers) == "load_state_dict":  # the statement goes
            self.handled.add(id(node.value.func.value))

    def visit_Param(self, node: cst.Param) -> None:
        self.handled.add(id(node.name))

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        if isinstance(node.target, cst.Name):
            self.handled.add(id(node.target))

    def visit_Name(self, node: cst.Name) -> None:
        if node.value in self.scalers and id(node) not in self.handled:
            self.unhandled.add(id(node))


class _Transformer(RuleTransformer):
    METADATA_DEPENDENCIES = RuleTransformer.METADATA_DEPENDENCIES + (QualifiedNameProvider,)

    def __init__(self, rule, ctx):
        super().__init__(rule, ctx)
        self.scalers: Set[str] = set()
        self.kept: Set[int] = set()

    def visit_Module(self, node: cst.Module):
        self.scaler_params: Dict[str, Set[str]] = {}
        if "GradScaler" not in (self.ctx.text or "GradScaler"):
            return True  # no scaler under any import spelling: only autocast blocks to handle
        for a in m.findall(node, m.Assign(value=m.Call()), metadata_resolver=self):
            if qualified_names(self, a.value.func) & SCALERS:
                self.scalers.update(n for t in a.targets for n in assigned_names(t.target))
        # helpers that receive the scaler: the argument and the parameter go with it
        self.scaler_params: Dict[str, Set[str]] = {}
        defs = {d.name.value: d for d in node.body if isinstance(d, cst.FunctionDef)}
        for call in m.findall(node, m.Call(func=m.Name())):
            fn = defs.get(call.func.value)
            if fn is None:
                continue
            params = [p.name.value for p in fn.params.params]
            for i, a in enumerate(call.args):
                if dotted(a.value) in self.scalers:
                    name = a.keyword.value if a.keyword else (params[i] if i < len(params) else None)
                    if name:
                        self.scaler_params.setdefault(fn.name.value, set()).add(name)
        self.scalers |= {p for ps in self.scaler_params.values() for p in ps}
        uses = _ScalerUses(self.scalers, self.scaler_params)
        node.visit(uses)
        # a use the rule cannot take over (`scaler.get_scale()`, `torch.save(scaler.state_dict(), ...)`): the
        # scaler stays, unused for stepping, so that the code still runs; the use gets a TODO
        self.kept = uses.unhandled
        if self.kept:
            self.scaler_params = {}
        return True

    def leave_FunctionDef(self, original_node, updated_node):
        updated_node = super().leave_FunctionDef(original_node, updated_node)
        drop = self.scaler_params.get(original_node.name.value) if not self._func else None
        if not drop:
            return updated_node
        params = [p for p in updated_node.params.params if p.name.value not in drop]
        if params:
            params[-1] = params[-1].with_changes(comma=updated_node.params.params[-1].comma)
        return updated_node.with_changes(params=updated_node.params.with_changes(params=params))

    def _is_autocast(self, item: cst.WithItem) -> bool:
        return isinstance(item.item, cst.Call) and bool(qualified_names(self, item.item.func) & AUTOCASTS)

    def leave_With(self, original_node: cst.With, updated_node: cst.With):
        auto = [i for i, item in enumerate(original_node.items) if self._is_autocast(item)]
        if not auto:
            return updated_node
        if not self.in_fw_scope():
            self.todo(original_node, "autocast out of reach of the framework object: use its precision setting")
            return updated_node
        models = set(self.facts.models)
        calls_model = any(dotted(c.func) in models for c in m.findall(original_node.body, m.Call()))
        if not calls_model:
            items = list(updated_node.items)
            for i in auto:
                items[i] = items[i].with_changes(item=cst.parse_expression(f"{self.fw}.autocast()"))
            self.report(original_node, f"autocast outside the model's forward -> `{self.fw}.autocast()`", True)
            return updated_node.with_changes(items=items)
        self.report(original_node, "removed autocast around the forward: the framework's precision setting applies it", True)
        rest = [item for i, item in enumerate(updated_node.items) if i not in auto]
        if rest:
            rest[-1] = rest[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
            return updated_node.with_changes(items=rest)
        body = list(updated_node.body.body)
        if isinstance(updated_node.body, cst.SimpleStatementSuite):
            body = [cst.SimpleStatementLine(body=list(updated_node.body.body))]
        body[0] = body[0].with_changes(leading_lines=list(updated_node.leading_lines) + list(body[0].leading_lines))
        return cst.FlattenSentinel(body)

    def _scaler_call(self, node: cst.BaseExpression, method: str) -> bool:
        return scaler_method(node, self.scalers) == method

    def visit_WithItem(self, node: cst.WithItem):
        self._with_items = getattr(self, "_with_items", set()) | {id(node.item)}
        return True

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call):
        if qualified_names(self, original_node.func) & AUTOCASTS and id(original_node) not in getattr(self, "_with_items", set()):
            self.todo(original_node, "this autocast is kept (it is not a `with` block around the forward): the "
                                     "framework's precision setting already applies it; remove it")
        if isinstance(updated_node.func, cst.Name) and updated_node.func.value in self.scaler_params:
            args = [a for a in updated_node.args if dotted(a.value) not in self.scalers]
            if len(args) != len(updated_node.args):
                if args:
                    args[-1] = args[-1].with_changes(comma=updated_node.args[-1].comma)
                return updated_node.with_changes(args=args)
        # scaler.scale(loss) -> loss (its .backward() is then the framework's)
        if self._scaler_call(updated_node, "scale") and updated_node.args:
            self.report(original_node, "removed GradScaler.scale: the framework's backward scales the loss", True)
            return updated_node.args[0].value
        # scaler.step(opt) -> opt.step()
        if self._scaler_call(updated_node, "step") and updated_node.args:
            opt = updated_node.args[0].value
            self.report(original_node, "`scaler.step(opt)` -> `opt.step()`", True)
            return cst.Call(func=cst.Attribute(value=opt, attr=cst.Name("step")))
        return updated_node

    def leave_Dict(self, original_node, updated_node):
        if len(updated_node.elements) < len(original_node.elements) and updated_node.elements and \
                original_node.elements[-1].comma is cst.MaybeSentinel.DEFAULT:  # the last one went: no `, }`
            last = updated_node.elements[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
            return updated_node.with_changes(elements=[*updated_node.elements[:-1], last])
        return updated_node

    def leave_Name(self, original_node, updated_node):
        if id(original_node) in self.kept:
            self.todo(original_node, "the GradScaler is kept for this use only: the framework scales the loss "
                                     "itself; remove the use and then the scaler")
        return updated_node

    def leave_DictElement(self, original_node, updated_node):
        if not self.kept and self._scaler_call(original_node.value, "state_dict"):
            self.report(original_node, "dropped the GradScaler's state from the checkpoint: the framework keeps its own", True)
            return cst.RemoveFromParent()
        return updated_node

    def leave_SimpleStatementLine(self, original_node, updated_node):
        if len(original_node.body) != 1:
            return updated_node
        small = original_node.body[0]
        if isinstance(small, cst.Expr) and (self._scaler_call(small.value, "update") or self._scaler_call(small.value, "unscale_")):
            self.report(original_node, f"removed `{dotted(small.value.func)}(...)`: the framework handles it", True)
            return self.remove(original_node)
        if isinstance(small, cst.Expr) and not self.kept and self._scaler_call(small.value, "load_state_dict"):
            self.report(original_node, "removed the GradScaler's state loading: the framework keeps its own", True)
            return self.remove(original_node)
        if isinstance(small, cst.Assign) and isinstance(small.value, cst.Call) and not self.kept and \
                qualified_names(self, small.value.func) & SCALERS:
            self.report(original_node, "removed the GradScaler: the framework's precision setting scales the loss", True)
            return self.remove(original_node)
        return updated_node


class Amp(Rule):
    code = "PTM133"
    name = "amp"
    triggers = ("autocast", "gradscaler")
    examples = [
        Example(
            before='import torch\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    scaler = torch.cuda.amp.GradScaler()\n    with torch.autocast("cuda", dtype=torch.float16):\n        loss = model(torch.randn(8, 4)).sum()\n    scaler.scale(loss).backward()\n    scaler.step(optimizer)\n    scaler.update()\n',
            fabric='import torch\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loss = model(torch.randn(8, 4)).sum()\n    loss.backward()\n    optimizer.step()\n',
            accelerate='import torch\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loss = model(torch.randn(8, 4)).sum()\n    loss.backward()\n    optimizer.step()\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
