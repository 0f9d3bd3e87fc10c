"""PTM132 distributed-sampler: the script's own DistributedSampler goes, with its set_epoch calls.

What it does: deletes `sampler = DistributedSampler(ds, ...)`, removes `sampler=sampler` from the
DataLoader and gives the loader the sampler's shuffle setting instead (`shuffle=True` by default, or the
`shuffle=` the sampler had; a `shuffle=(sampler is None)` argument becomes that value); deletes
`sampler.set_epoch(epoch)` and `loader.sampler.set_epoch(epoch)`. An inline `sampler=DistributedSampler(ds) if
distributed else None` goes the same way (its loader's `shuffle=not distributed` becomes the sampler's shuffle). A loader factory that returns its sampler
(`return loader, sampler`) returns None in its place, so its callers unpack as many values as before; their
`set_epoch` calls on what it returned go too, and only the loader is set up. For both targets.

Why: Accelerate shards a loader AGAIN when it already has a DistributedSampler: each rank silently loses
data (2 ranks, 10 samples: 4 each instead of 5). Fabric would keep the sampler and call `set_epoch` itself;
removing it there too gives the same result (setup_dataloaders inserts a DistributedSampler with the
loader's shuffle and calls `set_epoch` each epoch) with one code path and one behaviour for both targets.

Example: `train_sampler = DistributedSampler(ds)` and `DataLoader(ds, batch_size=32, sampler=train_sampler)`
-> `DataLoader(ds, batch_size=32, shuffle=True)`.

Fabric form and Accelerate form: the same.

Fabric and Accelerate advance the epoch on every pass over the loader, not once per epoch: where the epoch loop
iterates the loader more than once (training, then evaluation on the same loader), the shuffle order from the
second epoch on differs from the original's. Every rank still sees its own shard of every sample; a note says so.

A sampler read for anything else than feeding its loader (`print(sampler)`, `BatchSampler(sampler, 8)`,
`len(sampler)`) stays, with its `set_epoch` calls, and the loaders built on it are not set up (Accelerate would
shard them again): they keep sharding by the script's sampler, on the framework's process group; a TODO at the
sampler says so (migrator/samplers.py).

Fix safety: safe. A sampler `seed=` or `drop_last=` is reported (the framework's sampler uses its own);
a sampler kept as above, or built in a class out of reach of the framework object, gets a TODO.
"""
from __future__ import annotations

from typing import Dict

import libcst as cst
from migrator import matching as m
from libcst.metadata import QualifiedNameProvider

from migrator.names import assigned_names, dotted, qualified_names
from migrator.rules.base import Context, Example, Rule, RuleTransformer

SAMPLERS = {"torch.utils.data.DistributedSampler", "torch.utils.data.distributed.DistributedSampler"}


