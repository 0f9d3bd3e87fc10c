"""PTM140 semantic-reports: changes of meaning the tool cannot make for the user are reported.

What it does: reports, with a TODO at the line, (1) a DataLoader with a custom `sampler=` or `batch_sampler=`
(anything but the DistributedSampler that PTM132 removes) and (2) a dataset class that subclasses
`IterableDataset`.

Why: `setup_dataloaders` / `prepare` shard a loader by replacing its sampler. A custom sampler is wrapped or
replaced, which can change what each rank sees and in which order. An IterableDataset has no sampler: Fabric
does not shard it at all (every rank reads the same stream), and Accelerate shards it by dispatching or
skipping batches. The per-device batch size and the learning rate are reported by PTM106 where loaders are
set up.

Example: `DataLoader(ds, batch_sampler=BucketSampler(ds))` gets `# TODO(pt-migrate) PTM140: ...` above it.

Fabric form: shard inside the sampler or the IterableDataset by `fabric.global_rank` / `fabric.world_size`.
Accelerate form: check `accelerator.prepare`'s sharding (`DataLoaderConfiguration(dispatch_batches=...)`).

Fix safety: report-only.
"""
from __future__ import annotations

import libcst as cst
from libcst.metadata import QualifiedNameProvider

from migrator import matching as m
from migrator.names import assigned_names, is_dataloader_ctor, qualified_names
from migrator.rules.base import REPORT_ONLY, Context, Example, Rule, RuleTransformer

ITERABLE = {"torch.utils.data.IterableDataset", "torch.utils.data.dataset.IterableDataset"}


class _Transformer(RuleTransformer):
    METADATA_DEPENDENCIES = RuleTransformer.METADATA_DEPENDENCIES + (QualifiedNameProvider,)

    def leave_ClassDef(self, original_node: cst.ClassDef, updated_node: cst.ClassDef):
        updated_node = super().leave_ClassDef(original_node, updated_node)
        if any(qualified_names(self, b.value) & ITERABLE for b in original_node.bases):
            self.todo(original_node, f"`{original_node.name.value}` is an IterableDataset: Fabric does not shard it "
                                     f"and Accelerate shards it by batches; shard it yourself by rank if every "
                                     f"rank must read different data")
        return updated_node

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call):
        if not is_dataloader_ctor(qualified_names(self, original_node.func)):
            return updated_node
        stmt = self._stmts[-1] if self._stmts else None
        if self.facts.kept_loaders and stmt is not None and \
                {n for a in m.findall(stmt, m.AssignTarget()) for n in assigned_names(a.target)} & self.facts.kept_loaders:
            return updated_node  # not set up: it keeps its own sampler (PTM132 says so at the sampler)
        for a in original_node.args:
            if a.keyword is not None and a.keyword.value in ("sampler", "batch_sampler") and \
                    not (isinstance(a.value, cst.Name) and a.value.value == "None"):
                self.todo(original_node, f"custom `{a.keyword.value}=`: setup/prepare replace or wrap it to shard "
                                         f"the data; check what each rank sees")
        return updated_node


class SemanticReports(Rule):
    code = "PTM140"
    name = "semantic-reports"
    triggers = ("iterabledataset", "sampler")
    skips_other_statements = True
    fusable = True
    fix_safety = REPORT_ONLY
    examples = [
        Example(
            before='import torch\nfrom torch.utils.data import DataLoader, IterableDataset, TensorDataset\n\n\nclass Stream(IterableDataset):\n    def __iter__(self):\n        yield from torch.randn(8, 4)\n\n\ndef main(sampler):\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loader = DataLoader(TensorDataset(torch.randn(8, 4)), batch_sampler=sampler)\n    for (x,) in loader:\n        model(x).sum().backward()\n        optimizer.step()\n',
            fabric='import torch\nfrom torch.utils.data import DataLoader, IterableDataset, TensorDataset\n\n\n# TODO(pt-migrate) PTM140: `Stream` is an IterableDataset: Fabric does not shard it and Accelerate shards it by batches; shard it yourself by rank if every rank must read different data\nclass Stream(IterableDataset):\n    def __iter__(self):\n        yield from torch.randn(8, 4)\n\n\ndef main(sampler):\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    # TODO(pt-migrate) PTM140: custom `batch_sampler=`: setup/prepare replace or wrap it to shard the data; check what each rank sees\n    loader = DataLoader(TensorDataset(torch.randn(8, 4)), batch_sampler=sampler)\n    for (x,) in loader:\n        model(x).sum().backward()\n        optimizer.step()\n',
            accelerate='import torch\nfrom torch.utils.data import DataLoader, IterableDataset, TensorDataset\n\n\n# TODO(pt-migrate) PTM140: `Stream` is an IterableDataset: Fabric does not shard it and Accelerate shards it by batches; shard it yourself by rank if every rank must read different data\nclass Stream(IterableDataset):\n    def __iter__(self):\n        yield from torch.randn(8, 4)\n\n\ndef main(sampler):\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    # TODO(pt-migrate) PTM140: custom `batch_sampler=`: setup/prepare replace or wrap it to shard the data; check what each rank sees\n    loader = DataLoader(TensorDataset(torch.randn(8, 4)), batch_sampler=sampler)\n    for (x,) in loader:\n        model(x).sum().backward()\n        optimizer.step()\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
