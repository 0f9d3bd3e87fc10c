"""PTM113 unused-device: a device variable that nothing uses any more is deleted.

What it does: after the other rules (and, in the engine, after every rule: see `schedule_unused_imports`),
imports that only removed constructs used (torch.distributed, DistributedDataParallel, DistributedSampler,
GradScaler, ...) are dropped when nothing uses them any more; `device = fabric.device` in a function that no longer reads `device`
is removed, and so is an `if torch.cuda.is_available(): pass` left empty by removed moves. PTM101's rebinding of a
module-level device in the main guard goes when nothing reads that device any more.

Why: keeps the migrated script as short as a hand-written one.

Example: `device = fabric.device` with no other use of `device` is deleted.

Fabric form and Accelerate form: the same.

Fix safety: safe; only names bound to the framework's device are touched.
"""
from __future__ import annotations

import libcst as cst
from migrator import matching as m

from migrator.analysis import MAIN_GUARD, MODULE, is_main_guard
from migrator.names import dotted
from migrator.rules.base import Example, Context, Rule, RuleTransformer


def _empty_if(stmt) -> bool:
    """`if cond: pass` (no else) left by removed statements, with a condition that calls nothing but
    `*.is_available()`: dropping it changes nothing."""
    if not m.matches(stmt, m.If(body=m.IndentedBlock(body=[m.SimpleStatementLine(body=[m.Pass()])]) | m.IndentedBlock(body=[]),
                                orelse=None)):
        return False
    return all(dotted(c.func) is not None and dotted(c.func).endswith("is_available")
               for c in m.findall(stmt.test, m.Call()))


def _uses(body: cst.CSTNode, name: str) -> int:
    return len(m.findall(body, m.Name(name)))


def _reads(tree: cst.CSTNode, name: str) -> int:
    """Occurrences of `name` other than as the target of a plain assignment."""
    targets = {id(t.target) for a in m.findall(tree, m.Assign()) for t in a.targets if isinstance(t.target, cst.Name)}
    targets |= {id(a.attr) for a in m.findall(tree, m.Attribute())}  # `fabric.device` is no read of `device`
    targets |= {id(a.keyword) for a in m.findall(tree, m.Arg()) if a.keyword is not None}
    return sum(1 for n in m.findall(tree, m.Name(name)) if id(n) not in targets)


