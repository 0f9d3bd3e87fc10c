"""PTM101 device-selection: the script's own device choice becomes the framework's device.

What it does: in the setup scope and in functions given the framework object, an assignment of a device
(`torch.device("cuda" if use_cuda else "cpu")`, `"cuda"`, `args.device = ...`,
`torch.accelerator.current_accelerator()`, or an if/elif/else chain that only picks a device) is rebound
to `fabric.device` / `accelerator.device`. The cleanup rule PTM113 deletes it when nothing uses it any more.

Why: each process must use its own device; the framework knows which one. A hard-coded "cuda" puts
every rank on GPU 0.

Example: `device = torch.device("cuda" if torch.cuda.is_available() else "cpu")` -> `device = fabric.device`;
a device kept as a string (`device = "cuda" if ... else "cpu"`) stays one: `device = str(fabric.device)`; a string
the script uses as a device *type* (`f"{device}:{rank}"`, `device == "cuda"`, `device_type=device`) becomes
`device = fabric.device.type` ("cuda", never "cuda:0", which would give `cuda:0:0`).

A flag of the script's own that picked the device (`"cuda" if use_cuda else "cpu"`, `if args.cuda: device = ...`)
is recorded (`Facts.device_flags`): PTM115 creates the framework object to follow it, so `--no-cuda` still means CPU.

A script that pins the CPU (`device = torch.device("cpu")` or `"cpu"`, and no accelerator named anywhere in it)
made its other tensors on the CPU too (DETR-style `torch.zeros(())` accumulators, noise): on a GPU they would meet
the model's outputs and fail. Without `--accelerator`, that line stays and PTM100 creates the object for CPU
processes, where the original trained (`Fabric(accelerator="cpu", ...)` / `Accelerator(cpu=True)`), with a comment
that says so; `--accelerator cuda` rebinds it as above, with a TODO that names the risk.

Fabric form: `fabric.device`. Accelerate form: `accelerator.device`.

A device chosen at module level above `if __name__ == "__main__":`, where the training is set up, is picked at
import time, before the framework object exists: that line stays as written, and the main guard rebinds the
name right after the object is created (`device = fabric.device`), so functions that read the global `device`
later get the framework's device. PTM113 drops the rebinding when nothing reads `device` any more.

Fix safety: safe. A device picked outside the framework's reach gets a TODO.
"""
from __future__ import annotations

import libcst as cst
from libcst.metadata import QualifiedNameProvider

from migrator.analysis import MAIN_GUARD, MODULE, device_if_target, is_device_expr, is_main_guard
from migrator import matching as m
from migrator.names import dotted, qualified_names
from migrator.rules.base import Example, Context, Rule, RuleTransformer
import dataclasses

from migrator.rules.device_flag import says_index, switch_of, switch_of_if


def _code(node: cst.CSTNode) -> str:
    return cst.Module([]).code_for_node(node)


