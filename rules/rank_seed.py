"""PTM145 rank-seed: randomness drawn in training differs between ranks; the models and the problem start alike.

What it does: in the scope that seeds (`fabric.seed_everything(s)` / `set_seed(s)`, from PTM109) and sets the
models up, when the training loop there draws from the global RNG (`torch.randn`, `rand`, `randint`,
`randn_like`, `rand_like`, `randint_like`, `randperm`, `bernoulli`, `multinomial`, `normal`), itself or through a
function or class that draws outside `__init__` (of the file, or imported from a sibling module of the run and
called by the script: a loss helper's jitter, nanoGPT's `get_batch`, minRF's `RF.forward`), or a Dataset class of
the file that this scope instantiates draws from torch's, NumPy's or Python's global generator in `__getitem__` /
`__iter__` (or a `self.` method they call), adds after the last model setup (and after any later statement
that draws before the loop, such as building that dataset): `if fabric.global_rank > 0:
fabric.seed_everything(s + fabric.global_rank)` / `if accelerator.process_index > 0: set_seed(s,
device_specific=True)`. Where nothing in that scope seeds (the module or a caller does), torch's seed is offset
instead: `torch.manual_seed(torch.initial_seed() + fabric.global_rank)` on ranks above 0 (and `random.seed(...)`,
`numpy.random.seed(...)` where the Dataset draws from them).

A script that seeds nothing at all (no call that names a seed) and draws from a global generator before its
training loop (at module level, in the setup function, or in a local function or class `__init__` called there:
a target weight, a synthetic data set, a `random_split` without a generator, an argument of the setup function's
call such as `main(Problem())`) is first seeded alike on every rank right above that first draw, with Lightning's
free `seed_everything(0)` / Accelerate's `set_seed(0)` (not the object's method: the draw may run before the object
exists, above the main guard or above the flag that PTM115 creates the object after), with a warning; the seed is
arbitrary. The per-rank seed after setup then follows, so what the unseeded original drew differently per process
in training stays different. A module that is never set up (a target network that loads the set-up model's weights,
an EMA or teacher copy) counts as such a draw where the script copies weights into one (`load_state_dict` on a
module it built, `copy.deepcopy` of a set-up model): setup broadcasts only the set-up models, so the others started
different on every rank. A loss or other module with no weights to copy does not count.

Why: in torch 2.13 an unseeded process starts torch's generator from a random seed (as Python's `random` and
NumPy's are), so every rank of an unseeded script draws its own problem, and DDP averages the gradients of
different problems. Every process that seeds seeds alike, so without it every rank draws the same noise (GAN latents, diffusion timesteps,
masks) and the N processes train on N copies of one noise batch. The models must still start identical: they
are built after the common seed, and the reseed comes after setup (DDP's constructor also broadcasts rank 0's
parameters and buffers, on both targets). Rank 0 keeps the original stream, so one process trains exactly as
the original did.

Example: after `generator, opt_g = fabric.setup(generator, opt_g)`:
`if fabric.global_rank > 0:` / `    fabric.seed_everything(0 + fabric.global_rank)`.

Fabric form: `fabric.seed_everything(s + fabric.global_rank)` on ranks above 0.
Accelerate form: `set_seed(s, device_specific=True)` on processes above 0.

A scope whose seed already reads the rank (nanoGPT's `1337 + seed_offset`, the offset being the rank) is left as
it is.

Fix safety: safe on one process (nothing runs: rank 0 draws what the original draws); dropout masks also differ
between ranks afterwards, as they do under any per-rank seed. A script that never names a device draws its noise on
the CPU; migrated and run on a GPU, its batches arrive on the device and `torch.bernoulli(torch.full_like(x, p))`
draws from CUDA's generator instead, so one-process losses on `--accelerator cuda` differ from the CPU original's
(noise_seed_elsewhere on an H200: step 1 1.3062 vs 1.3075) whatever the seeding; a device-aware original
(fixtures/noise_seed_device) draws on the device too. DataLoader workers seed `random`, torch and NumPy from a base
seed drawn from torch's generator when the loop makes the loader's iterator, after the per-rank seed, so their
draws differ per rank too. The common seed of an unseeded script makes its runs repeatable (the original's differ
from run to run); a Dataset or a trainer method in another module that the script does not call itself, and a
statement that both draws the problem and trains (`Trainer().fit()`), are not seen: the per-rank seed lands after the last statement that draws.
"""
from __future__ import annotations

from typing import List, Optional, Set

import libcst as cst

from libcst.metadata import QualifiedNameProvider

