"""PTM109 seed: `torch.manual_seed(s)` in the setup scope becomes the framework's seeding.

What it does: `torch.manual_seed(s)` -> `fabric.seed_everything(s)` / `set_seed(s)` (from accelerate.utils).

Why: the framework seeds Python, NumPy and torch (all devices) in one call and records the seed so that
processes it starts are seeded alike.

Example: `torch.manual_seed(args.seed)` -> `fabric.seed_everything(args.seed)`.

Fabric form: `fabric.seed_everything(s)`. Accelerate form: `set_seed(s)`.

Fabric's `seed_everything` defaults to `workers=True` (lightning 2.6): `setup_dataloaders` then gives the
loader's worker processes Lightning's own seeding, and their random augmentations differ from the original's.
Where a DataLoader in the file starts workers (`num_workers` other than 0), the call says `workers=False`,
which keeps torch's own per-worker seeding, as the original had.

Fix safety: safe; only a bare statement call is rewritten (its return value unused).
"""
from __future__ import annotations

import libcst as cst
from migrator import matching as m
from libcst.metadata import QualifiedNameProvider

from migrator.analysis import MAIN_GUARD, MODULE
from migrator.names import qualified_names
from migrator.rules.base import Example, Context, Rule, RuleTransformer


def _starts_workers(module: cst.Module) -> bool:
    """Whether some call in the module passes `num_workers` other than a literal 0 (a DataLoader's)."""
    for arg in m.findall(module, m.Arg(keyword=m.Name("num_workers"))):
        if not (isinstance(arg.value, cst.Integer) and arg.value.value == "0"):
            return True
    return False


class _Transformer(RuleTransformer):
    METADATA_DEPENDENCIES = RuleTransformer.METADATA_DEPENDENCIES + (QualifiedNameProvider,)
    workers = False

    def visit_Module(self, node: cst.Module):
        self.workers = self.ctx.target == "fabric" and _starts_workers(node)
        return True

    def leave_Expr(self, original_node: cst.Expr, updated_node: cst.Expr):
        call = updated_node.value
        scope = self.scope
        in_setup = scope == self.facts.setup_scope or (self.facts.setup_scope == MAIN_GUARD and scope == MODULE)
        if not (in_setup and isinstance(call, cst.Call) and isinstance(original_node.value, cst.Call)):
            return updated_node
        if "torch.manual_seed" not in qualified_names(self, original_node.value.func):
            return updated_node
        if any(n.value == "initial_seed" for n in m.findall(original_node.value, m.Name())):
            return updated_node  # PTM145's per-rank offset of torch's own seed (a 64-bit seed: not seed_everything)
        if self.ctx.target == "fabric":
            func = cst.Attribute(value=self.fw_expr(), attr=cst.Name("seed_everything"))
            if self.workers and not any(a.keyword and a.keyword.value == "workers" for a in call.args):
                call = call.with_changes(args=[*call.args, cst.Arg(cst.Name("False"), keyword=cst.Name("workers"), equal=cst.AssignEqual(
                    whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")))])
        else:
            self.ctx.imports.add("accelerate.utils", "set_seed")
            func = cst.Name("set_seed")
        self.report(original_node, "seeding -> the framework's seeding", True)
        return updated_node.with_changes(value=call.with_changes(func=func))


class Seed(Rule):
    code = "PTM109"
    plain_scripts_only = True  # the core migration: a framework script has done it its own way
    name = "seed"
    triggers = ("manual_seed",)
    skips_other_statements = True
    fusable = True
    examples = [
        Example(
            before='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main(seed=0):\n    torch.manual_seed(seed)\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n',
            fabric='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main(seed=0):\n    fabric.seed_everything(seed)\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n',
            accelerate='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\nfrom accelerate.utils import set_seed\n\ndef main(seed=0):\n    set_seed(seed)\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n',
        ),
        Example(  # the loader starts worker processes: Fabric keeps torch's own per-worker seeding
            before='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main(seed=0):\n    torch.manual_seed(seed)\n    loader = DataLoader(TensorDataset(torch.randn(8, 4)), num_workers=2)\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    for (x,) in loader:\n        model(x).sum().backward()\n        optimizer.step()\n',
            fabric='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main(seed=0):\n    fabric.seed_everything(seed, workers=False)\n    loader = DataLoader(TensorDataset(torch.randn(8, 4)), num_workers=2)\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    for (x,) in loader:\n        model(x).sum().backward()\n        optimizer.step()\n',
            accelerate='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\nfrom accelerate.utils import set_seed\n\ndef main(seed=0):\n    set_seed(seed)\n    loader = DataLoader(TensorDataset(torch.randn(8, 4)), num_workers=2)\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    for (x,) in loader:\n        model(x).sum().backward()\n        optimizer.step()\n',
        ),
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
