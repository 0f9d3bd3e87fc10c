"""Shared helpers: recognising device moves (`.to(device)`, `.cuda()`) and device arguments."""
from __future__ import annotations

from typing import Optional, Set

import libcst as cst

from migrator.analysis import DEVICE_STRING, Facts
from migrator.names import dotted

# Names that hold a device (or a GPU index) in the scripts people write.
DEVICEISH = {"device", "dev", "local_rank", "rank", "gpu", "gpu_id", "device_id"}


def is_device_arg(node: cst.BaseExpression, facts: Facts) -> bool:
    name = dotted(node)
    if name is not None:
        last = name.rsplit(".", 1)[-1]
        return (name in facts.device_names or last in DEVICEISH or last.endswith("_device")
                or name == f"{facts.fw}.device")
    if isinstance(node, cst.SimpleString):
        v = node.evaluated_value
        return isinstance(v, str) and bool(DEVICE_STRING.match(v))
    if isinstance(node, cst.Call):
        return dotted(node.func) in ("torch.device", "th.device", "device")
    if isinstance(node, cst.FormattedString):
        first = node.parts[0] if node.parts else None
        return isinstance(first, cst.FormattedStringText) and first.value.startswith("cuda")
    return False


def is_move(call: cst.Call, facts: Facts) -> bool:
    """`x.to(device[, ...])`, `x.to(device=...)` or `x.cuda(...)`."""
    if not isinstance(call.func, cst.Attribute):
        return False
    attr = call.func.attr.value
    if attr == "cuda":
        return True
    if attr != "to" or not call.args:
        return False
    first = call.args[0]
    if first.keyword is None and first.star == "":
        return is_device_arg(first.value, facts)
    return any(a.keyword is not None and a.keyword.value == "device" and is_device_arg(a.value, facts)
               for a in call.args)


def strip_move(call: cst.Call, facts: Facts) -> Optional[cst.BaseExpression]:
    """What is left of a move without its device: the receiver, or `x.to(dtype)` when a dtype stays."""
    if not is_move(call, facts):
        return None
    receiver = call.func.value
    if call.func.attr.value == "cuda":
        return receiver
    rest = []
    for i, a in enumerate(call.args):
        if i == 0 and a.keyword is None:
            continue  # the device
        if a.keyword is not None and a.keyword.value in ("device", "non_blocking"):
            continue
        rest.append(a)
    if not rest:
        return receiver
    rest[-1] = rest[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
    return call.with_changes(args=rest)


def retarget_move(call: cst.Call, facts: Facts) -> Optional[cst.Call]:
    """`x.cuda()` / `x.to("cuda")` / `x.to(rank)` -> `x.to(fw.device)`; None when it already is right."""
    if not is_move(call, facts):
        return None
    fw_device = cst.parse_expression(f"{facts.fw}.device")
    if call.func.attr.value == "cuda":
        kws = [a for a in call.args if a.keyword is not None and a.keyword.value == "non_blocking"]
        args = [cst.Arg(fw_device)] + [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in kws]
        if len(args) > 1:
            args[0] = args[0].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        return call.with_changes(func=call.func.with_changes(attr=cst.Name("to")), args=args)
    first = call.args[0]
    name = dotted(first.value)
    keep_names = facts.device_names | {"device"}
    if name is not None and (name in keep_names or name == f"{facts.fw}.device" or name.endswith(".device")):
        return None  # a device variable: it is rebound to the framework's device
    if first.keyword is None:
        return call.with_changes(args=[first.with_changes(value=fw_device)] + list(call.args[1:]))
    return None


def rooted_in(node: cst.BaseExpression, names: Set[str]) -> bool:
    """`batch["x"][0]`, `batch.x`, `batch.items()` hang off a name in `names`."""
    while True:
        if isinstance(node, cst.Name):
            return node.value in names
        if isinstance(node, (cst.Attribute, cst.Subscript)):
            node = node.value
        elif isinstance(node, cst.Call):
            node = node.func
        else:
            return False
