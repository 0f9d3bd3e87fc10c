"""PTM120 not-migrated: constructs this version does not rewrite yet are reported at their line.

What it does: reports, with a TODO at the line, hand-written distributed and mixed-precision code:
`init_process_group`, `DistributedDataParallel`, `DataParallel`, `DistributedSampler`, `mp.spawn`,
`GradScaler`, `autocast`, `no_sync`. (Collectives, rank guards and `torch.save` are PTM136-PTM138's.) A
`GradScaler() if ... else None` in a script with no autocast gets a note instead: it stays and keeps working, since
the framework's precision stays off there (PTM133).

Why: each has a trap when moved to Fabric or Accelerate (see semantics.md): a second DDP wrapper, data
sharded twice, a save that hangs under a rank guard, a reduce that averages instead of summing. Until the
rules that undo them exist, the tool says so instead of guessing.

Example: `model = DDP(model, device_ids=[rank])` gets
`# TODO(pt-migrate) PTM120: ...` above it.

Fabric form: see the message (e.g. remove the wrapper: `fabric.setup` wraps the model).
Accelerate form: see the message (e.g. remove the wrapper: `accelerator.prepare` wraps the model).

Fix safety: report-only.
"""
from __future__ import annotations

import libcst as cst
from libcst.metadata import QualifiedNameProvider

from migrator.names import qualified_names
from migrator.rules.base import REPORT_ONLY, Context, Example, Rule, RuleTransformer, has_todo
from migrator.rules.ddp_wrapper import WRAPPERS

# qualified name prefix -> (what to do for Fabric, what to do for Accelerate)
CONSTRUCTS = {
    "torch.distributed.init_process_group": ("remove it: Fabric starts the process group",
                                             "remove it: Accelerator starts the process group"),
    "torch.nn.parallel.DistributedDataParallel": ("remove the wrapper: fabric.setup wraps the model",
                                                  "remove the wrapper: accelerator.prepare wraps the model"),
    "torch.nn.parallel.distributed.DistributedDataParallel": ("remove the wrapper: fabric.setup wraps the model",
                                                              "remove the wrapper: accelerator.prepare wraps the model"),
    "torch.nn.DataParallel": ("remove the wrapper: fabric.setup wraps the model",
                              "remove the wrapper: accelerator.prepare wraps the model"),
    "torch.utils.data.DistributedSampler": ("Fabric keeps it and calls set_epoch itself; check shuffle",
                                            "remove it and its set_epoch calls: prepare shards the loader again"),
    "torch.utils.data.distributed.DistributedSampler": ("Fabric keeps it and calls set_epoch itself; check shuffle",
                                                        "remove it and its set_epoch calls: prepare shards the loader again"),
    "torch.multiprocessing.spawn": ("replace with fabric.launch() in a main function",
                                    "replace with a main function started by accelerate launch / torchrun"),
    "torch.cuda.amp.GradScaler": ("remove it: set Fabric(precision=\"16-mixed\")",
                                  "remove it: set Accelerator(mixed_precision=\"fp16\")"),
    "torch.amp.GradScaler": ("remove it: set Fabric(precision=\"16-mixed\")",
                             "remove it: set Accelerator(mixed_precision=\"fp16\")"),
}


class _Transformer(RuleTransformer):
    METADATA_DEPENDENCIES = RuleTransformer.METADATA_DEPENDENCIES + (QualifiedNameProvider,)

    def __init__(self, rule, ctx):
        super().__init__(rule, ctx)
        self._ifexp = 0

    def visit_IfExp(self, node: cst.IfExp):
        self._ifexp += 1
        return True

    def leave_IfExp(self, original_node, updated_node):
        self._ifexp -= 1
        return updated_node

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call):
        for q in qualified_names(self, original_node.func):
            advice = CONSTRUCTS.get(q)
            if advice:
                what = q.rsplit(".", 1)[-1]
                if what == "GradScaler" and self._ifexp and self.ctx.precision_code() is None:
                    # `GradScaler() if fp16 else None` without an autocast: the script casts by hand, the framework's
                    # precision stays off (migrator/precision.py) and this scaler keeps scaling the loss
                    self.note(original_node, "kept the GradScaler: the script makes it on its own switch and casts "
                                             "by hand (no autocast), so the framework's precision stays off and this "
                                             "scaler scales the loss as before")
                    break
                if self.ctx.facts.on_target and q in WRAPPERS:
                    break  # on a framework script PTM131 kept this wrapper on purpose, with a note
                if self._stmts and any(has_todo(self._stmts[-1], code) for code in ("PTM131", "PTM132")):
                    break  # PTM131 / PTM132 kept it and said why at this line
                fix = advice[0] if self.ctx.target == "fabric" else advice[1]
                self.todo(original_node, f"`{what}` is not migrated by this version: {fix}")
                break
        return updated_node


class NotMigrated(Rule):
    code = "PTM120"
    name = "not-migrated"
    triggers = tuple({q.rsplit(".", 1)[-1].lower() for q in CONSTRUCTS})
    skips_other_statements = True
    fusable = True
    fix_safety = REPORT_ONLY
    examples = [
        Example(
            before='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\nimport torch.distributed as dist\nfrom torch.nn.parallel import DistributedDataParallel as DDP\n\n\ndef main(rank):\n    dist.init_process_group("nccl")\n    model = DDP(torch.nn.Linear(4, 1).to(rank), device_ids=[rank])\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n',
            fabric='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\nimport torch.distributed as dist\nfrom torch.nn.parallel import DistributedDataParallel as DDP\n\n\ndef main(rank):\n    # TODO(pt-migrate) PTM120: `init_process_group` is not migrated by this version: remove it: Fabric starts the process group\n    dist.init_process_group("nccl")\n    # TODO(pt-migrate) PTM120: `DistributedDataParallel` is not migrated by this version: remove the wrapper: fabric.setup wraps the model\n    model = DDP(torch.nn.Linear(4, 1).to(rank), device_ids=[rank])\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n',
            accelerate='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\nimport torch.distributed as dist\nfrom torch.nn.parallel import DistributedDataParallel as DDP\n\n\ndef main(rank):\n    # TODO(pt-migrate) PTM120: `init_process_group` is not migrated by this version: remove it: Accelerator starts the process group\n    dist.init_process_group("nccl")\n    # TODO(pt-migrate) PTM120: `DistributedDataParallel` is not migrated by this version: remove the wrapper: accelerator.prepare wraps the model\n    model = DDP(torch.nn.Linear(4, 1).to(rank), device_ids=[rank])\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