class _Transformer(RuleTransformer):
    METADATA_DEPENDENCIES = RuleTransformer.METADATA_DEPENDENCIES + (QualifiedNameProvider,)

    def __init__(self, rule, ctx):
        super().__init__(rule, ctx)
        self.samplers: Dict[str, cst.BaseExpression] = {}  # name -> its shuffle expression
        self.loaders: Dict[str, str] = {}  # sampler name -> the loader built on it
        self.removed: Dict[str, set] = {}  # top-level function -> sampler names whose assignment went

    def _sampler_call(self, node) -> bool:
        return isinstance(node, cst.Call) and bool(qualified_names(self, node.func) & SAMPLERS)

    def _shuffle_of(self, call: cst.Call) -> cst.BaseExpression:
        for a in call.args:
            if a.keyword and a.keyword.value == "shuffle":
                return a.value
        return cst.Name("True")

    def visit_Module(self, node: cst.Module):
        if "DistributedSampler" not in (self.ctx.text or "DistributedSampler"):
            return True  # every spelling of the sampler, aliases included, has the word in its import
        for a in m.findall(node, m.Assign(), metadata_resolver=self):
            value = a.value
            if isinstance(value, cst.IfExp):  # DistributedSampler(ds) if distributed else None
                value = value.body if self._sampler_call(value.body) else value.orelse
            if self._sampler_call(value):
                for n in (n for t in a.targets for n in assigned_names(t.target)):
                    self.samplers[n] = self._shuffle_of(value)
        for n in self.facts.kept_samplers:  # read for more than its loader: it stays (migrator/samplers.py)
            self.samplers.pop(n, None)
        for a in m.findall(node, m.Assign(value=m.Call())):
            for arg in a.value.args:
                if arg.keyword and arg.keyword.value == "sampler" and dotted(arg.value) in self.samplers:
                    for n in (n for t in a.targets for n in assigned_names(t.target)):
                        self.loaders[dotted(arg.value)] = n
        return True

    def _passes_per_epoch(self, owner: str) -> int:
        """How many `for` loops over the sampler's loader the enclosing (epoch) loop holds."""
        loader = self.loaders.get(owner) or (owner[: -len(".sampler")] if owner.endswith(".sampler") else None)
        epoch_loop = next((s for s in reversed(self._stmts[:-1]) if isinstance(s, cst.For)), None)
        if loader is None or epoch_loop is None:
            return 0
        return sum(1 for f in m.findall(epoch_loop.body, m.For())
                   if loader in {dotted(n) for n in m.findall(f.iter, m.Name() | m.Attribute())})

    def leave_SimpleStatementLine(self, original_node, updated_node):
        if len(original_node.body) != 1:
            return updated_node
        small = original_node.body[0]
        built = isinstance(small, cst.Assign) and (self._sampler_call(small.value) or m.matches(
            small.value, m.Name("None")) or (isinstance(small.value, cst.IfExp) and (
                self._sampler_call(small.value.body) or self._sampler_call(small.value.orelse))))
        kept = [n for t in small.targets for n in assigned_names(t.target) if n in self.facts.kept_samplers] \
            if built and not m.matches(small.value, m.Name("None")) else []
        if kept:
            loaders = ", ".join(f"`{n}`" for n in sorted(self.facts.kept_loaders)) or "its loader"
            self.todo(original_node, f"the DistributedSampler `{kept[0]}` stays, and {loaders} is not set up: "
                                     f"`{kept[0]}` is also used by `{self.facts.kept_samplers[kept[0]]}`, so setup/"
                                     f"prepare cannot shard in its place; the loader is sharded by this sampler "
                                     f"on the framework's process group, as before")
            return updated_node
        # the statements that build the sampler (or start it at None) go; `loader, sampler = make_loader(...)` stays
        if built and any(n in self.samplers for t in small.targets for n in assigned_names(t.target)):
            value = small.value.body if isinstance(small.value, cst.IfExp) else small.value
            if not self._sampler_call(value) and isinstance(small.value, cst.IfExp):
                value = small.value.orelse
            for a in getattr(value, "args", []):
                if a.keyword and a.keyword.value in ("seed", "drop_last"):
                    self.report(original_node, f"DistributedSampler `{a.keyword.value}=` is not carried over: "
                                               f"the framework's sampler uses its own", False)
            self.report(original_node, "removed the DistributedSampler: setup/prepare shards the loader", True)
            self.removed.setdefault(self.scope, set()).update(
                n for t in small.targets for n in assigned_names(t.target) if n in self.samplers)
            return self.remove(original_node)
        if isinstance(small, cst.Expr) and m.matches(small.value, m.Call(func=m.Attribute(attr=m.Name("set_epoch")))):
            owner = dotted(small.value.func.value) or ""
            kept = owner in self.facts.kept_samplers or owner.split(".")[0] in self.facts.kept_loaders
            if (owner in self.samplers or owner.lower().endswith("sampler")) and not kept:
                self.report(original_node, "removed `set_epoch`: the framework's sampler is advanced for you", True)
                if self._passes_per_epoch(owner) > 1:
                    self.note(original_node, "the loader is iterated more than once per epoch here: the framework "
                                             "advances the sampler's epoch on every pass over it, so the shuffle "
                                             "order differs from set_epoch(epoch) from the second epoch on")
                return self.remove(original_node)
        return updated_node

    def leave_Return(self, original_node: cst.Return, updated_node: cst.Return):
        """`return loader, sampler` from a loader factory whose sampler went: `return loader, None`, so callers
        unpack as many values as before (their `set_epoch` calls go too)."""
        gone = self.removed.get(self.scope, set())
        value = updated_node.value
        if not gone or value is None:
            return updated_node
        if isinstance(value, cst.Name) and value.value in gone:
            self.report(original_node, f"returns None for `{value.value}`: the DistributedSampler went", True)
            return updated_node.with_changes(value=cst.Name("None"))
        if not isinstance(value, cst.Tuple):
            return updated_node
        names = [el.value.value for el in value.elements if isinstance(el.value, cst.Name) and el.value.value in gone]
        if not names:
            return updated_node
        self.report(original_node, f"returns None for `{', '.join(names)}`: the DistributedSampler went; callers "
                                   f"unpack as many values as before", True)
        return updated_node.with_changes(value=value.with_changes(elements=[
            el.with_changes(value=cst.Name("None")) if isinstance(el.value, cst.Name) and el.value.value in gone
            else el for el in value.elements]))

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call):
        args = list(updated_node.args)
        idx = next((i for i, a in enumerate(args) if a.keyword and a.keyword.value == "sampler"), None)
        if idx is None:
            return updated_node
        value = args[idx].value
        given = original_node.args[idx].value
        if isinstance(given, cst.IfExp) and m.matches(given.orelse, m.Name("None")):
            given = given.body  # `sampler=DistributedSampler(ds) if distributed else None`: the same loader either way
        elif isinstance(given, cst.IfExp) and m.matches(given.body, m.Name("None")):
            given = given.orelse
        if dotted(value) in self.samplers:
            shuffle = self.samplers[dotted(value)]
        elif self._sampler_call(given):
            shuffle = self._shuffle_of(given)
        else:
            return updated_node
        # a loader built inside a class (`_make_loader` of a trainer) is not one the setup rules reach: it is set up
        # where it is built, or it keeps its sampler
        inside_class = self._class_depth > 0
        if inside_class and not self.in_fw_class_method():
            self.todo(original_node, "the DistributedSampler stays: this loader is built where the framework "
                                     "object is not in reach, so nothing would shard it in its place")
            return updated_node
        del args[idx]
        sh = next((i for i, a in enumerate(args) if a.keyword and a.keyword.value == "shuffle"), None)
        if sh is not None:
            args[sh] = args[sh].with_changes(value=shuffle)
        elif not (isinstance(shuffle, cst.Name) and shuffle.value == "False"):
            args.append(cst.Arg(keyword=cst.Name("shuffle"), value=shuffle, equal=cst.AssignEqual(
                whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace(""))))
        for i in range(len(args) - 1):
            if args[i].comma is cst.MaybeSentinel.DEFAULT:
                args[i] = args[i].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        args[-1] = args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        self.report(original_node, "the loader shuffles as the DistributedSampler did; setup/prepare shards it", True)
        loader = updated_node.with_changes(args=args)
        if inside_class:
            method = "setup_dataloaders" if self.ctx.target == "fabric" else "prepare"
            self.report(original_node, f"the loader is set up where it is built: `{self.fw}.{method}(...)`", True)
            return cst.Call(func=cst.Attribute(value=self.fw_expr(), attr=cst.Name(method)), args=[cst.Arg(loader)])
        return loader


class DistributedSamplerRule(Rule):
    code = "PTM132"
    name = "distributed-sampler"
    triggers = ("distributedsampler", "set_epoch")
    examples = [
        Example(
            before='import torch\nfrom torch.utils.data import DataLoader, DistributedSampler, TensorDataset\n\n\ndef main():\n    ds = TensorDataset(torch.randn(8, 4))\n    sampler = DistributedSampler(ds, shuffle=True)\n    loader = DataLoader(ds, batch_size=4, sampler=sampler)\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    for epoch in range(2):\n        sampler.set_epoch(epoch)\n        for (x,) in loader:\n            model(x).sum().backward()\n            optimizer.step()\n',
            fabric='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\n\ndef main():\n    ds = TensorDataset(torch.randn(8, 4))\n    loader = DataLoader(ds, batch_size=4, shuffle=True)\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    for epoch in range(2):\n        for (x,) in loader:\n            model(x).sum().backward()\n            optimizer.step()\n',
            accelerate='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\n\ndef main():\n    ds = TensorDataset(torch.randn(8, 4))\n    loader = DataLoader(ds, batch_size=4, shuffle=True)\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    for epoch in range(2):\n        for (x,) in loader:\n            model(x).sum().backward()\n            optimizer.step()\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
