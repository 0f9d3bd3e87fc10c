"""Small helpers to read names off libcst nodes."""
from __future__ import annotations

from typing import Iterable, Optional, Set

import libcst as cst
from libcst.metadata import QualifiedNameProvider

OPTIMIZER_PREFIX = "torch.optim."
NOT_OPTIMIZERS = ("torch.optim.lr_scheduler.", "torch.optim.swa_utils.")
DATALOADERS = {"torch.utils.data.DataLoader", "torch.utils.data.dataloader.DataLoader"}
DISTRIBUTED_SAMPLERS = {"torch.utils.data.DistributedSampler", "torch.utils.data.distributed.DistributedSampler"}
DDP_WRAPPERS = {"torch.nn.parallel.DistributedDataParallel", "torch.nn.parallel.distributed.DistributedDataParallel",
                "torch.nn.DataParallel", "torch.nn.parallel.DataParallel", "torch.nn.parallel.data_parallel.DataParallel"}


def dotted(node: cst.BaseExpression) -> Optional[str]:
    """`a.b.c` -> "a.b.c"; anything that is not a plain name chain -> None."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr.value}" if base else None
    return None


def env_key(node: cst.BaseExpression) -> Optional[str]:
    """`os.environ["X"]`, `os.environ.get("X", d)`, `os.getenv("X")` -> "X"."""
    if isinstance(node, cst.Subscript) and dotted(node.value) == "os.environ" and len(node.slice) == 1:
        el = node.slice[0].slice
        if isinstance(el, cst.Index) and isinstance(el.value, cst.SimpleString):
            return el.value.evaluated_value
    if isinstance(node, cst.Call) and dotted(node.func) in ("os.environ.get", "os.getenv"):
        if node.args and isinstance(node.args[0].value, cst.SimpleString):
            return node.args[0].value.evaluated_value
    return None


def root_name(node: cst.BaseExpression) -> Optional[str]:
    """The name an expression hangs off: `batch["x"][0].y` -> "batch"."""
    while True:
        if isinstance(node, cst.Name):
            return node.value
        if isinstance(node, (cst.Attribute, cst.Subscript)):
            node = node.value
        else:
            return None


def qualified_names(wrapper_or_resolver, node: cst.CSTNode) -> Set[str]:
    try:
        return {q.name for q in wrapper_or_resolver.get_metadata(QualifiedNameProvider, node, set())}
    except KeyError:
        return set()


def is_optimizer_ctor(qnames: Iterable[str]) -> bool:
    for q in qnames:
        if q.startswith(OPTIMIZER_PREFIX) and not q.startswith(NOT_OPTIMIZERS):
            last = q.rsplit(".", 1)[-1]
            if last[:1].isupper() and last != "Optimizer":
                return True
    return False


def is_dataloader_ctor(qnames: Iterable[str]) -> bool:
    return any(q in DATALOADERS for q in qnames)


def assigned_names(target: cst.BaseExpression) -> list:
    """Dotted names bound by an assignment target (tuples unpacked)."""
    if isinstance(target, (cst.Tuple, cst.List)):
        out = []
        for el in target.elements:
            out.extend(assigned_names(el.value))
        return out
    if isinstance(target, cst.StarredElement):
        return assigned_names(target.value)
    name = dotted(target)
    return [name] if name else []


def call_name(call: cst.Call) -> Optional[str]:
    return dotted(call.func)
