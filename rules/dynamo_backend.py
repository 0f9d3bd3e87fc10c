"""PTM142 dynamo-backend: an unconditional `torch.compile` of the prepared model becomes Accelerate's setting.

What it does: `model = torch.compile(model)` (or `torch.compile(model, backend="...")`), as a statement of the
block that sets the model up, goes; the Accelerator gets `dynamo_backend="inductor"` (or the backend given).
`model = torch.compile(Net())` becomes `model = Net()`. Only when every model the script prepares is compiled
that way with one backend that accelerate knows, no other argument is given, the file has no other
`torch.compile`, and the model is not used between the compile and `prepare`.

Why: `prepare` compiles each model it is given, after wrapping it for distributed training, with
`torch.compile(model, backend=...)` and nothing else (accelerate 1.15); the setting is then one place, and
accelerate's launcher options can change it. Checkpoints keep their `_orig_mod.` keys:
`unwrap_model` keeps the compiled wrapper by default, as the compiled model had them before.

Example: `model = torch.compile(model)` before `model, optimizer = accelerator.prepare(model, optimizer)` ->
the line goes and `accelerator = Accelerator(dynamo_backend="inductor")`.

Fabric form: none: the compile stays before `fabric.setup` (PTM105 sets up after it), which is Fabric's
order. Accelerate form: `Accelerator(dynamo_backend=...)` (PTM100 writes it; an existing constructor is
edited). A conditional compile (`if args.compile: model = torch.compile(model)`, nanoGPT style), compile
options (`mode=`, `fullgraph=`, `dynamic=`) or a compile of only some of the prepared models stay as
written: `prepare` of a compiled model works, and a dynamo setting would compile every prepared model.

Fix safety: safe.
"""
from __future__ import annotations

from typing import Dict, Optional

import libcst as cst
from migrator import matching as m
from libcst.metadata import QualifiedNameProvider

from migrator.analysis import MAIN_GUARD, MODULE, is_main_guard
from migrator.names import qualified_names
from migrator.rules import _accelerator_args as args
from migrator.rules._accum import calls, code
from migrator.rules.base import Context, Example, Rule, RuleTransformer

# accelerate's DynamoBackend values, lower case: what it passes to torch.compile(backend=...)
BACKENDS = {"eager", "aot_eager", "inductor", "aot_ts_nvfuser", "nvprims_nvfuser", "cudagraphs", "ofi", "fx2trt",
            "onnxrt", "tensorrt", "aot_torchxla_trace_once", "torchxla_trace_once", "tvm", "hpu_backend", "neuron"}


def setup_block(module: cst.Module, scope: Optional[str]):
    if scope == MODULE:
        return module.body
    for s in module.body:
        if (scope == MAIN_GUARD and is_main_guard(s)) or (isinstance(s, cst.FunctionDef) and s.name.value == scope):
            return s.body.body
    return None


def _prepares(stmt: cst.CSTNode, fw: str, model: str) -> bool:
    return any(m.findall(a.value, m.Name(model)) for c in calls(stmt, "prepare", {fw}) for a in c.args)


def _used(stmt: cst.CSTNode, model: str) -> bool:
    """Names the model other than for its parameters (the same tensors, compiled or not)."""
    params = m.Call(func=m.Attribute(value=m.Name(model), attr=m.Name("parameters") | m.Name("named_parameters")))
    return len(m.findall(stmt, m.Name(model))) > len(m.findall(stmt, params))


class _Transformer(RuleTransformer):
    METADATA_DEPENDENCIES = RuleTransformer.METADATA_DEPENDENCIES + (QualifiedNameProvider,)

    def visit_Module(self, node: cst.Module):
        self.edits: Dict[int, Optional[cst.BaseStatement]] = {}
        self.ctor, self.backend = None, None
        self.plan(node)
        return True

    def compiled(self, stmt) -> Optional[tuple]:
        """(model, what it compiles, backend code) of `model = torch.compile(x[, backend="..."])`."""
        pattern = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())], value=m.Call())])
        if not m.matches(stmt, pattern) or "torch.compile" not in qualified_names(self, stmt.body[0].value.func):
            return None
        assign = stmt.body[0]
        call_args = assign.value.args
        if not call_args or call_args[0].keyword is not None or call_args[0].star:
            return None
        backend = '"inductor"'
        for a in call_args[1:]:
            if not (a.keyword is not None and a.keyword.value == "backend" and isinstance(a.value, cst.SimpleString)
                    and a.value.evaluated_value in BACKENDS):
                return None
            backend = code(a.value)
        return assign.targets[0].target.value, call_args[0].value, backend

    def plan(self, module: cst.Module) -> None:
        models = set(self.facts.models)
        block = setup_block(module, self.facts.setup_scope)
        if not models or block is None:
            return
        found = {}  # model -> (index in the block, statement, what it compiles, backend)
        for i, stmt in enumerate(block):
            c = self.compiled(stmt)
            if c is not None:
                if c[0] in found:
                    return
                found[c[0]] = (i, stmt) + c[1:]
        everywhere = [c for c in m.findall(module, m.Call()) if "torch.compile" in qualified_names(self, c.func)]
        backends = {f[3] for f in found.values()}
        where = args.slot(module, self.facts)
        if (set(found) != models or len(everywhere) != len(found) or len(backends) != 1 or where is None
                or where.keywords & {"dynamo_backend", "dynamo_plugin", "**"}):
            return
        for model, (i, *_) in found.items():
            p = next((j for j in range(i + 1, len(block)) if _prepares(block[j], self.fw, model)), None)
            if p is None or any(_used(s, model) for s in block[i + 1:p]):
                return
        self.backend = backends.pop()
        for model, (_, stmt, inner, _) in found.items():
            self.edits[id(stmt)] = None if m.matches(inner, m.Name(model)) else stmt.with_changes(
                body=[stmt.body[0].with_changes(value=inner)])
        if where.call is None:
            self.facts.accelerator_kwargs["dynamo_backend"] = self.backend
        else:
            self.ctor = where.call

    def leave_SimpleStatementLine(self, original_node, updated_node):
        if id(original_node) not in self.edits:
            return updated_node
        self.report(original_node, f"`torch.compile` -> `Accelerator(dynamo_backend={self.backend})`: "
                                   f"`{self.fw}.prepare` compiles the model", True)
        new = self.edits[id(original_node)]
        return self.remove(original_node) if new is None else new

    def leave_Call(self, original_node, updated_node):
        if original_node is self.ctor:
            return args.add_keywords(updated_node, {"dynamo_backend": self.backend})
        return updated_node


class DynamoBackend(Rule):
    code = "PTM142"
    name = "dynamo-backend"
    triggers = ("compile",)
    targets = ("accelerate",)
    examples = [
        Example(
            before='import torch\nfrom accelerate import Accelerator\n\n\ndef main():\n    accelerator = Accelerator()\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model = torch.compile(model)\n    model, optimizer = accelerator.prepare(model, optimizer)\n    accelerator.backward(model(torch.randn(8, 4)).sum())\n    optimizer.step()\n',
            fabric=None,
            accelerate='import torch\nfrom accelerate import Accelerator\n\n\ndef main():\n    accelerator = Accelerator(dynamo_backend="inductor")\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model, optimizer = accelerator.prepare(model, optimizer)\n    accelerator.backward(model(torch.randn(8, 4)).sum())\n    optimizer.step()\n',
        ),
        Example(
            before='import torch\n\n\ndef main(compile_model=True):\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    if compile_model:\n        model = torch.compile(model)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n',
            fabric=None,
            accelerate=None,
        ),
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