class _Transformer(RuleTransformer):
    def _prune(self, stmts, originals=()):
        """`originals`: the statements of the tree the pass read, in the same order as `stmts` where they match, so
        that a report has the line it had in that tree (an updated statement has no position)."""
        where = {id(u): o for u, o in zip(stmts, originals)} if len(originals) == len(stmts) else {}
        out = []
        for stmt in stmts:
            fw_device = m.Attribute(m.Name(self.fw), m.Name("device"))
            if m.matches(stmt, m.SimpleStatementLine(body=[m.Assign(
                    targets=[m.AssignTarget(m.Name())],
                    value=fw_device | m.Call(func=m.Name("str"), args=[m.Arg(fw_device)]))])):  # str(): PTM101
                name = stmt.body[0].targets[0].target.value
                others = sum(_uses(s, name) for s in stmts if s is not stmt)
                if others == 0:
                    self.report(where.get(id(stmt), stmt), f"removed `{name}`: nothing uses it after the migration",
                                True)
                    continue
            out.append(stmt)
        return out

    def _prune_rebinding(self, module: cst.Module, body: list) -> list:
        """PTM101's `device = fabric.device` in the main guard, for a module-level device chosen before the object
        exists: dropped when no code reads `device` any more (the module-level line is the user's and stays)."""
        fw_device = m.Attribute(m.Name(self.fw), m.Name("device"))
        pattern = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())],
                                                       value=fw_device | m.Call(func=m.Name("str"), args=[m.Arg(fw_device)]))])
        out = []
        for i, stmt in enumerate(body):
            if isinstance(stmt, cst.If) and is_main_guard(stmt):
                kept = []
                for inner in stmt.body.body:
                    if m.matches(inner, pattern) and _reads(module, inner.body[0].targets[0].target.value) == 0:
                        self.report(inner, f"removed `{inner.body[0].targets[0].target.value}`: nothing uses it after "
                                           f"the migration", True)
                        continue
                    kept.append(inner)
                if len(kept) != len(stmt.body.body):
                    stmt = stmt.with_changes(body=stmt.body.with_changes(body=kept or [cst.SimpleStatementLine([cst.Pass()])]))
            out.append(stmt)
        return out

    def leave_Module(self, original_node, updated_node):
        pairs = [(s, o) for s, o in zip(updated_node.body, original_node.body) if not _empty_if(s)]
        body = [s for s in updated_node.body if not _empty_if(s)]
        if self.facts.setup_scope == MODULE:  # a flat script: its module-level `device` is a local like any other
            body = self._prune(body, [o for _, o in pairs] if len(pairs) == len(body) else ())
        if self.facts.setup_scope == MAIN_GUARD:
            pruned = self._prune_rebinding(updated_node, body)
            if any(a is not b for a, b in zip(pruned, body)):
                return updated_node.with_changes(body=pruned)
        return updated_node.with_changes(body=body) if len(body) != len(updated_node.body) else updated_node

    def leave_IndentedBlock(self, original_node, updated_node):
        body = [s for s in updated_node.body if not _empty_if(s)]
        if len(body) != len(updated_node.body):
            return updated_node.with_changes(body=body or [cst.SimpleStatementLine([cst.Pass()])])
        return updated_node

    def leave_FunctionDef(self, original_node, updated_node):
        updated_node = super().leave_FunctionDef(original_node, updated_node)
        body = self._prune(list(updated_node.body.body), list(original_node.body.body))
        if not body:
            return updated_node
        return updated_node.with_changes(body=updated_node.body.with_changes(body=body))


# Imports that only the constructs the rules remove used; libcst removes each only if nothing uses it any more.
REMOVABLE_MODULES = ("torch.distributed", "torch.nn.parallel", "torch.utils.data.distributed", "torch.multiprocessing",
                     "torch.cuda.amp", "torch.amp")
REMOVABLE_NAMES = {("torch.utils.data", "DistributedSampler"), ("torch", "GradScaler"), ("torch", "autocast"),
                   ("torch.nn", "DataParallel")}


def unused_import_candidates(module: cst.Module) -> list:
    """(module, object or None, alias or None) of each top-level import that only removed constructs may use."""
    found = []
    for stmt in module.body:
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        for small in stmt.body:
            if isinstance(small, cst.Import):
                for alias in small.names:
                    name = dotted(alias.name)
                    if name and name.startswith(REMOVABLE_MODULES):
                        found.append((name, None, alias.asname.name.value if alias.asname else None))
            elif isinstance(small, cst.ImportFrom) and small.module is not None and not isinstance(small.names, cst.ImportStar):
                mod = dotted(small.module)
                for alias in small.names:
                    obj = dotted(alias.name)
                    if mod and (mod.startswith(REMOVABLE_MODULES) or (mod, obj) in REMOVABLE_NAMES):
                        found.append((mod, obj, alias.asname.name.value if alias.asname else None))
    return found


class UnusedDevice(Rule):
    code = "PTM113"
    name = "unused-device"
    examples = [
        Example(
            before='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\nfrom lightning.fabric import Fabric\n\n\ndef main():\n    fabric = Fabric()\n    device = fabric.device\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model, optimizer = fabric.setup(model, optimizer)\n    fabric.backward(model(torch.randn(8, 4)).sum())\n    optimizer.step()\n',
            fabric='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\nfrom lightning.fabric import Fabric\n\n\ndef main():\n    fabric = Fabric()\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model, optimizer = fabric.setup(model, optimizer)\n    fabric.backward(model(torch.randn(8, 4)).sum())\n    optimizer.step()\n',
            accelerate=None,
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
