"""Which of a script's DistributedSamplers the migration may take over (PTM132) and which stay.

PTM132 deletes `sampler = DistributedSampler(ds)` and lets setup / prepare shard the loader. That is sound only
when the sampler is used for nothing else than feeding its loader: `sampler=sampler` in the DataLoader (with
`shuffle=(sampler is None)` in the same call), `sampler.set_epoch(epoch)` (alone, or under an `if` that holds
only such calls), or `return loader, sampler` from a loader factory. A sampler read anywhere else
(`print(sampler)`, `BatchSampler(sampler, ...)`, `len(sampler)`) would be undefined once its assignment went
(or, bound in another branch, a RandomSampler in its place, which shards nothing).

Such a sampler stays, with its `set_epoch` calls, and so does every loader built on it (directly or through a
name made from it, such as a BatchSampler): those loaders are not set up, since Accelerate would shard them a
second time and Fabric would replace the sampler the script still advances. They keep sharding by the script's
own sampler, on the process group the framework starts.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Set

import libcst as cst

from migrator.names import dotted

_ALLOWED_IF_BODY = "set_epoch"


def other_reads(module: cst.Module, samplers: Set[str]) -> Dict[str, cst.CSTNode]:
    """Sampler name -> the first node that reads it other than to feed its loader (see the module docstring).
    Only names in `samplers` are looked at; bindings (assignment and loop targets) are not reads."""
    found: Dict[str, cst.CSTNode] = {}
    if not samplers:
        return found

    def visit(node: cst.CSTNode, parents: List[cst.CSTNode]) -> None:
        if isinstance(node, cst.Name) and node.value in samplers and node.value not in found:
            if not _allowed(node, parents):  # named by the statement that reads it
                found[node.value] = next((p for p in reversed(parents) if isinstance(p, cst.BaseSmallStatement)),
                                         parents[-1] if parents else node)
            return
        if isinstance(node, cst.AssignTarget) and isinstance(node.target, cst.Name):
            return  # `sampler = ...`: a binding
        if isinstance(node, (cst.Attribute, cst.Arg)):  # `loader.sampler`, `f(sampler=x)`: the value only
            visit(node.value, parents + [node])
            return
        if isinstance(node, (cst.Param, cst.Import, cst.ImportFrom)):
            return
        if isinstance(node, cst.If) and _only_set_epoch(node.body):
            visit(node.body, parents + [node])  # the test (`if sampler is not None:`) guards only set_epoch
            if node.orelse is not None:
                visit(node.orelse, parents + [node])
            return
        for child in node.children:
            visit(child, parents + [node])

    visit(module, [])
    return found


def _allowed(name: cst.Name, parents: List[cst.CSTNode]) -> bool:
    parent = parents[-1] if parents else None
    if isinstance(parent, cst.Arg) and parent.keyword is not None and parent.keyword.value == "sampler":
        return True
    if isinstance(parent, cst.Attribute) and parent.value is name and parent.attr.value == "set_epoch":
        return True
    for p in reversed(parents):
        if isinstance(p, cst.Return):
            return True
        if isinstance(p, cst.Call) and any(a.keyword is not None and a.keyword.value == "sampler"
                                           and dotted(a.value) == name.value for a in p.args):
            return True  # `DataLoader(ds, shuffle=(sampler is None), sampler=sampler)`
        if isinstance(p, cst.BaseStatement):
            return False
    return False


def _only_set_epoch(block: cst.BaseSuite) -> bool:
    body = getattr(block, "body", ())
    if not isinstance(body, (list, tuple)) or not body:
        return False
    for stmt in body:
        if not (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1
                and isinstance(stmt.body[0], cst.Expr) and isinstance(stmt.body[0].value, cst.Call)
                and isinstance(stmt.body[0].value.func, cst.Attribute)
                and stmt.body[0].value.func.attr.value == _ALLOWED_IF_BODY):
            return False
    return True


def made_from(module: cst.Module, names: Iterable[str]) -> Set[str]:
    """`names` and every name assigned from an expression that reads one of them, transitively
    (`batch_sampler = BatchSampler(sampler, 8, drop_last=True)`)."""
    out = set(names)
    assigns = [(t, {n.value for n in _names_in(a.value)}) for a in _assigns(module)
               for t in (dotted(x.target) for x in a.targets) if t]
    changed = True
    while changed:
        changed = False
        for target, reads in assigns:
            if target not in out and reads & out:
                out.add(target)
                changed = True
    return out


def _assigns(node: cst.CSTNode) -> List[cst.Assign]:
    found: List[cst.Assign] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, cst.Assign):
            found.append(n)
        stack.extend(n.children)
    return found


def _names_in(node: cst.CSTNode) -> List[cst.Name]:
    found: List[cst.Name] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, cst.Name):
            found.append(n)
        elif isinstance(n, cst.Attribute):
            stack.append(n.value)  # `x.sampler`: only the root is a name read
            continue
        stack.extend(n.children)
    return found


def reads_any(node: cst.CSTNode, names: Set[str]) -> bool:
    return any(n.value in names for n in _names_in(node))
