"""PTM106 setup-dataloaders: pass every DataLoader of the setup scope through the framework.

What it does: after the statement that creates a DataLoader (directly, or through a local function that
returns loaders), inserts `loader = fabric.setup_dataloaders(loader)` / `loader = accelerator.prepare(loader)`.

Why: set-up loaders shard the data across processes (a DistributedSampler is added) and move batches to the
device. A loader that is not set up feeds every rank the same samples.

Example: `train_loader = DataLoader(ds, batch_size=32, shuffle=True)` gains
`train_loader = fabric.setup_dataloaders(train_loader)` on the next line.

Fabric form: `a, b = fabric.setup_dataloaders(a, b)` for loaders made by one statement; a loader that is only
evaluated (PTM112 finds which) is set up on its own with `use_distributed_sampler=False`.
Accelerate form: `a, b = accelerator.prepare(a, b)`.

The batch size stays per device: the global batch becomes batch_size x world size, and the learning rate
is not rescaled. The rule says so where it inserts the call.

Fix safety: safe.
"""
from __future__ import annotations

from typing import List

import libcst as cst

from migrator.names import assigned_names
from migrator.rules.base import Example, Context, Rule, RuleTransformer
from migrator.rules.setup_model_optimizer import already_set_up
from migrator.rules.framework_object import _Transformer as _FrameworkPlacement
from migrator import matching as m


def loaders_assigned(stmt: cst.CSTNode, loaders) -> List[str]:
    out: List[str] = []
    for a in m.findall(stmt, m.Assign()):
        for t in a.targets:
            for n in assigned_names(t.target):
                if n in loaders and n not in out:
                    out.append(n)
    return out


class _Transformer(_FrameworkPlacement):
    def _insert(self, body, module_level):
        loaders = set(self.facts.loaders)
        if not loaders:
            return list(body)
        out = []
        for i, stmt in enumerate(body):
            out.append(stmt)
            names = [n for n in loaders_assigned(stmt, loaders)]
            if not names or already_set_up(body, self.fw, names):
                continue
            call = "setup_dataloaders" if self.ctx.target == "fabric" else "prepare"
            # Fabric: a loader that is only evaluated keeps its own sampler on every rank (PTM112 decides which)
            whole = [n for n in names if self.ctx.target == "fabric" and n in self.facts.unsharded_loaders]
            names = [n for n in names if n not in whole]
            if names:
                joined = ", ".join(names)
                out.append(cst.parse_statement(f"{joined} = {self.fw}.{call}({joined})"))
                self.report(self.where(i, body), f"set up {joined} with {self.fw}.{call}: batch_size is now per device, so "
                                  f"the global batch grows with the number of processes; the learning rate is not rescaled",
                            True)
            for n in whole:
                out.append(cst.parse_statement(f"{n} = {self.fw}.{call}({n}, use_distributed_sampler=False)"))
                self.report(self.where(i, body), f"set up {n} with {self.fw}.{call}, not sharded: it is only evaluated, "
                                                 f"so every rank evaluates the whole set", True)
        return out


class SetupDataloaders(Rule):
    code = "PTM106"
    plain_scripts_only = True  # the core migration: a framework script has done it its own way
    name = "setup-dataloaders"
    examples = [
        Example(
            before='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    train_loader = DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4, shuffle=True)\n    for (x,) in train_loader:\n        model(x).sum().backward()\n        optimizer.step()\n',
            fabric='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    train_loader = DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4, shuffle=True)\n    train_loader = fabric.setup_dataloaders(train_loader)\n    for (x,) in train_loader:\n        model(x).sum().backward()\n        optimizer.step()\n',
            accelerate='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    train_loader = DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4, shuffle=True)\n    train_loader = accelerator.prepare(train_loader)\n    for (x,) in train_loader:\n        model(x).sum().backward()\n        optimizer.step()\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