from migrator import matching as m
from migrator.names import dotted, qualified_names
from migrator.rules._captures import deepcopy_of
from migrator.rules._global_draws import (Draws, builds_module, first_setup_draw, module_classes, seeds_anywhere,
                                           trains)
from migrator.diagnostics import WARNING
from migrator.rules.base import Context, Example, Rule, RuleTransformer

DRAWS = {"randn", "rand", "randint", "randn_like", "rand_like", "randint_like", "randperm", "bernoulli",
         "multinomial", "normal"}
MARK = "the ranks draw different random numbers in the loop"
COMMON_MARK = "one problem for all processes: the script seeded nothing"  # no "rank": PTM115 reads it as a use
COMMON_SEED = 0  # arbitrary: any seed shared by the ranks gives them one problem
# How a sibling's draws reach the creating script's run: entries "<prefix>module.Name" of
# `Options.external_fw_functions` (migrator.project), which is only tested for "module.function" names
SIBLING_DRAWS = "PTM145 draws "


def draws_outside_init(node: cst.CSTNode) -> bool:
    """A function, or a class's methods other than `__init__`, call `torch.<draw>` (the global generator)."""
    bodies = [node] if isinstance(node, cst.FunctionDef) else [
        i for i in node.body.body if isinstance(i, cst.FunctionDef) and i.name.value != "__init__"]
    return any(call.func.attr.value in DRAWS for b in bodies
               for call in m.findall(b, m.Call(func=m.Attribute(value=m.Name("torch")))))


def _draws_in_loop(stmt, drawing=frozenset()) -> bool:
    """A training loop in `stmt` draws from torch's global generator: itself, or through `drawing`, the local names
    of a sibling's classes and functions that draw (and the names bound to instances of those classes)."""
    for loop in m.findall(stmt, m.For() | m.While()):
        trains = m.findall(loop.body, m.Call(func=m.Attribute(attr=m.Name("backward")))) or \
            m.findall(loop.body, m.Call(func=m.Attribute(attr=m.Name("step"))))
        if not trains:
            continue
        for call in m.findall(loop.body, m.Call()):
            func = call.func
            if isinstance(func, cst.Attribute) and m.matches(func.value, m.Name("torch")) and func.attr.value in DRAWS:
                return True
            base = func.value if isinstance(func, cst.Attribute) else func
            if isinstance(base, cst.Name) and base.value in drawing:
                return True
    return False


