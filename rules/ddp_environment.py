"""PTM130 ddp-environment: hand-written process-group code goes; the framework owns it.

What it does: deletes `dist.init_process_group(...)`, `dist.destroy_process_group()`,
`torch.cuda.set_device(...)`, `os.environ["MASTER_ADDR"|"MASTER_PORT"] = ...` and single-process defaults
(`os.environ.setdefault("RANK"|"WORLD_SIZE"|"LOCAL_RANK"|"MASTER_ADDR"|..., ...)`); turns reads of
`LOCAL_RANK` / `RANK` / `WORLD_SIZE` from the environment into framework properties (a "launched distributed?"
test, `int(os.environ.get("RANK", -1)) != -1` or `"RANK" in os.environ`, into `fabric.world_size > 1`: Fabric's
own launcher does not set RANK in its processes); and turns an
`mp.spawn(fn, args=(...), nprocs=n)` entry point into a plain call `fn(...)`, dropping `fn`'s first
parameter (the rank that spawn passed) and rebinding that name to the framework's global rank.

Why: Fabric and Accelerate start the processes and the process group themselves; a second
`init_process_group` fails, and spawn would start processes that each start the framework's own.

Example: `local_rank = int(os.environ["LOCAL_RANK"])` -> `local_rank = fabric.local_rank`.

Fabric form: `fabric.global_rank`, `fabric.local_rank`, `fabric.world_size`; the launch is `fabric.launch()`.
Accelerate form: `accelerator.process_index`, `accelerator.local_process_index`, `accelerator.num_processes`.

Fix safety: safe. An environment read or spawn target out of reach of the framework object gets a TODO.
"""
from __future__ import annotations

from typing import Dict

import libcst as cst
from migrator import matching as m
from libcst.metadata import QualifiedNameProvider

from migrator.names import dotted, env_key, qualified_names
from migrator.rules.base import Context, Example, Rule, RuleTransformer, guarded
from migrator.rules.framework_object import insertion_index

REMOVED_CALLS = {"torch.distributed.init_process_group", "torch.distributed.destroy_process_group",
                 "torch.cuda.set_device"}
