"""PTM144 schedule-length: a learning-rate schedule sized from a step count that sharding changes is sized per process.

What it does: where a scheduler's length (`OneCycleLR(total_steps=...)`, `steps_per_epoch=`,
`CosineAnnealingLR(T_max=...)`, `LinearLR(total_iters=...)`, transformers' `num_training_steps=`) is computed,
in the scope that sets the loader up, from `len(dataset)` of a set-up loader's dataset, or from `len(loader)`
before the loader is set up, that `len(...)` becomes the number of samples (or batches) each process gets:
`math.ceil(len(train_ds) / fabric.world_size)` / `math.ceil(len(train_ds) / accelerator.num_processes)`. A
length that reads no `len(...)` (a constant number of steps) while the scheduler steps once per batch of a
set-up loader gets a TODO.

Why: `setup_dataloaders` / `prepare` give each of N processes about 1/N of the batches, so a schedule sized
for the whole dataset is only 1/N through when training ends (a OneCycleLR never anneals). A per-process
count gives the original's schedule on any number of processes. `ceil(ceil(n / N) / b) == ceil(n / (N * b))`:
the per-process sample count gives exactly the per-process batch count that `DistributedSampler` (Fabric)
and Accelerate's batch sharding (`even_batches`) produce without `drop_last`.

Example: `steps_per_epoch = math.ceil(len(train_ds) / BATCH_SIZE)` ->
`steps_per_epoch = math.ceil(math.ceil(len(train_ds) / fabric.world_size) / BATCH_SIZE)`.

Fabric form: `math.ceil(len(ds) / fabric.world_size)`. Accelerate form: `math.ceil(len(ds) / accelerator.num_processes)`.

Fix safety: safe on one process (`ceil(n / 1) == n`); with `drop_last=True` the per-process count can differ by
one batch from Accelerate's. A constant length is reported only.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Set

import libcst as cst

from migrator import matching as m
from migrator.names import dotted
from migrator.rules.base import Context, Example, Rule, RuleTransformer

SCHEDULERS = {"OneCycleLR", "CosineAnnealingLR", "LinearLR", "PolynomialLR", "get_linear_schedule_with_warmup",
              "get_cosine_schedule_with_warmup", "get_polynomial_decay_schedule_with_warmup", "get_scheduler",
              "get_cosine_with_hard_restarts_schedule_with_warmup", "get_constant_schedule_with_warmup"}
LENGTH_KEYWORDS = {"total_steps", "steps_per_epoch", "T_max", "total_iters", "num_training_steps", "num_warmup_steps"}
# positional length arguments by scheduler (index into the call's arguments)
LENGTH_POSITIONS = {"OneCycleLR": {2}, "CosineAnnealingLR": {1}, "get_linear_schedule_with_warmup": {1, 2},
                    "get_cosine_schedule_with_warmup": {1, 2}, "get_polynomial_decay_schedule_with_warmup": {1, 2}}


def _call_name(node) -> Optional[str]:
    if not isinstance(node, cst.Call):
        return None
    f = node.func
    if isinstance(f, cst.Attribute):
        return f.attr.value
    if isinstance(f, cst.Name):
        return f.value
    return None


def _reads(node: cst.CSTNode) -> Set[str]:
    return {n.value for n in m.findall(node, m.Name())}


def _assign(stmt) -> Optional[cst.Assign]:
    if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 and isinstance(stmt.body[0], cst.Assign):
        return stmt.body[0]
    return None


def _assigned(stmt) -> Set[str]:
    a = _assign(stmt)
    if a is None:
        if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 and \
                isinstance(stmt.body[0], (cst.AnnAssign, cst.AugAssign)):
            t = dotted(stmt.body[0].target)
            return {t} if t else set()
        return set()
    out = set()
    for t in a.targets:
        for n in m.findall(t.target, m.Name()):
            out.add(n.value)
    return out


class _Transformer(RuleTransformer):
    def _fw_count(self) -> str:
        return f"{self.fw}.world_size" if self.ctx.target == "fabric" else f"{self.fw}.num_processes"

    def leave_IndentedBlock(self, original_node, updated_node):
        body = self._fix(list(original_node.body), list(updated_node.body))
        return updated_node if body is None else updated_node.with_changes(body=body)

    def leave_Module(self, original_node, updated_node):
        body = self._fix(list(original_node.body), list(updated_node.body))
        return updated_node if body is None else updated_node.with_changes(body=body)

    def _fix(self, orig: List[cst.BaseStatement], body: List[cst.BaseStatement]):
        if len(orig) != len(body) or not self.in_fw_scope():
            return None
        fw = self.fw
        datasets: Dict[str, str] = {}  # loader -> dataset
        setup_at: Dict[str, int] = {}  # loader -> index of its setup statement
        for i, stmt in enumerate(body):
            a = _assign(stmt)
            if a is None:
                continue
            name = _call_name(a.value)
            if name == "DataLoader" and a.value.args and a.value.args[0].keyword is None:
                ds = dotted(a.value.args[0].value)
                for t in a.targets:
                    if dotted(t.target):
                        datasets[dotted(t.target)] = ds  # None: a dataset built in the call
            if name in ("setup_dataloaders", "prepare") and isinstance(a.value.func, cst.Attribute) and \
                    dotted(a.value.func.value) == fw:
                for arg in a.value.args:
                    n = dotted(arg.value)
                    if n in datasets and n not in setup_at:
                        setup_at[n] = i
        for l, i in list(datasets.items()):  # loaders the setup rules set up (the rule may run alone)
            if l in self.facts.loaders and l not in setup_at:
                setup_at[l] = next(k for k, st in enumerate(body) if l in _assigned(st)) + 1
        if not setup_at:
            return None
        new_body = list(body)
        changed = False
        for i, stmt in enumerate(body):
            a = _assign(stmt)
            sched = _call_name(a.value) if a is not None else None
            if sched not in SCHEDULERS:
                continue
            lengths = [arg.value for k, arg in enumerate(a.value.args)
                       if (arg.keyword is not None and arg.keyword.value in LENGTH_KEYWORDS) or
                       (arg.keyword is None and k in LENGTH_POSITIONS.get(sched, ()))]
            if not lengths:
                continue
            # the statements before the scheduler that compute its length, transitively
            wanted: Set[str] = set()
            for e in lengths:
                wanted |= _reads(e)
            chain = []
            for j in range(i - 1, -1, -1):
                got = _assigned(body[j])
                if got & wanted:
                    chain.append(j)
                    wanted |= _reads(body[j])
            fixed_here = False
            for j in chain:
                # len(dataset of a set-up loader), or len(loader) read before the loader's setup
                targets = {datasets[l] for l in setup_at if datasets[l]} | {l for l, k in setup_at.items() if j < k}
                rewritten = self._rewrite_lens(new_body[j], targets)
                if rewritten is not None:
                    new_body[j] = rewritten
                    fixed_here = changed = True
                    self.report(orig[j], f"the schedule's length now counts the samples of one process "
                                         f"(`len(...) / {self._fw_count()}`): each process gets 1/N of the "
                                         f"batches, so a length for the whole dataset would not end", True)
            inline = self._rewrite_lens(new_body[i], {datasets[l] for l in setup_at if datasets[l]} |
                                        {l for l, k in setup_at.items() if i < k})
            if inline is not None:
                new_body[i] = inline
                fixed_here = changed = True
                self.report(orig[i], f"the schedule's length now counts the samples of one process "
                                     f"(`len(...) / {self._fw_count()}`)", True)
            if fixed_here:
                continue
            reads_len = any(m.findall(body[j], m.Call(func=m.Name("len"))) for j in chain) or \
                any(m.findall(e, m.Call(func=m.Name("len"))) for e in lengths)
            if reads_len:
                continue
            target = a.targets[0].target if len(a.targets) == 1 else None
            sname = dotted(target) if target is not None else None
            names = set().union(*(_reads(e) for e in lengths))
            bounded = any(_reads(c) & names for st in body[i + 1:] for c in m.findall(st, m.Comparison()))
            if sname and not bounded and self._steps_per_batch(body[i + 1:], sname, set(setup_at)):
                msg = (f"`{sched}` is sized by a fixed number of steps, but it steps once per batch of a set-up "
                       f"loader, and each of N processes gets 1/N of the batches: size it from `len(loader)` "
                       f"after setup (or divide by `{self._fw_count()}`) so that it ends when training ends")
                self.report(orig[i], msg, False)
                new_body[i] = _with_todo(new_body[i], self.rule.code, msg)
                changed = True
        if changed:
            self.ctx.imports.add("math")
            return new_body
        return None

    def _rewrite_lens(self, stmt, targets: Set[str]):
        count = self._fw_count()
        hit = []
        code = cst.Module(body=[]).code_for_node(stmt)
        targets = {t for t in targets if f"len({t}) / {count}" not in code}  # done by an earlier run
        if not targets:
            return None

        class R(cst.CSTTransformer):
            def leave_Call(self, original_node, updated_node):
                if isinstance(original_node.func, cst.Name) and original_node.func.value == "len" and \
                        len(original_node.args) == 1 and dotted(original_node.args[0].value) in targets:
                    hit.append(1)
                    return cst.parse_expression(f"math.ceil(len({dotted(original_node.args[0].value)}) / {count})")
                return updated_node

        out = stmt.visit(R())
        return out if hit else None

    @staticmethod
    def _steps_per_batch(rest, sched: str, loaders: Set[str]) -> bool:
        for stmt in rest:
            for loop in m.findall(stmt, m.For()):
                if dotted(loop.iter) in loaders and m.findall(
                        loop.body, m.Call(func=m.Attribute(value=m.Name(sched), attr=m.Name("step")))):
                    return True
        return False


def _with_todo(stmt, code, message):
    from migrator.rules.base import with_todo
    return with_todo(stmt, code, message)


class ScheduleLength(Rule):
    code = "PTM144"
    name = "schedule-length"
    triggers = ("onecyclelr", "cosineannealinglr", "linearlr", "polynomiallr", "schedule_with_warmup", "get_scheduler")
    examples = [
        Example(
            before='import math\nimport torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\n\ndef main():\n    ds = TensorDataset(torch.randn(64, 4))\n    total = 2 * math.ceil(len(ds) / 8)\n    loader = DataLoader(ds, batch_size=8)\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=total)\n    for epoch in range(2):\n        for (x,) in loader:\n            model(x).sum().backward()\n            optimizer.step()\n            scheduler.step()\n',
            fabric='import math\nimport torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\n\ndef main():\n    ds = TensorDataset(torch.randn(64, 4))\n    total = 2 * math.ceil(math.ceil(len(ds) / fabric.world_size) / 8)\n    loader = DataLoader(ds, batch_size=8)\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=total)\n    for epoch in range(2):\n        for (x,) in loader:\n            model(x).sum().backward()\n            optimizer.step()\n            scheduler.step()\n',
            accelerate='import math\nimport torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\n\ndef main():\n    ds = TensorDataset(torch.randn(64, 4))\n    total = 2 * math.ceil(math.ceil(len(ds) / accelerator.num_processes) / 8)\n    loader = DataLoader(ds, batch_size=8)\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=total)\n    for epoch in range(2):\n        for (x,) in loader:\n            model(x).sum().backward()\n            optimizer.step()\n            scheduler.step()\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
