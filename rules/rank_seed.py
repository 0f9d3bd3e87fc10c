"""PTM145 rank-seed: randomness drawn in the training loop differs between ranks; the models still start alike.

What it does: in the scope that seeds (`fabric.seed_everything(s)` / `set_seed(s)`, from PTM109) and sets the
models up, when the training loop there draws from the global RNG (`torch.randn`, `rand`, `randint`,
`randn_like`, `rand_like`, `randint_like`, `randperm`, `bernoulli`, `multinomial`, `normal`), adds right after
the last model setup: `if fabric.global_rank > 0: fabric.seed_everything(s + fabric.global_rank)` /
`if accelerator.process_index > 0: set_seed(s, device_specific=True)`. Where nothing in that scope seeds (the
module or a caller does, or nothing does: torch's default seed is the same in every process), torch's seed is
offset instead: `torch.manual_seed(torch.initial_seed() + fabric.global_rank)` on ranks above 0.

Why: every process seeds alike, so without it every rank draws the same noise (GAN latents, diffusion timesteps,
masks) and the N processes train on N copies of one noise batch. The models must still start identical: they
are built after the common seed, and the reseed comes after setup (DDP's constructor also broadcasts rank 0's
parameters and buffers, on both targets). Rank 0 keeps the original stream, so one process trains exactly as
the original did.

Example: after `generator, opt_g = fabric.setup(generator, opt_g)`:
`if fabric.global_rank > 0:` / `    fabric.seed_everything(0 + fabric.global_rank)`.

Fabric form: `fabric.seed_everything(s + fabric.global_rank)` on ranks above 0.
Accelerate form: `set_seed(s, device_specific=True)` on processes above 0.

Fix safety: safe on one process (nothing runs: rank 0 draws what the original draws); dropout masks also differ
between ranks afterwards, as they do under any per-rank seed. A script that never names a device draws its noise on
the CPU; migrated and run on a GPU, its batches arrive on the device and `torch.bernoulli(torch.full_like(x, p))`
draws from CUDA's generator instead, so one-process losses on `--accelerator cuda` differ from the CPU original's
(noise_seed_elsewhere on an H200: step 1 1.3062 vs 1.3075) whatever the seeding; a device-aware original
(fixtures/noise_seed_device) draws on the device too.
"""
from __future__ import annotations

from typing import List, Optional

import libcst as cst

from migrator import matching as m
from migrator.names import dotted
from migrator.rules.base import Context, Example, Rule, RuleTransformer

DRAWS = {"randn", "rand", "randint", "randn_like", "rand_like", "randint_like", "randperm", "bernoulli",
         "multinomial", "normal"}
MARK = "the ranks draw different random numbers in the loop"


def _draws_in_loop(stmt) -> bool:
    for loop in m.findall(stmt, m.For() | m.While()):
        trains = m.findall(loop.body, m.Call(func=m.Attribute(attr=m.Name("backward")))) or \
            m.findall(loop.body, m.Call(func=m.Attribute(attr=m.Name("step"))))
        if not trains:
            continue
        for call in m.findall(loop.body, m.Call(func=m.Attribute(value=m.Name("torch")))):
            if call.func.attr.value in DRAWS:
                return True
    return False


class _Transformer(RuleTransformer):
    def leave_IndentedBlock(self, original_node, updated_node):
        body = self._fix(list(updated_node.body), list(original_node.body))
        return updated_node if body is None else updated_node.with_changes(body=body)

    def leave_Module(self, original_node, updated_node):
        body = self._fix(list(updated_node.body), list(original_node.body))
        return updated_node if body is None else updated_node.with_changes(body=body)

    def _seed(self, stmt) -> Optional[cst.BaseExpression]:
        if not (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 and
                isinstance(stmt.body[0], cst.Expr) and isinstance(stmt.body[0].value, cst.Call)):
            return None
        call = stmt.body[0].value
        name = dotted(call.func)
        if name in (f"{self.fw}.seed_everything", "set_seed", "torch.manual_seed") and call.args:
            return call.args[0].value
        return None

    def _is_model_setup(self, stmt) -> bool:
        if not (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 and
                isinstance(stmt.body[0], cst.Assign) and isinstance(stmt.body[0].value, cst.Call)):
            return False
        name = dotted(stmt.body[0].value.func)
        args = {dotted(a.value) for a in stmt.body[0].value.args}
        return name in (f"{self.fw}.setup", f"{self.fw}.setup_module", f"{self.fw}.prepare",
                        f"{self.fw}.prepare_model") and bool(args & set(self.facts.models))

    def _fix(self, body: List[cst.BaseStatement], orig: List[cst.BaseStatement]):
        if not self.in_fw_scope() or not self.facts.models:
            return None
        setups = [i for i, s in enumerate(body) if self._is_model_setup(s)]
        if not setups:
            return None
        last = setups[-1]
        while last + 1 < len(body) and isinstance(body[last + 1], cst.SimpleStatementLine) and \
                "mark_forward_method" in cst.Module(body=[]).code_for_node(body[last + 1]):
            last += 1
        if not any(_draws_in_loop(s) for s in body[last + 1:]):
            return None
        code = cst.Module(body=[]).code_for_node
        if any(MARK in code(s) for s in body):
            return None  # done by an earlier run
        seeds = [(i, self._seed(s)) for i, s in enumerate(body[:last]) if self._seed(s) is not None]
        if not seeds:  # seeded elsewhere (module level, a caller) or not at all: offset torch's current seed
            rank = f"{self.fw}.global_rank" if self.ctx.target == "fabric" else f"{self.fw}.process_index"
            text = (f"if {rank} > 0:  # {MARK}\n"
                    f"    torch.manual_seed(torch.initial_seed() + {rank})\n")
            self.report(orig[last] if len(orig) == len(body) else body[last],
                        "the ranks now draw different random numbers in the training loop (torch's seed offset by the "
                        "rank after the models are set up alike; NumPy and `random` stay as they were)", True)
            return body[: last + 1] + [cst.parse_statement(text)] + body[last + 1:]
        s = code(seeds[-1][1])
        if self.ctx.target == "fabric":
            text = (f"if {self.fw}.global_rank > 0:  # {MARK}\n"
                    f"    {self.fw}.seed_everything({s} + {self.fw}.global_rank)\n")
        else:
            self.ctx.imports.add("accelerate.utils", "set_seed")
            text = (f"if {self.fw}.process_index > 0:  # {MARK}\n"
                    f"    set_seed({s}, device_specific=True)\n")
        self.report(orig[last] if len(orig) == len(body) else body[last], "the ranks now draw different random numbers in the training loop (seeded per "
                                "rank after the models are set up alike)", True)
        return body[: last + 1] + [cst.parse_statement(text)] + body[last + 1:]


class RankSeed(Rule):
    code = "PTM145"
    name = "rank-seed"
    triggers = ("rand", "normal", "bernoulli", "multinomial")
    examples = [
        Example(
            before='import torch\n\n\ndef main():\n    torch.manual_seed(0)\n    gen = torch.nn.Linear(4, 4)\n    opt = torch.optim.Adam(gen.parameters())\n    for _ in range(3):\n        gen(torch.randn(8, 4)).mean().backward()\n        opt.step()\n',
            fabric=None,  # run alone there is no setup line to follow: see fixtures/gan_* for the whole migration
            accelerate=None,
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