class _Transformer(RuleTransformer):
    METADATA_DEPENDENCIES = RuleTransformer.METADATA_DEPENDENCIES + (QualifiedNameProvider,)
    draws: Optional[Draws] = None
    first_draw = None  # (statement, scope) before which an unseeded script gets a common seed
    common_seeded = False
    seed_name_taken = False

    def visit_Module(self, node: cst.Module):
        self._module = node
        if not (self.facts.is_training and self.facts.setup_scope):
            return True
        self.draws = Draws(node, lambda n: qualified_names(self, n))
        self.seed_name_taken = bool(m.findall(node, m.Name("seed_everything")))
        if not seeds_anywhere(node) and not self.facts.fw_exists:  # a framework object made by hand: its own seeding
            self.first_draw = first_setup_draw(node, self.draws, self.facts.setup_scope)
            if self.first_draw is None and self._unset_module(node):
                # a target network, teacher or copy built before the setup: setup broadcasts only the set-up models,
                # so an unseeded script's other modules start different on every rank (minimalRL's DDPG: q_target
                # from q's pre-setup weights; verify c failed on 2 CPU processes)
                self.first_draw = first_setup_draw(node, self.draws, self.facts.setup_scope,
                                                   module_classes(node))
            # known before any block is left: a draw at module level is left after the setup block is
            self.common_seeded = self.first_draw is not None
        return True

    def _unset_module(self, node: cst.Module) -> bool:
        """Does the script copy weights into a module that is not set up (`q_target.load_state_dict(q.state_dict())`
        on a module it built, `ema = copy.deepcopy(model)`)? A loss or other module with no weights to copy does not
        count: it would seed scripts that need none."""
        classes = module_classes(node)
        set_up = set(self.facts.models) | self.facts.model_aliases
        built = {name for stmt in m.findall(node, m.SimpleStatementLine()) for name in builds_module(stmt, classes)}
        for call in m.findall(node, m.Call(func=m.Attribute(attr=m.Name("load_state_dict")))):
            owner = dotted(call.func.value)
            if owner in built and owner not in set_up:
                return True
        for a in m.findall(node, m.Assign()):
            if deepcopy_of(a.value, set_up) and not any(dotted(t.target) in set_up for t in a.targets):
                return True
        return False

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
        if name in (f"{self.fw}.seed_everything", "seed_everything", "lightning.fabric.seed_everything", "set_seed",
                    "torch.manual_seed") and call.args:
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

    def _common_seed(self, body, orig):
        """An unseeded script that draws before training: every rank seeds alike right above the first draw.

        A free function on both targets (Lightning's `seed_everything`, Accelerate's `set_seed`): the draw may
        run before the object exists (above the main guard, before the setup function's call, above the flag
        or the process-group helper that PTM115 / PTM100 create the object after)."""
        if self.first_draw is None or len(orig) != len(body):
            return body, orig
        stmt, _scope = self.first_draw
        at = next((i for i, s in enumerate(orig) if s is stmt), None)
        if at is None:
            return body, orig
        self.first_draw = None  # the ranks' later draws, different in the unseeded original, get their own seeds
        if self.ctx.target == "accelerate":
            self.ctx.imports.add("accelerate.utils", "set_seed")
            call = f"set_seed({COMMON_SEED})"
        elif self.seed_name_taken:  # the script has a `seed_everything` of its own
            self.ctx.imports.add("lightning.fabric")
            call = f"lightning.fabric.seed_everything({COMMON_SEED})"
        else:  # workers=False by default, as Fabric's method is not
            self.ctx.imports.add("lightning.fabric", "seed_everything")
            call = f"seed_everything({COMMON_SEED})"
        self.report(stmt, f"the script seeds nothing and draws random numbers before training starts: each process "
                          f"would draw its own, and the ranks would train on different problems; every rank is now "
                          f"seeded alike above the first draw (`{call}`, an arbitrary seed: runs are now repeatable "
                          f"and differ from the unseeded original's)", True, WARNING)
        line = cst.parse_statement(f"{call}  # {COMMON_MARK}\n")
        return body[:at] + [line] + body[at:], orig[:at] + [line] + orig[at:]

    def _varies_by_rank(self, seed: cst.BaseExpression) -> bool:
        """The seed reads the rank, itself or through a name bound to an expression that does."""
        code = cst.Module(body=[]).code_for_node
        rankish = ("rank", "process_index")
        if any(r in code(seed).lower() for r in rankish):
            return True
        names = {n.value for n in m.findall(seed, m.Name())}
        return any(any(r in code(a.value).lower() for r in rankish) for a in m.findall(self._module, m.Assign())
                   if any(isinstance(t.target, cst.Name) and t.target.value in names for t in a.targets))

    def _drawing_names(self, body) -> Set[str]:
        """Local names through which the loop draws from torch's global generator: a class or function of this file,
        or one imported from a sibling (migrator.project's SIBLING_DRAWS entries), that draws outside `__init__`,
        and the names this block binds to instances of such a class (`helper = LossHelper(model)`)."""
        local = {n.name.value for n in self._module.body if isinstance(n, (cst.FunctionDef, cst.ClassDef))
                 and draws_outside_init(n)}
        entries = [e[len(SIBLING_DRAWS):] for e in self.ctx.options.external_fw_functions if e.startswith(SIBLING_DRAWS)]
        if entries:
            from migrator.analysis import _imported_external_fw
            local |= _imported_external_fw(self._module, frozenset(entries))
        if not local:
            return set()
        names = set(local)
        for stmt in body:
            for a in m.findall(stmt, m.Assign()):
                if isinstance(a.value, cst.Call) and dotted(a.value.func) in local:
                    names |= {t.target.value for t in a.targets if isinstance(t.target, cst.Name)}
        return names

    def _dataset_draws(self, body) -> Set[str]:
        """Libraries drawn from by the `__getitem__` / `__iter__` of the local Dataset classes that this block
        instantiates (itself or in a local function it calls): per-sample randomness of the set-up loaders."""
        if self.draws is None or not self.facts.loaders:
            return set()
        kinds: Set[str] = set()
        todo, seen = list(body), set()
        while todo:
            node = todo.pop()
            for call in m.findall(node, m.Call()):
                name = dotted(call.func) or ""
                if name in self.draws.classes:
                    kind = self.draws.item_draws(name)
                    if kind:
                        kinds.add(kind)
                elif name in self.draws.functions and name not in seen:
                    seen.add(name)
                    todo.append(self.draws.functions[name])
        return kinds

    def _fix(self, body: List[cst.BaseStatement], orig: List[cst.BaseStatement]):
        seeded, orig = self._common_seed(body, orig)
        fixed = self._rank_seed(seeded, orig)
        return fixed if fixed is not None else (seeded if seeded is not body else None)

    def _rank_seed(self, body: List[cst.BaseStatement], orig: List[cst.BaseStatement]):
        if not self.in_fw_scope() or not self.facts.models:
            return None
        setups = [i for i, s in enumerate(body) if self._is_model_setup(s)]
        if not setups:
            return None
        last = setups[-1]
        while last + 1 < len(body) and isinstance(body[last + 1], cst.SimpleStatementLine) and \
                "mark_forward_method" in cst.Module(body=[]).code_for_node(body[last + 1]):
            last += 1
        if self.draws is not None and len(orig) == len(body):
            # what is drawn between the setup and the training loop (a dataset, fixed noise) stays common
            for j in range(last + 1, len(body)):
                if any(trains(loop) for loop in m.findall(orig[j], m.For() | m.While())):
                    break
                if self.draws.in_node(orig[j]):
                    last = j
        kinds = self._dataset_draws(orig)
        drawing = self._drawing_names(body)
        in_loop = any(_draws_in_loop(s, drawing) for s in body[last + 1:])
        if not kinds and not in_loop and not self.common_seeded:
            return None
        if self.common_seeded:
            kinds |= self.draws.kinds_anywhere()
        code = cst.Module(body=[]).code_for_node
        if any(MARK in code(s) for s in body):
            return None  # done by an earlier run
        seeds = [(i, self._seed(s)) for i, s in enumerate(body[:last]) if self._seed(s) is not None]
        if seeds and self._varies_by_rank(seeds[-1][1]):
            return None  # seeded per rank already (nanoGPT's `1337 + seed_offset`, the offset being the rank)
        where = orig[last] if len(orig) == len(body) else body[last]
        why = ("the training loop" if in_loop or not kinds else "the Dataset's `__getitem__`/`__iter__`") \
            if not self.common_seeded else "training (as in the unseeded original)"
        if not seeds:  # seeded elsewhere (module level, a caller) or not at all: offset torch's current seed
            rank = f"{self.fw}.global_rank" if self.ctx.target == "fabric" else f"{self.fw}.process_index"
            lines = [f"if {rank} > 0:  # {MARK}", f"    torch.manual_seed(torch.initial_seed() + {rank})"]
            others = []
            if "random" in kinds:
                self.ctx.imports.add("random")
                lines.append(f"    random.seed(torch.initial_seed() + {rank})")
                others.append("`random`")
            if "numpy" in kinds:
                self.ctx.imports.add("numpy")
                lines.append(f"    numpy.random.seed((torch.initial_seed() + {rank}) % 2**32)")
                others.append("NumPy")
            kept = "NumPy and `random` stay as they were" if not others else f"{' and '.join(others)} likewise"
            self.report(where, f"the ranks now draw different random numbers in {why} (torch's seed offset by the "
                               f"rank after the models are set up alike; {kept})", True)
            return body[: last + 1] + [cst.parse_statement("\n".join(lines) + "\n")] + body[last + 1:]
        s = code(seeds[-1][1])
        if self.ctx.target == "fabric":
            text = (f"if {self.fw}.global_rank > 0:  # {MARK}\n"
                    f"    {self.fw}.seed_everything({s} + {self.fw}.global_rank)\n")
        else:
            self.ctx.imports.add("accelerate.utils", "set_seed")
            text = (f"if {self.fw}.process_index > 0:  # {MARK}\n"
                    f"    set_seed({s}, device_specific=True)\n")
        self.report(where, f"the ranks now draw different random numbers in {why} (seeded per rank after the "
                           f"models are set up alike)", True)
        return body[: last + 1] + [cst.parse_statement(text)] + body[last + 1:]


class RankSeed(Rule):
    code = "PTM145"
    name = "rank-seed"
    # "load_state_dict" / "deepcopy": a target network or a copy built before the setup (an unseeded script's modules)
    triggers = ("rand", "normal", "bernoulli", "multinomial", "load_state_dict", "deepcopy")
    examples = [
        Example(
            before='import torch\n\n\ndef main():\n    torch.manual_seed(0)\n    gen = torch.nn.Linear(4, 4)\n    opt = torch.optim.Adam(gen.parameters())\n    for _ in range(3):\n        gen(torch.randn(8, 4)).mean().backward()\n        opt.step()\n',
            fabric=None,  # run alone there is no setup line to follow: see fixtures/gan_* for the whole migration
            accelerate=None,
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