class _Transformer(RuleTransformer):
    METADATA_DEPENDENCIES = RuleTransformer.METADATA_DEPENDENCIES + (QualifiedNameProvider,)

    def qn(self, node):
        return qualified_names(self, node)

    def _fw_device(self) -> cst.BaseExpression:
        return cst.Attribute(value=self.fw_expr(), attr=cst.Name("device"))

    def _picks_device(self, target: str, value: cst.BaseExpression) -> bool:
        if dotted(value) in (f"{self.fw}.device", f"{self.fw}.device.type"):
            return False
        if isinstance(value, cst.Call) and dotted(value.func) == "str" and len(value.args) == 1 \
                and dotted(value.args[0].value) == f"{self.fw}.device":
            return False  # `str(fabric.device)`: this rule's own output for a string device (idempotence)
        last = target.rsplit(".", 1)[-1]
        says_device = last in ("device", "dev") or last.endswith("_device")
        if is_device_expr(value, self.qn):
            # "cuda" if c else "cpu" is also how people spell a device *type* (`device_type`): only names
            # that say device are devices
            return says_device or isinstance(value, cst.Call)
        # `device = get_device()` / `device = args.device` in the setup scope: a name that says device
        return self.scope == self.facts.setup_scope and says_device and (
            isinstance(value, (cst.Call, cst.Attribute, cst.Name)))

    def visit_Module(self, node: cst.Module):
        self._type_names = type_names(node)
        # names only ever bound to a string (`dev_type = "cuda"` under `if torch.cuda.is_available():`) hold a fixed
        # kind: they choose nothing (the repro trainer_class_ddp got a PTM115 TODO for them)
        kinds: dict = {}
        for a in m.findall(node, m.Assign()):
            for t in a.targets:
                name = dotted(t.target)
                if name is not None:
                    kinds[name] = kinds.get(name, True) and isinstance(a.value, cst.SimpleString)
        self._fixed_strings = {n for n, fixed in kinds.items() if fixed}
        # a script that pins the CPU (`device = torch.device("cpu")`, no accelerator named anywhere) made its other
        # tensors there too (`torch.zeros(())` accumulators): on a GPU they would meet the model's outputs
        text = self.ctx.text or node.code
        # a second run finds the object it created for CPU processes, and its own comment, which names GPUs
        pinned = ('accelerator="cpu"' in text or "cpu=True" in text) if self.facts.fw_exists else \
            self.facts.cpu_only_source
        self._pins_cpu = pinned and self.ctx.options.accelerator is None and not (
            self.ctx.target == "fabric" and self.ctx.options.launcher == "fabric-run")
        # --accelerator cuda on such a script: the user's choice, with a TODO at the line
        self._pin_overridden = pinned and not self.facts.fw_exists and self.ctx.options.accelerator not in (None, "cpu")
        return True

    def _keeps_cpu(self, node: cst.Assign, target: str) -> bool:
        """`device = torch.device("cpu")` in a script that pins the CPU: the line stays and PTM100 creates the
        object for CPU processes, where the original trained."""
        value = node.value
        if isinstance(value, cst.Call) and self.qn(value.func) & {"torch.device"} and len(value.args) == 1:
            value = value.args[0].value
        if not (isinstance(value, cst.SimpleString) and value.evaluated_value == "cpu"):
            return False
        if any(isinstance(s, cst.If) and not is_main_guard(s) for s in self._stmts[:-1]):
            return False  # one branch of a choice (`if use_accel: ... else: device = torch.device("cpu")`)
        if self._pin_overridden:
            self.todo(node, f"the script pinned the CPU here; with --accelerator {self.ctx.options.accelerator} "
                            f"`{target}` is `{self.fw}.device`: tensors the script makes without a device "
                            f"(`torch.zeros(...)` accumulators, noise) stay on the CPU and meet the model's outputs; "
                            f"make them on `{target}`")
            return False
        if not self._pins_cpu:
            return False
        if self.facts.fw_exists:
            return True
        cpu_arg = 'accelerator="cpu"' if self.ctx.target == "fabric" else "cpu=True"
        self.facts.device_choice = "cpu"
        self.facts.device_comment = (f"# {cpu_arg}: the script pins the CPU (`{target} = {_code(node.value)}`); "
                                     f"pass --accelerator to train on GPUs, after checking the tensors it makes")
        self.report(node, f"`{target} = {_code(node.value)}` stays: the script pins the CPU, so `{self.fw}` is "
                          f"created for CPU processes ({cpu_arg}); tensors it makes without a device (accumulators, "
                          f"noise) would not follow the model to a GPU", True)
        return True

    def _before_object(self) -> bool:
        """Module-level code above the main guard that sets up the training: it runs before the object exists."""
        return self.scope == MODULE and self.facts.setup_scope == MAIN_GUARD

    def _rebind_later(self, node: cst.CSTNode, target: str, as_string: bool) -> None:
        late = getattr(self, "_late", None)
        if late is None:
            late = self._late = {}
        if target not in late and "." not in target:
            late[target] = as_string
            self.report(node, f"`{target}` is chosen at import time, before `{self.fw}` exists: it stays, and the "
                              f"main guard rebinds it to `{self.fw}.device`", True)

    def leave_Assign(self, original_node: cst.Assign, updated_node: cst.Assign):
        if len(updated_node.targets) != 1:
            return updated_node
        target = dotted(updated_node.targets[0].target)
        if target is None or not self._picks_device(target, original_node.value):
            return updated_node
        if self._keeps_cpu(original_node, target):
            return updated_node
        if self._before_object():
            if "." not in target and not self._elif_depth():
                self._rebind_later(original_node, target, _is_string(original_node.value))
                self._record_flag(switch_of(original_node.value), target)
            return updated_node
        if not self.in_fw_scope():
            if is_device_expr(original_node.value, self.qn):
                self.todo(original_node, f"device chosen by hand, out of reach of `{self.fw}`: use `{self.fw}.device`")
            return updated_node
        new = self._fw_device()
        self._record_flag(switch_of(original_node.value), target)
        if _is_string(original_node.value) and target in getattr(self, "_type_names", ()):
            # a device *type* ("cuda"): f"{device}:{rank}", device == "cuda", device_type=device use it as one
            new = cst.Attribute(value=new, attr=cst.Name("type"))
            self.report(original_node, f"`{target}` holds a device type: it now names `{self.fw}.device.type`", True)
            return updated_node.with_changes(value=new)
        if _is_string(original_node.value):
            # the script held the device as a string ("cuda" in device, f"{device}:0"): keep it a string
            new = cst.Call(func=cst.Name("str"), args=[cst.Arg(new)])
        self.report(original_node, f"`{target}` now names `{self.fw}.device`", True)
        return updated_node.with_changes(value=new)

    def _record_flag(self, switch, target: str) -> None:
        """The script's own names that chose the device (`use_cuda`, `args.device`): PTM115 makes the object follow
        them, or marks the line where they no longer choose. A name this rule rebound to the framework's device
        (`device = args.device` after `args.device = ...`) chooses nothing any more."""
        replaced = self.__dict__.setdefault("_replaced", set())
        replaced.add(target)
        fixed = getattr(self, "_fixed_strings", set())
        left = [n for n in switch.names if n not in replaced and n not in fixed] if switch is not None else []
        if not left or all(says_index(n) for n in left):
            return  # `torch.device(f"{device}:{gpu}")` after `device = ...`: the rebound device and an index
        switch = dataclasses.replace(switch, target=target)
        if switch not in self.facts.device_flags:
            self.facts.device_flags.append(switch)

    def _with_rebinding(self, guard: cst.If) -> cst.If:
        body = list(guard.body.body)
        names = [n for n in self._late if not any(
            isinstance(st, cst.SimpleStatementLine) and any(
                isinstance(sm, cst.Assign) and dotted(sm.targets[0].target) == n and _is_fw_device(sm.value, self.fw)
                for sm in st.body) for st in body)]  # a second run finds its own rebinding
        if not names:
            return guard
        idx = _rebinding_index(body, self.fw, self.facts.fw_exists)
        new = [cst.parse_statement(f"{n} = str({self.fw}.device)" if self._late[n] else f"{n} = {self.fw}.device")
               for n in names]
        return guard.with_changes(body=guard.body.with_changes(body=body[:idx] + new + body[idx:]))

    def _elif_depth(self) -> int:
        return getattr(self, "_in_chain", 0)

    def visit_If(self, node: cst.If):
        if isinstance(node.orelse, cst.If):
            self._elifs = getattr(self, "_elifs", set()) | {id(node.orelse)}
        if self._before_object() and device_if_target(node, self.qn) is not None:
            self._in_chain = self._elif_depth() + 1
        return super().visit_If(node)

    def leave_If(self, original_node: cst.If, updated_node: cst.If):
        updated_node = super().leave_If(original_node, updated_node)
        if not self._func and not self._class_depth and is_main_guard(original_node) and getattr(self, "_late", None):
            return self._with_rebinding(updated_node)
        if id(original_node) in getattr(self, "_elifs", set()):
            return updated_node
        target = device_if_target(original_node, self.qn)
        if target is not None and self._before_object():
            self._in_chain -= 1
            self._rebind_later(original_node, target, False)
            self._record_flag(switch_of_if(original_node), target)
            return updated_node
        if target is None or not self.in_fw_scope():
            return updated_node
        self._record_flag(switch_of_if(original_node), target)
        self.report(original_node, f"device selection -> `{target} = {self.fw}.device`", True)
        # a chain that picks strings ("cuda", "mps") keeps a string, as the straight assignment does above
        from migrator import matching as m
        strings = [a for a in m.findall(original_node, m.Assign())
                   if dotted(a.targets[0].target) == target and _is_string(a.value)]
        value = f"str({self.fw}.device)" if strings else f"{self.fw}.device"
        stmt = cst.parse_statement(f"{target} = {value}")
        return stmt.with_changes(leading_lines=original_node.leading_lines)