SPAWN = {"torch.multiprocessing.spawn", "torch.multiprocessing.spawn.spawn"}
ENV_VARS = {"MASTER_ADDR", "MASTER_PORT"}
# `os.environ.setdefault("RANK", "0")`: single-process defaults; set after Fabric's launch they made the processes
# it started each see world size 1 (every rank trained on all the data)
DEFAULTED_VARS = ENV_VARS | {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"}
PROPERTIES = {
    "fabric": {"LOCAL_RANK": "local_rank", "RANK": "global_rank", "WORLD_SIZE": "world_size"},
    "accelerate": {"LOCAL_RANK": "local_process_index", "RANK": "process_index", "WORLD_SIZE": "num_processes"},
}


class _Transformer(RuleTransformer):
    METADATA_DEPENDENCIES = RuleTransformer.METADATA_DEPENDENCIES + (QualifiedNameProvider,)

    def __init__(self, rule, ctx):
        super().__init__(rule, ctx)
        self.spawn_targets: Dict[str, cst.Call] = {}

    def visit_Module(self, node: cst.Module):
        if "spawn" not in (self.ctx.text or "spawn"):
            return True  # no mp.spawn under any import spelling
        for call in m.findall(node, m.Call(), metadata_resolver=self):
            if qualified_names(self, call.func) & SPAWN and call.args and isinstance(call.args[0].value, cst.Name):
                self.spawn_targets[call.args[0].value.value] = call
        # the rank parameter each spawn target loses: its direct calls (`worker(0, 1, cfg)`) drop that argument
        self.rank_params = {f.name.value: f.params.params[0].name.value for f in node.body
                            if isinstance(f, cst.FunctionDef) and f.name.value in self.spawn_targets
                            and f.params.params and f.name.value in self.facts.fw_scopes()}
        return True

    def _prop(self, key: str) -> cst.BaseExpression:
        return cst.Attribute(value=self.fw_expr(), attr=cst.Name(PROPERTIES[self.ctx.target][key]))

    def leave_SimpleStatementLine(self, original_node, updated_node):
        if len(original_node.body) != 1:
            return updated_node
        small = original_node.body[0]
        if isinstance(small, cst.Expr) and isinstance(small.value, cst.Call):
            q = qualified_names(self, small.value.func)
            if q & {"torch.distributed.destroy_process_group"}:
                return self._destroy(original_node, updated_node, small.value)
            if q & REMOVED_CALLS:
                self.report(original_node, f"removed `{dotted(small.value.func)}(...)`: the framework owns the process group", True)
                return self.remove(original_node)
            if q & SPAWN:
                return self._spawn(original_node, updated_node, small.value)
            if m.matches(small.value, m.Call(func=m.Attribute(attr=m.Name("setdefault")))) and env_key(
                    cst.Call(func=cst.Attribute(value=cst.Attribute(value=cst.Name("os"), attr=cst.Name("environ")), attr=cst.Name("get")),
                             args=small.value.args)) in DEFAULTED_VARS:
                self.report(original_node, "removed an `os.environ.setdefault(...)` of the process-group environment: "
                                           "the launcher sets it", True)
                return self.remove(original_node)
        if isinstance(small, cst.Assign) and len(small.targets) == 1 and env_key(small.targets[0].target) in ENV_VARS:
            self.report(original_node, "removed a MASTER_ADDR/MASTER_PORT assignment: the launcher sets them", True)
            return self.remove(original_node)
        return updated_node

    def _destroy(self, original_node, updated_node, call: cst.Call):
        """`destroy_process_group()` stays, behind `is_initialized()`: the framework makes the group only on several
        processes, and without the teardown gloo may abort the process at exit after all the work is done
        ("terminate called without an active exception"), which marks a torchrun job failed."""
        func = dotted(call.func) or "destroy_process_group"
        check = func.rsplit(".", 1)[0] + ".is_initialized()" if "." in func else "torch.distributed.is_initialized()"
        if m.matches(self.enclosing_if(), m.If(test=m.Call(func=m.Attribute(attr=m.Name("is_initialized"))))):
            return updated_node
        self.report(original_node, f"`{func}()` kept behind `{check}`: the framework makes the process group only "
                                   f"on several processes, and tearing it down lets the script exit cleanly", True)
        return guarded(updated_node, cst.parse_expression(check))

    def _spawn(self, original_node, updated_node, call: cst.Call):
        fn = call.args[0].value
        args = next((a.value for a in call.args[1:] if a.keyword and a.keyword.value == "args"), None)
        if args is None and len(call.args) > 1 and call.args[1].keyword is None:
            args = call.args[1].value
        if not isinstance(fn, cst.Name) or (args is not None and not isinstance(args, cst.Tuple)):
            self.todo(original_node, f"replace `mp.spawn` with a direct call: {self.fw} starts the processes")
            return updated_node
        passed = [cst.Arg(e.value) for e in (args.elements if args is not None else [])]
        for i in range(len(passed) - 1):
            passed[i] = passed[i].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        nprocs = next((a.value for a in call.args if a.keyword and a.keyword.value == "nprocs"), None)
        count = cst.Module([]).code_for_node(nprocs) if nprocs is not None else "N"
        self.report(original_node, f"`mp.spawn({fn.value}, ...)` -> `{fn.value}(...)`: the launcher now starts the "
                                   f"processes; spawn started {count}: give --devices or use torchrun", True)
        return updated_node.with_changes(body=[cst.Expr(cst.Call(func=fn, args=passed))])

    def leave_FunctionDef(self, original_node, updated_node):
        top = len(self._func) == 1 and not self._class_depth
        updated_node = super().leave_FunctionDef(original_node, updated_node)
        name = original_node.name.value
        if not top or name not in self.spawn_targets or not updated_node.params.params:
            return updated_node
        if name not in self.facts.fw_scopes():
            self.todo(original_node, f"`{name}` was an mp.spawn target: take the rank from `{self.fw}.global_rank`")
            return updated_node
        params = list(updated_node.params.params)
        rank = params[0].name.value
        body = list(updated_node.body.body)
        idx = insertion_index(body, module_level=False)
        body.insert(idx, cst.parse_statement(f"{rank} = {self._prop('RANK').value.value}.{self._prop('RANK').attr.value}"))
        self.report(original_node, f"`{name}` no longer takes the rank from mp.spawn: `{rank}` is the framework's global rank", True)
        return updated_node.with_changes(params=updated_node.params.with_changes(params=params[1:]),
                                         body=updated_node.body.with_changes(body=body))

    def leave_Comparison(self, original_node: cst.Comparison, updated_node: cst.Comparison):
        """`int(os.environ.get("RANK", -1)) != -1` and `"RANK" in os.environ` ask "launched as several
        processes?": they become `fabric.world_size > 1` (`== -1`, `not in`: `== 1`). Rewriting only the read would give `fabric.global_rank != -1`,
        which is always true."""
        if len(original_node.comparisons) != 1 or not self.in_fw_scope():
            return updated_node
        op = original_node.comparisons[0].operator
        size = f"{self.fw}.{PROPERTIES[self.ctx.target]['WORLD_SIZE']}"
        if isinstance(op, (cst.In, cst.NotIn)) and dotted(original_node.comparisons[0].comparator) == "os.environ" \
                and m.matches(original_node.left, m.SimpleString()) and \
                original_node.left.evaluated_value in ("RANK", "WORLD_SIZE"):
            # `"RANK" in os.environ`, the same question: Fabric's own launcher does not set RANK in its processes
            key = original_node.left.evaluated_value
            new = f"{size} > 1" if isinstance(op, cst.In) else f"{size} == 1"
            self.report(original_node, f"`{key}` looked up in the environment (launched distributed?) -> `{new}`",
                        True)
            return cst.parse_expression(new)
        read = original_node.left
        if m.matches(read, m.Call(func=m.Name("int"))) and read.args:
            read = read.args[0].value
        key = env_key(read)
        if key not in PROPERTIES[self.ctx.target] or not isinstance(read, cst.Call) or len(read.args) < 2:
            return updated_node
        code = cst.Module([]).code_for_node
        default = code(read.args[1].value).strip("\"'")
        other = code(original_node.comparisons[0].comparator).strip("\"'")
        if not isinstance(op, (cst.NotEqual, cst.Equal)):
            return updated_node
        if key != "WORLD_SIZE" and default.isdigit():
            # a default a rank really takes (0) is no sentinel: `int(os.environ.get("RANK", 0)) == 0` asks "the main
            # process?", and `== 1`-of-the-world-size made it false on every rank of 2 (nothing saved, nothing logged)
            if not other.isdigit():
                return updated_node
            new = f"{code(self._prop(key))} {'==' if isinstance(op, cst.Equal) else '!='} {int(other)}"
            self.report(original_node, f"`{key}` compared with {other} -> `{new}`", True)
            return cst.parse_expression(new)
        if default != other or (key == "WORLD_SIZE" and default != "1" and default.isdigit()):
            return updated_node
        new = f"{size} > 1" if isinstance(op, cst.NotEqual) else f"{size} == 1"
        self.report(original_node, f"`{key}` compared with its default (not launched distributed) -> `{new}`", True)
        return cst.parse_expression(new)

    def _drop_rank(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:
        """`worker(0, 1, cfg)` -> `worker(1, cfg)`: a direct call of a spawn target that no longer takes the rank."""
        name = original_node.func.value
        rank = self.rank_params[name]
        args = list(updated_node.args)
        if any(a.star for a in args):
            self.todo(original_node, f"`{name}` no longer takes `{rank}` (the framework's global rank): drop that "
                                     f"argument here")
            return updated_node
        keyed = [i for i, a in enumerate(args) if a.keyword is not None and a.keyword.value == rank]
        drop = keyed[0] if keyed else (0 if args and args[0].keyword is None else None)
        if drop is None:
            return updated_node
        del args[drop]
        if args and drop == len(args):
            args[-1] = args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        self.report(original_node, f"`{name}` no longer takes `{rank}`: dropped from this call", True)
        return updated_node.with_changes(args=args)

    def visit_Call(self, node: cst.Call):
        if dotted(node.func) in ("Fabric", "Accelerator"):  # the framework's own constructor reads the environment
            self._in_ctor = getattr(self, "_in_ctor", 0) + 1
        return True

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call):
        if isinstance(original_node.func, cst.Name) and original_node.func.value in getattr(self, "rank_params", {}):
            return self._drop_rank(original_node, updated_node)
        if dotted(original_node.func) in ("Fabric", "Accelerator"):
            self._in_ctor -= 1
            return updated_node
        if getattr(self, "_in_ctor", 0):
            return updated_node
        # int(os.environ["LOCAL_RANK"]) -> fabric.local_rank
        inner = original_node
        if m.matches(original_node, m.Call(func=m.Name("int"))) and original_node.args:
            inner = original_node.args[0].value
        key = env_key(inner)
        if key in PROPERTIES[self.ctx.target] and self.in_fw_scope():
            self.report(original_node, f"environment `{key}` -> `{self.fw}.{PROPERTIES[self.ctx.target][key]}`", True)
            return self._prop(key)
        return updated_node

    def leave_Subscript(self, original_node: cst.Subscript, updated_node):
        if getattr(self, "_in_ctor", 0):
            return updated_node
        key = env_key(original_node)
        if key in PROPERTIES[self.ctx.target] and self.in_fw_scope():
            return self._prop(key)
        return updated_node


class DdpEnvironment(Rule):
    code = "PTM130"
    name = "ddp-environment"
    triggers = ("init_process_group", "destroy_process_group", "set_device", "spawn", "master_addr", "master_port",
                "rank", "world_size")
    examples = [
        Example(
            before='import os\n\nimport torch\nimport torch.distributed as dist\n\n\ndef main():\n    dist.init_process_group("gloo")\n    local_rank = int(os.environ["LOCAL_RANK"])\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n    dist.destroy_process_group()\n',
            fabric='import os\n\nimport torch\nimport torch.distributed as dist\n\n\ndef main():\n    local_rank = fabric.local_rank\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n    if dist.is_initialized():\n        dist.destroy_process_group()\n',
            accelerate='import os\n\nimport torch\nimport torch.distributed as dist\n\n\ndef main():\n    local_rank = accelerator.local_process_index\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n    if dist.is_initialized():\n        dist.destroy_process_group()\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
