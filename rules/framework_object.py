"""PTM100 framework-object: create the framework object where the training is set up.

What it does: adds `from lightning.fabric import Fabric` and `fabric = Fabric(...)` followed by
`fabric.launch()` (Fabric), or `from accelerate import Accelerator` and `accelerator = Accelerator(...)`
(Accelerate), at the start of the function (or module block) that creates the optimizer.

Why: every other rule points at this object: its device, setup, backward and print.

Example: a script whose optimizer is created in `main()` gets, at the top of `main()`,
`fabric = Fabric(devices=..., num_nodes=...)` and `fabric.launch()`.

Fabric form: `Fabric(accelerator=..., devices=..., strategy=..., precision=..., num_nodes=...)` from the
command-line options, then `fabric.launch()`, so `python train.py` and `torchrun` both work. Without
`--devices`, the device and node counts follow torchrun's environment (`LOCAL_WORLD_SIZE`,
`GROUP_WORLD_SIZE`), so a torchrun start never trains each process alone. With `--launcher fabric-run`
the script is meant for `fabric run ...`: `Fabric()` takes no values and there is no `launch()`.

Without `--accelerator`, the device can come from the script (`Facts.device_choice`): PTM115 makes the object
follow the script's own CUDA flag (`Fabric(accelerator="cuda" if args.cuda else "cpu", ...)`, created right after
the flag's line in a function or the main guard when nothing above uses the object), and PTM114 asks for CPU
processes (`accelerator="cpu"`) where a hand-made input cannot be put on the device; a comment above says why.

The options of a DDP wrapper that PTM131 removed go to the object: `strategy=DDPStrategy(find_unused_parameters=True)`
in place of `strategy="ddp"` (Fabric), `kwargs_handlers=[DistributedDataParallelKwargs(...)]` (Accelerate); what
cannot be passed gets a PTM131 TODO above the object (rules/_ddp_options.py). Where PTM131 keeps a
DistributedDataParallel wrapper (around a model nothing sets up, DINO's teacher), Fabric gets `strategy="ddp"`
(unless `--strategy` says otherwise): on one device only that strategy makes the process group the wrapper needs.

Accelerate form: `Accelerator(cpu=True, mixed_precision=...)` from `--accelerator cpu` and `--precision`;
`cpu=not args.cuda` for the script's flag, `cpu=True` for PTM114.
The process count comes from the launcher (`accelerate launch`, `torchrun`). Without `--accelerator`,
`cpu=` is true exactly when torchrun started several processes on a machine without CUDA: a plain
`Accelerator()` there lets each process train alone (accelerate 1.15). On a machine whose accelerator is not
CUDA (XPU, NPU) pass `--accelerator` explicitly.

Fix safety: safe; an existing framework object is reused, never created twice.
"""
from __future__ import annotations

import dataclasses
import re
from typing import List, Sequence

import libcst as cst

from migrator.analysis import MAIN_GUARD, MODULE, is_main_guard
from migrator.names import dotted
from migrator.rules.base import Context, Example, Rule, RuleTransformer, with_todo

ENV_COMMENT = "# without --devices, the device and node counts follow torchrun when it starts the script"
# lightning 2.6: on one device Fabric makes a process group only for strategy="ddp"
KEPT_DDP_COMMENT = '# strategy="ddp": the DistributedDataParallel wrapper kept below needs a process group, on one device too'


def fabric_ctor(ctx: Context, ddp=None) -> str:
    """The `fabric = Fabric(...)` line; `ddp` (rules/_ddp_options.Plan) gives the strategy that carries the removed
    DDP wrapper's options."""
    o = ctx.options
    if o.launcher == "fabric-run":
        args = []
    else:
        args = []
        choice = ctx.facts.device_choice  # PTM114 (CPU processes) or PTM115 (the script's own device flag)
        if choice == "cpu":  # PTM114: hand-made inputs stay on the CPU, whatever --accelerator asked for
            args.append('accelerator="cpu"')
        elif o.accelerator:
            args.append(f'accelerator="{o.accelerator}"')
        elif choice is not None:
            flag, _, accelerator = choice  # PTM115: "cuda" for a CUDA flag behind a CUDA check, else "auto"
            args.append(f'accelerator="{accelerator}" if {flag} else "cpu"')
        if o.devices is not None:
            dev = o.devices
            args.append(f"devices={dev}" if str(dev).lstrip("-").isdigit() else f'devices="{dev}"')
        else:
            args.append('devices=os.environ.get("LOCAL_WORLD_SIZE", "auto")')
        if ddp is not None and ddp.argument is not None:
            args.append(f"strategy={ddp.argument[1]}")  # DDPStrategy: "ddp" (or its spawn / fork form) with options
        elif o.strategy:
            args.append(f'strategy="{o.strategy}"')
        elif ctx.facts.kept_ddp:
            args.append('strategy="ddp"')
        if ctx.options.num_nodes is not None:
            args.append(f"num_nodes={o.num_nodes}")
        elif o.devices is None:
            args.append('num_nodes=int(os.environ.get("GROUP_WORLD_SIZE", "1"))')
    precision = ctx.precision_code()
    if precision:
        args.append(f"precision={precision}")
    return f"{ctx.fw} = Fabric({', '.join(args)})"