def type_names(module: cst.Module) -> set:
    """Names the script uses as a device *type*: `f"{device}:{rank}"`, `device == "cuda"`, `device_type=device`,
    `torch.device(device, index)`."""
    from migrator import matching as m
    found = set()
    for fs in m.findall(module, m.FormattedString()):
        parts = list(fs.parts)
        for a, b in zip(parts, parts[1:]):
            if isinstance(a, cst.FormattedStringExpression) and isinstance(a.expression, cst.Name) \
                    and isinstance(b, cst.FormattedStringText) and b.value.startswith(":"):
                found.add(a.expression.value)
    for cmp in m.findall(module, m.Comparison()):
        if isinstance(cmp.left, cst.Name) and any(
                isinstance(t.operator, (cst.Equal, cst.NotEqual)) and isinstance(t.comparator, cst.SimpleString)
                and t.comparator.evaluated_value in ("cuda", "cpu", "mps", "xpu") for t in cmp.comparisons):
            found.add(cmp.left.value)
    for arg in m.findall(module, m.Arg()):
        if arg.keyword is not None and arg.keyword.value == "device_type" and isinstance(arg.value, cst.Name):
            found.add(arg.value.value)
    for call in m.findall(module, m.Call()):
        if dotted(call.func) in ("torch.device", "device") and len(call.args) == 2 and isinstance(call.args[0].value, cst.Name):
            found.add(call.args[0].value.value)
    return found


