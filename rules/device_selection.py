"""PTM101 device-selection: the script's own device choice becomes the framework's device.

What it does: in the setup scope and in functions given the framework object, an assignment of a device
(`torch.device("cuda" if use_cuda else "cpu")`, `"cuda"`, `args.device = ...`,
`torch.accelerator.current_accelerator()`, or an if/elif/else chain that only picks a device) is rebound
to `fabric.device` / `accelerator.device`. The cleanup rule PTM113 deletes it when nothing uses it any more.

Why: each process must use its own device; the framework knows which one. A hard-coded "cuda" puts
every rank on GPU 0.

Example: `device = torch.device("cuda" if torch.cuda.is_available() else "cpu")` -> `device = fabric.device`;
a device kept as a string (`device = "cuda" if ... else "cpu"`) stays one: `device = str(fabric.device)`.

Fabric form: `fabric.device`. Accelerate form: `accelerator.device`.

Fix safety: safe. A device picked outside the framework's reach gets a TODO.
"""
from __future__ import annotations

import libcst as cst
from libcst.metadata import QualifiedNameProvider

from migrator.analysis import device_if_target, is_device_expr
from migrator.names import dotted, qualified_names
from migrator.rules.base import Example, Context, Rule, RuleTransformer


class _Transformer(RuleTransformer):
    METADATA_DEPENDENCIES = RuleTransformer.METADATA_DEPENDENCIES + (QualifiedNameProvider,)

    def qn(self, node):
        return qualified_names(self, node)

    def _fw_device(self) -> cst.BaseExpression:
        return cst.Attribute(value=self.fw_expr(), attr=cst.Name("device"))

    def _picks_device(self, target: str, value: cst.BaseExpression) -> bool:
        if dotted(value) == f"{self.fw}.device":
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

    def leave_Assign(self, original_node: cst.Assign, updated_node: cst.Assign):
        if len(updated_node.targets) != 1:
            return updated_node
        target = dotted(updated_node.targets[0].target)
        if target is None or not self._picks_device(target, original_node.value):
            return updated_node
        if not self.in_fw_scope():
            if is_device_expr(original_node.value, self.qn):
                self.todo(original_node, f"device chosen by hand, out of reach of `{self.fw}`: use `{self.fw}.device`")
            return updated_node
        new = self._fw_device()
        if _is_string(original_node.value):
            # the script held the device as a string ("cuda" in device, f"{device}:0"): keep it a string
            new = cst.Call(func=cst.Name("str"), args=[cst.Arg(new)])
        self.report(original_node, f"`{target}` now names `{self.fw}.device`", True)
        return updated_node.with_changes(value=new)

    def visit_If(self, node: cst.If):
        if isinstance(node.orelse, cst.If):
            self._elifs = getattr(self, "_elifs", set()) | {id(node.orelse)}
        return super().visit_If(node)

    def leave_If(self, original_node: cst.If, updated_node: cst.If):
        updated_node = super().leave_If(original_node, updated_node)
        if id(original_node) in getattr(self, "_elifs", set()):
            return updated_node
        target = device_if_target(original_node, self.qn)
        if target is None or not self.in_fw_scope():
            return updated_node
        self.report(original_node, f"device selection -> `{target} = {self.fw}.device`", True)
        stmt = cst.parse_statement(f"{target} = {self.fw}.device")
        return stmt.with_changes(leading_lines=original_node.leading_lines)


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