# Accelerate starts each torchrun process alone on a CPU-only machine unless cpu=True (checked: accelerate 1.15).
CPU_UNDER_TORCHRUN = 'cpu=not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1'
ACC_ENV_COMMENT = "# without --accelerator, CPU-only machines need cpu=True for torchrun's processes to train together"


def accelerator_ctor(ctx: Context, ddp=None) -> str:
    """The `accelerator = Accelerator(...)` line; `ddp` (rules/_ddp_options.Plan) adds the removed DDP wrapper's
    options as a kwargs handler."""
    args = []
    choice = ctx.facts.device_choice  # PTM114 (CPU processes) or PTM115 (the script's own device flag)
    if ctx.options.accelerator == "cpu" or choice == "cpu":  # PTM114 wins over --accelerator, as for Fabric
        args.append("cpu=True")
    elif ctx.options.accelerator is None and choice is not None:
        from migrator.rules.device_flag import negation
        flag, checks, _ = choice
        # a flag that checks the accelerator's presence itself (torch.cuda / torch.accelerator.is_available()) is
        # false on a CPU-only machine
        args.append(f"cpu={negation(flag)}" if checks else
                    f"cpu={negation(flag)} or ({CPU_UNDER_TORCHRUN.split('=', 1)[1]})")
    elif ctx.options.accelerator is None:
        args.append(CPU_UNDER_TORCHRUN)
    precision = ctx.precision_code()
    if precision:
        args.append(f"mixed_precision={precision}")
    args.extend(f"{k}={v}" for k, v in ctx.facts.accelerator_kwargs.items())  # PTM141, PTM142
    if ddp is not None and ddp.argument is not None:
        args.append(f"{ddp.argument[0]}={ddp.argument[1]}")  # PTM131: the removed DDP wrapper's options
    return f"{ctx.fw} = Accelerator({', '.join(args)})"


def _comments(*texts) -> List[cst.EmptyLine]:
    return [cst.EmptyLine(comment=cst.Comment(t)) for t in texts if t]


def creation_statements(ctx: Context, ddp=None) -> List[cst.BaseStatement]:
    # why the object picks the CPU, or follows the script's flag (unless --accelerator decided)
    note = ctx.facts.device_comment if ctx.facts.device_choice and (
        ctx.options.accelerator is None or ctx.facts.device_choice == "cpu") else None
    if ctx.target == "fabric":
        code = fabric_ctor(ctx, ddp)
        stmts = [cst.parse_statement(code)]
        stmts[0] = stmts[0].with_changes(leading_lines=_comments(
            ENV_COMMENT if "os.environ" in code else None, note if "accelerator=" in code else None,
            KEPT_DDP_COMMENT if ctx.facts.kept_ddp and 'strategy="ddp"' in code and not ctx.options.strategy else None))
        if ctx.options.launcher != "fabric-run":
            stmts.append(cst.parse_statement(f"{ctx.fw}.launch()"))
        return stmts + _matmul_precision(ctx)
    code = accelerator_ctor(ctx, ddp)
    stmt = cst.parse_statement(code)
    stmt = stmt.with_changes(leading_lines=_comments(ACC_ENV_COMMENT if "os.environ" in code else None, note))
    return [stmt] + _matmul_precision(ctx)


def _matmul_precision(ctx: Context) -> List[cst.BaseStatement]:
    """--matmul-precision high: float32 matmuls on TF32 tensor cores (Ampere and newer), in every process."""
    if not ctx.options.matmul_precision:
        return []
    return [cst.parse_statement(f'torch.set_float32_matmul_precision("{ctx.options.matmul_precision}")')]