def _is_fw_device(value: cst.BaseExpression, fw: str) -> bool:
    if dotted(value) == f"{fw}.device":
        return True
    return isinstance(value, cst.Call) and dotted(value.func) == "str" and len(value.args) == 1 \
        and dotted(value.args[0].value) == f"{fw}.device"


def _rebinding_index(body, fw: str, exists: bool) -> int:
    """Where the main guard rebinds a module-level device: after the statement that creates the object (and its
    `launch()`) when the script makes it; else at the top, which PTM100 then puts the object above."""
    if not exists:
        return 1 if body and _is_docstring(body[0]) else 0
    for i, stmt in enumerate(body):
        if isinstance(stmt, cst.SimpleStatementLine) and any(
                isinstance(s, cst.Assign) and any(dotted(t.target) == fw for t in s.targets) for s in stmt.body):
            nxt = body[i + 1] if i + 1 < len(body) else None
            if isinstance(nxt, cst.SimpleStatementLine) and len(nxt.body) == 1 and isinstance(nxt.body[0], cst.Expr) \
                    and isinstance(nxt.body[0].value, cst.Call) and dotted(nxt.body[0].value.func) == f"{fw}.launch":
                return i + 2
            return i + 1
    return 0


def _is_docstring(stmt) -> bool:
    return (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 and isinstance(stmt.body[0], cst.Expr)
            and isinstance(stmt.body[0].value, (cst.SimpleString, cst.ConcatenatedString)))


def _is_string(node: cst.BaseExpression) -> bool:
    if isinstance(node, cst.IfExp):
        return _is_string(node.body) and _is_string(node.orelse)
    return isinstance(node, (cst.SimpleString, cst.FormattedString, cst.ConcatenatedString))


class DeviceSelection(Rule):
    code = "PTM101"
    plain_scripts_only = True  # the core migration: a framework script has done it its own way
    name = "device-selection"
    examples = [
        Example(
            before='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main():\n    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")\n    model = torch.nn.Linear(4, 1).to(device)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    x = torch.randn(8, 4).to(device)\n    model(x).sum().backward()\n    optimizer.step()\n',
            fabric='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main():\n    device = fabric.device\n    model = torch.nn.Linear(4, 1).to(device)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    x = torch.randn(8, 4).to(device)\n    model(x).sum().backward()\n    optimizer.step()\n',
            accelerate='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main():\n    device = accelerator.device\n    model = torch.nn.Linear(4, 1).to(device)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    x = torch.randn(8, 4).to(device)\n    model(x).sum().backward()\n    optimizer.step()\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
