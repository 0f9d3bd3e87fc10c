"""PTM110 helper-params: helper functions get the framework object through a parameter.

What it does: a class whose methods call backward (a `Trainer` holding `self.model`) takes the object in
`__init__` and keeps it as `self.fabric`; its methods use `self.fabric`. A function that calls backward, or prints on the training path (or calls one that does),
gets `fabric` / `accelerator` as its first parameter, and every call of it passes the object along.
No module-level global is added.

Why: `def train(args, model, device, loader, optimizer, epoch)` needs `fabric.backward` and
`fabric.print`; passing the object keeps the helper importable and testable.

Example: `def train(model, loader, optimizer):` -> `def train(fabric, model, loader, optimizer):` and
`train(model, loader, optimizer)` -> `train(fabric, model, loader, optimizer)`.

Fabric form: parameter `fabric`. Accelerate form: parameter `accelerator`.

Fix safety: safe. A helper used other than by direct calls (a callback, an `mp.spawn` target) is not
changed and gets a TODO.
"""
from __future__ import annotations

import libcst as cst
from migrator import matching as m

from migrator.analysis import MODULE
from migrator.rules.base import Example, Context, Rule, RuleTransformer, guarded
from migrator.rules.print_once import reports_rank


class _Transformer(RuleTransformer):
    def leave_FunctionDef(self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef):
        top = len(self._func) == 1 and not self._class_depth
        init_of_fw_class = (len(self._func) == 1 and self._class_depth == 1 and original_node.name.value == "__init__"
                            and self._classes[0] in self.facts.fw_classes)
        updated_node = super().leave_FunctionDef(original_node, updated_node)
        name = original_node.name.value
        if init_of_fw_class:
            return self._thread_into_init(original_node, updated_node)
        if not top:
            return updated_node
        if name in self.facts.unthreadable:
            self.todo(original_node, f"`{name}` needs `{self.fw}` but is used other than by a direct call: "
                                     f"pass `{self.fw}` to it by hand")
            return updated_node
        if name not in self.facts.fw_functions:
            return updated_node
        params = updated_node.params
        if any(p.name.value == self.fw for p in list(params.params) + list(params.kwonly_params)):
            return updated_node
        new = cst.Param(cst.Name(self.fw), comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        if not params.params and not params.posonly_params:
            if params.star_arg is not cst.MaybeSentinel.DEFAULT or params.kwonly_params or params.star_kwarg:
                pass
            else:
                new = new.with_changes(comma=cst.MaybeSentinel.DEFAULT)
        self.report(original_node, f"`{name}` takes `{self.fw}` as its first parameter", True)
        return updated_node.with_changes(params=params.with_changes(params=[new] + list(params.params)))

    def _thread_into_init(self, original_node, updated_node):
        """A trainer class takes the framework object in __init__ and keeps it as `self.fabric`."""
        fw = self.facts.fw
        params = list(updated_node.params.params)
        if any(p.name.value == fw for p in params) or not params:
            return updated_node
        new = cst.Param(cst.Name(fw), comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        if len(params) == 1:
            params[0] = params[0].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
            new = new.with_changes(comma=cst.MaybeSentinel.DEFAULT)
        params.insert(1, new)
        body = list(updated_node.body.body)
        idx = 1 if body and m.matches(body[0], m.SimpleStatementLine(body=[m.Expr(m.SimpleString())])) else 0
        body.insert(idx, cst.parse_statement(f"self.{fw} = {fw}"))
        self.report(original_node, f"the class takes `{fw}` in `__init__` and keeps it as `self.{fw}`", True)
        return updated_node.with_changes(params=updated_node.params.with_changes(params=params),
                                         body=updated_node.body.with_changes(body=body))

    def leave_SimpleStatementLine(self, original_node, updated_node):
        # `log_row(...)`: a print-only helper that keeps its parameters (it is also called where the object does
        # not exist) runs on the main process only where the object is in reach
        if not (isinstance(updated_node, cst.SimpleStatementLine) and len(updated_node.body) == 1):
            return updated_node
        small = updated_node.body[0]
        if not (isinstance(small, cst.Expr) and isinstance(small.value, cst.Call)
                and isinstance(small.value.func, cst.Name)):
            return updated_node
        name = small.value.func.value
        if self.scope == MODULE and self.facts.setup_scope not in (MODULE, None) and self._class_depth == 0 \
                and not self._func and (name == "print" or name in self.facts.print_only) \
                and not reports_rank(small.value):
            return self._once_at_import(original_node, updated_node, name)
        if name == "print" and self._class_depth and not self.in_fw_class_method() and self.facts.setup_scope \
                and not reports_rank(small.value):
            # a model class printing from __init__ or forward: it runs in every process and has no object to ask
            return self._once_at_import(original_node, updated_node, name)
        if not (name in self.facts.print_only_calls and self.in_fw_scope()):
            return updated_node
        flag = "is_global_zero" if self.ctx.target == "fabric" else "is_main_process"
        outer = self.enclosing_if()
        if outer is not None and isinstance(outer.test, cst.Attribute) and outer.test.attr.value == flag:
            return updated_node  # already on the main process only
        self.report(original_node, f"`{small.value.func.value}` only prints: it runs on the main process "
                                   f"(`{self.fw}.{flag}`), like `{self.fw}.print`", True)
        return guarded(updated_node, cst.Attribute(value=self.fw_expr(), attr=cst.Name(flag)))

    def _once_at_import(self, original_node, updated_node, name: str):
        """Output at import time (module level, above the guard or function that makes the object) runs in every
        process the launcher starts: it prints on the node's first process only. The object does not exist yet,
        so the test reads the launcher's LOCAL_RANK (unset in the process a user starts, 1.. in the ones Fabric
        starts; torchrun and accelerate launch set it in all)."""
        test = 'int(os.environ.get("LOCAL_RANK", "0")) == 0'
        outer = self.enclosing_if()
        if outer is not None and cst.Module([]).code_for_node(outer.test) == test:
            return updated_node
        self.ctx.imports.add("os")
        where = "in a class without the framework object" if self._class_depth else "at import time"
        self.report(original_node, f"`{name}(...)` {where} runs in every process: it runs on the node's first "
                                   f"process only (LOCAL_RANK 0), like `{self.fw}.print`", True)
        return guarded(updated_node, cst.parse_expression(test))

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call):
        func = updated_node.func
        if not isinstance(func, cst.Name):
            return updated_node
        name = func.value
        if name not in self.facts.fw_functions and name not in self.facts.external_fw and name not in self.facts.fw_classes:
            return updated_node
        args = list(updated_node.args)
        if args and args[0].keyword is None and cst.Module([]).code_for_node(args[0].value) in (self.fw, self.facts.fw):
            return updated_node
        if not self.in_fw_scope():
            self.todo(original_node, f"`{name}` now takes `{self.fw}`, which is not in reach here")
            return updated_node
        comma = cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")) if args else cst.MaybeSentinel.DEFAULT
        return updated_node.with_changes(args=[cst.Arg(self.fw_expr(), comma=comma)] + args)


class HelperParams(Rule):
    code = "PTM110"
    plain_scripts_only = True  # the core migration: a framework script has done it its own way
    name = "helper-params"
    examples = [
        Example(
            before='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef train_step(model, optimizer, x):\n    loss = model(x).sum()\n    loss.backward()\n    optimizer.step()\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    train_step(model, optimizer, torch.randn(8, 4))\n',
            fabric='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef train_step(fabric, model, optimizer, x):\n    loss = model(x).sum()\n    loss.backward()\n    optimizer.step()\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    train_step(fabric, model, optimizer, torch.randn(8, 4))\n',
            accelerate='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef train_step(accelerator, model, optimizer, x):\n    loss = model(x).sum()\n    loss.backward()\n    optimizer.step()\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    train_step(accelerator, model, optimizer, torch.randn(8, 4))\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