def insertion_index(body: Sequence[cst.BaseStatement], module_level: bool) -> int:
    """After a docstring; at module level, at the first statement that is not an import or a definition (and,
    see `_insert`, not before the module's own settings: right before the first statement that uses it)."""
    idx = 0
    if body and _is_docstring(body[0]):
        idx = 1
    if not module_level:
        return idx
    return first_code_index(body)


def first_use_index(body: Sequence[cst.BaseStatement], name: str, default: int) -> int:
    """Index of the first top-level statement that reads `name` (module-level scripts: config stays above)."""
    from migrator import matching as m
    for i, stmt in enumerate(body):
        if i >= default and not isinstance(stmt, (cst.FunctionDef, cst.ClassDef)) and m.findall(stmt, m.Name(name)):
            return i
    return default


_GROUP_START = re.compile(r"^(init_distributed(_mode)?|init_dist(ributed)?|setup_dist(ributed)?|dist_init|"
                          r"setup_ddp|ddp_setup|init_process_group)$")


def after_group_start(body: Sequence[cst.BaseStatement], idx: int, fw: str) -> int:
    """Past a call that starts the process group itself and stays (a helper such as DETR's and MAE's
    `utils.init_distributed_mode(args)` in a module the migration leaves alone), as long as nothing before it
    reads the object. Fabric and Accelerate start the group only when none exists: created before such a call,
    the object starts it and the helper's own `init_process_group` then fails ("trying to initialize the
    default process group twice")."""
    from migrator import matching as m
    for i in range(idx, len(body)):
        if isinstance(body[i], (cst.FunctionDef, cst.ClassDef)):
            continue
        if m.findall(body[i], m.Name(fw)):
            break
        if any(_GROUP_START.match((dotted(c.func) or "").split(".")[-1]) for c in m.findall(body[i], m.Call())):
            idx = i + 1
    return idx


def first_code_index(body: Sequence[cst.BaseStatement]) -> int:
    for i, stmt in enumerate(body):
        if not (_is_import(stmt) or _is_docstring(stmt) or isinstance(stmt, (cst.FunctionDef, cst.ClassDef))):
            return i
    return len(body)


def _is_docstring(stmt: cst.BaseStatement) -> bool:
    return (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 and isinstance(stmt.body[0], cst.Expr)
            and isinstance(stmt.body[0].value, (cst.SimpleString, cst.ConcatenatedString)))


def _is_import(stmt: cst.BaseStatement) -> bool:
    return isinstance(stmt, cst.SimpleStatementLine) and all(isinstance(s, (cst.Import, cst.ImportFrom)) for s in stmt.body)


