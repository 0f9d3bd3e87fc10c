"""PTM112 sharded-metric: `len(loader.dataset)` as a metric's denominator is reported.

What it does: reports (does not rewrite) `len(loader.dataset)` where `loader` is a set-up loader, with a
TODO at the line.

Why: after `setup_dataloaders` / `prepare` each process sees only its shard, but `len(loader.dataset)` still
counts every sample: an accuracy or mean loss computed this way comes out about world-size times too small.
Both frameworks also pad the last shard with repeated samples.

Example: `test_loss /= len(test_loader.dataset)` gets
`# TODO(pt-migrate) PTM112: ...` above it.

Fabric form: sum the metric and the count, then `fabric.all_reduce(t, reduce_op="sum")` both (or use
torchmetrics). Accelerate form: `accelerator.gather_for_metrics(...)`, which also drops the padding.

Fix safety: report-only.
"""
from __future__ import annotations

import libcst as cst
from migrator import matching as m

from migrator.analysis import MAIN_GUARD, MODULE
from migrator.names import dotted
from migrator.rules.base import Example, REPORT_ONLY, Context, Rule, RuleTransformer


class _Transformer(RuleTransformer):
    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call):
        if not m.matches(original_node, m.Call(func=m.Name("len"), args=[m.Arg(m.Attribute(attr=m.Name("dataset")))])):
            return updated_node
        loader = dotted(original_node.args[0].value.value)
        scope = self.scope
        loaders = set(self.facts.loader_params.get(scope, set()))
        if scope == self.facts.setup_scope or (self.facts.setup_scope == MAIN_GUARD and scope == MODULE):
            loaders |= set(self.facts.loaders)
        if loader in loaders:
            fix = ("all_reduce the metric and its count" if self.ctx.target == "fabric"
                   else "use accelerator.gather_for_metrics")
            self.todo(original_node, f"`len({loader}.dataset)` counts all ranks' samples but this rank sees only its "
                                     f"shard: {fix}")
        return updated_node


class ShardedMetric(Rule):
    code = "PTM112"
    name = "sharded-metric"
    triggers = ("dataset",)
    skips_other_statements = True
    fix_safety = REPORT_ONLY
    examples = [
        Example(
            before='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef test(model, loader):\n    correct = 0\n    for x, y in loader:\n        correct += (model(x).argmax(1) == y).sum().item()\n    print(correct / len(loader.dataset))\n\n\ndef main():\n    model = torch.nn.Linear(4, 2)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loader = DataLoader(TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,))), batch_size=4)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n    test(model, loader)\n',
            fabric="import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef test(model, loader):\n    correct = 0\n    for x, y in loader:\n        correct += (model(x).argmax(1) == y).sum().item()\n    # TODO(pt-migrate) PTM112: `len(loader.dataset)` counts all ranks' samples but this rank sees only its shard: all_reduce the metric and its count\n    print(correct / len(loader.dataset))\n\n\ndef main():\n    model = torch.nn.Linear(4, 2)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loader = DataLoader(TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,))), batch_size=4)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n    test(model, loader)\n",
            accelerate="import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef test(model, loader):\n    correct = 0\n    for x, y in loader:\n        correct += (model(x).argmax(1) == y).sum().item()\n    # TODO(pt-migrate) PTM112: `len(loader.dataset)` counts all ranks' samples but this rank sees only its shard: use accelerator.gather_for_metrics\n    print(correct / len(loader.dataset))\n\n\ndef main():\n    model = torch.nn.Linear(4, 2)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loader = DataLoader(TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,))), batch_size=4)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n    test(model, loader)\n",
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