class _Transformer(RuleTransformer):
    def where(self, i: int, body) -> cst.CSTNode:
        """The original statement at index i of the block being edited, for a diagnostic's position."""
        originals = getattr(self, "_originals", None)
        if originals is not None and len(originals) == len(body) and i < len(originals):
            return originals[i]
        return body[i] if i < len(body) else body[-1]

    def _insert(self, body: Sequence[cst.BaseStatement], module_level: bool) -> List[cst.BaseStatement]:
        idx = insertion_index(body, module_level)
        if module_level:
            idx = max(idx, first_use_index(body, self.fw, idx))
        elif self.facts.create_after:  # PTM115: right after the flag the object's device follows
            from migrator.rules.device_flag import binding_index
            where = binding_index(body, self.facts.create_after)
            idx = idx if where is None else max(idx, where + 1)
        idx = after_group_start(body, idx, self.fw)
        ddp = self._ddp_plan(body, idx)
        new = creation_statements(self.ctx, ddp)
        for message in ddp.todos if ddp is not None else ():  # PTM131's: what the removed DDP wrapper had
            new[0] = with_todo(new[0], "PTM131", message)
        if module_level and idx < len(body):
            # keep the blank lines that separated imports from code, above our block instead
            new[0] = new[0].with_changes(leading_lines=list(body[idx].leading_lines) + list(new[0].leading_lines))
            body = list(body[:idx]) + [body[idx].with_changes(leading_lines=[cst.EmptyLine()])] + list(body[idx + 1:])
        if body:
            where = self.where(min(idx, len(body) - 1), body)
            self.report(where, f"created `{self.fw}`, the {self.ctx.target} object that the migrated code uses", True)
            for message in ddp.todos if ddp is not None else ():
                self.report(where, message, False)
                self.ctx.diagnostics[-1] = dataclasses.replace(self.ctx.diagnostics[-1], code="PTM131")
            if ddp is not None and ddp.argument is not None:
                self.report(where, f"`{ddp.argument[0]}={ddp.argument[1]}`: the options of the removed "
                                   f"DistributedDataParallel wrapper, for the framework's DDP", True)
        for module, name in ddp.imports if ddp is not None else ():
            self.ctx.imports.add(module, name)
        self._schedule_imports()
        return list(body[:idx]) + new + list(body[idx:])

    def visit_Module(self, node: cst.Module):
        self._module = node
        return True

    def _ddp_plan(self, body: Sequence[cst.BaseStatement], idx: int):
        """The removed DDP wrappers' options for the object created at `body[idx]` (rules/_ddp_options.py)."""
        if not self.facts.ddp_wrappers:
            return None
        from migrator.rules import _ddp_options
        at = _ddp_options.place(self._module, self.facts.setup_scope, body, idx)
        return _ddp_options.plan(self._module, self.facts.ddp_wrappers, self.ctx.target, at,
                                 self.ctx.options.strategy, self.ctx.options.launcher)

    def _schedule_imports(self) -> None:
        if self.ctx.target == "fabric":
            self.ctx.imports.add("lightning.fabric", "Fabric")
            if self.ctx.options.devices is None and self.ctx.options.launcher != "fabric-run":
                self.ctx.imports.add("os")
        else:
            self.ctx.imports.add("accelerate", "Accelerator")
            code = accelerator_ctor(self.ctx)
            if "os.environ" in code:
                self.ctx.imports.add("os")
            if "torch." in code:
                self.ctx.imports.add("torch")
        if "torch.cuda.is_available()" in (self.ctx.precision_code() or "") or self.ctx.options.matmul_precision:
            self.ctx.imports.add("torch")

    def leave_FunctionDef(self, original_node, updated_node):
        name = self._func[-1] if self._func else None
        updated_node = super().leave_FunctionDef(original_node, updated_node)
        if name and name == self.facts.setup_scope and len(self._func) == 0:
            self._originals = list(original_node.body.body)
            body = self._insert(updated_node.body.body, module_level=False)
            updated_node = updated_node.with_changes(body=updated_node.body.with_changes(body=body))
        return updated_node

    def leave_If(self, original_node, updated_node):
        updated_node = super().leave_If(original_node, updated_node)
        if (self.facts.setup_scope == MAIN_GUARD and not self._func and not self._class_depth
                and is_main_guard(original_node)):
            self._originals = list(original_node.body.body)
            body = self._insert(updated_node.body.body, module_level=False)
            updated_node = updated_node.with_changes(body=updated_node.body.with_changes(body=body))
        return updated_node

    def leave_Module(self, original_node, updated_node):
        if self.facts.setup_scope == MODULE:
            self._originals = list(original_node.body)
            return updated_node.with_changes(body=self._insert(updated_node.body, module_level=True))
        return updated_node


class FrameworkObject(Rule):
    code = "PTM100"
    plain_scripts_only = True  # the core migration: a framework script has done it its own way
    name = "framework-object"
    examples = [
        Example(
            before='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\nmodel = torch.nn.Linear(4, 1)\noptimizer = torch.optim.SGD(model.parameters(), lr=0.1)\nloss = model(torch.randn(8, 4)).sum()\nloss.backward()\noptimizer.step()\n',
            fabric='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\nimport os\nfrom lightning.fabric import Fabric\n\n# without --devices, the device and node counts follow torchrun when it starts the script\nfabric = Fabric(devices=os.environ.get("LOCAL_WORLD_SIZE", "auto"), num_nodes=int(os.environ.get("GROUP_WORLD_SIZE", "1")))\nfabric.launch()\n\nmodel = torch.nn.Linear(4, 1)\noptimizer = torch.optim.SGD(model.parameters(), lr=0.1)\nloss = model(torch.randn(8, 4)).sum()\nloss.backward()\noptimizer.step()\n',
            accelerate='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\nimport os\nfrom accelerate import Accelerator\n\n# without --accelerator, CPU-only machines need cpu=True for torchrun\'s processes to train together\naccelerator = Accelerator(cpu=not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1)\n\nmodel = torch.nn.Linear(4, 1)\noptimizer = torch.optim.SGD(model.parameters(), lr=0.1)\nloss = model(torch.randn(8, 4)).sum()\nloss.backward()\noptimizer.step()\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)

    def apply(self, wrapper, ctx):
        if ctx.facts.fw_exists or not ctx.facts.setup_scope:
            return wrapper.module
        return super().apply(wrapper, ctx)
