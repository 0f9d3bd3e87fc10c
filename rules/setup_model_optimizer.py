"""PTM105 setup-model-optimizer: hand models and optimizers to the framework.

What it does: right after the statement that creates the last optimizer, inserts
`model, optimizer = fabric.setup(model, optimizer)` (one call per model/optimizer pair) or
`model, optimizer = accelerator.prepare(model, optimizer)` (one call for all of them, in order).

Why: setup/prepare moves the model to the right device, wraps it for distributed training and hooks the
optimizer into mixed precision. Models are found as the owners of the `.parameters()` given to an optimizer.

Example: `optimizer = torch.optim.SGD(model.parameters(), lr=0.1)` is followed by the setup line.

Fabric form: `fabric.setup(model, optimizer)` per pair; when one optimizer trains several models (or several
optimizers share a model) `fabric.setup_module(m)` per model, then `fabric.setup_optimizers(o1, o2)`.

Accelerate form: `model, optimizer = accelerator.prepare(model, optimizer)`; a GAN gets
`g, d, opt_g, opt_d = accelerator.prepare(g, d, opt_g, opt_d)`.

A model trained without a torch.optim optimizer (`for p in model.parameters(): p.data.add_(p.grad, alpha=-lr)`)
is set up alone: `model = fabric.setup(model)` / `model = accelerator.prepare(model)`, no optimizer is made up.
When no DataLoader is set up there (batches cut by hand from a tensor), a TODO says that every process trains
on the same data.

An optimizer made only under an `if` (`if args.use_optimizer: opt = AdamW(...)`, the other path updates the
parameters by hand) is set up right after it is made, `opt = fabric.setup_optimizers(opt)` /
`opt = accelerator.prepare(opt)`, and its model alone after the `if` (`model = fabric.setup(model)`): a setup
that named it would raise NameError on the other path.

An optimizer created inside a loop or block that then trains (a run loop, a sweep) is set up there, after its
creation; an `if` / `elif` that only picks the optimizer (`if args.optimizer == "adamw": ... elif ...`) gets the
setup after the whole statement, for every branch.

A model handed, before that point, to something that keeps it (minRF's `rf = RF(model)`, `Trainer(model=model)`,
`net = model` where `net` is called, `self.model = model`, `models = [model]`, an unknown call whose result is kept)
is set up alone right above that statement: `model = fabric.setup_module(model)` / `model =
accelerator.prepare(model)`, and its optimizer where the combined setup would have gone (`optimizer =
fabric.setup_optimizers(optimizer)` / `optimizer = accelerator.prepare(optimizer)`). After the combined setup the
holder would call the raw module: its forward bypasses the DDP wrapper, gradients are not averaged, and the ranks
drift apart without an error. Printing or counting the model, a deep copy or an EMA / averaging helper (they copy
the weights; a set-up module cannot be deep-copied), a checkpoint load, code in a def or lambda and an alias never
called (`model_without_ddp = model`, the unwrapped view for parameter groups and checkpoints) are no capture. Where
the setup cannot go above the holder (the same statement makes the model, or the model is rebound or loaded after
it), the combined setup stays and the holder gets a warning and a TODO. A plain object of the file made around its
model in one expression (`rf = RF(Net())`, the optimizer on `rf.model.parameters()`) is no nn.Module: the held model
is set up in its place, `rf.model, optimizer = fabric.setup(rf.model, optimizer)`; a holder that is an nn.Module is
set up itself.

LR schedulers are not prepared: they are built from the loader length after `setup_dataloaders`/`prepare`
(see semantics.md), so they already count the per-rank steps. An optimizer whose model cannot be told
gets a TODO.

Fix safety: safe.
"""
from __future__ import annotations

from typing import Collection, Dict, List

import libcst as cst
from migrator import matching as m

from migrator.bindings import ALWAYS, NO, stmt_binds
from migrator.names import assigned_names, dotted
from migrator.rules.ddp_wrapper import forward_methods_to_mark
from migrator.rules._captures import called_names, captures, held_model, local_classes, plain_classes
from migrator.rules._moves import _assigned, _loads_into, _uses_for_training, setup_point
from migrator.diagnostics import WARNING
from migrator.rules.base import Context, Example, Rule, RuleTransformer, with_todo
from migrator.rules.framework_object import _Transformer as _FrameworkPlacement


def setup_lines(ctx: Context, optimizers: Dict[str, List[str]], early: Collection[str] = (),
                held: Dict[str, str] = None) -> List[str]:
    """The setup statements after the last optimizer. `early`: models already set up above a statement that
    captures them (see _captured); only their optimizers are set up here. Fabric documents setup_module +
    setup_optimizers as equivalent to setup(model, optimizer); Accelerate prepares a model and, later, its optimizer
    (the optimizer's parameters are the model's, moved in place). `held`: a plain holder -> the module it holds
    (`rf` -> `rf.model`), set up in its place."""
    fw = ctx.fw
    held = held or {}
    models = [held.get(mm, mm) for mm in ctx.facts.models if mm not in early]
    optimizers = {o: [held.get(mm, mm) for mm in ms] for o, ms in optimizers.items()}
    if ctx.target == "accelerate":
        names = models + list(optimizers)
        return [f"{', '.join(names)} = {fw}.prepare({', '.join(names)})"]
    owners = [ms[0] for ms in optimizers.values() if len(ms) == 1]
    one_to_one = all(len(ms) == 1 for ms in optimizers.values()) and len(set(owners)) == len(owners)
    if one_to_one:
        # a model whose optimizer is set up where it is made (conditional_optimizers) is set up alone
        return ([f"{o} = {fw}.setup_optimizers({o})" if ms[0] in early else f"{ms[0]}, {o} = {fw}.setup({ms[0]}, {o})"
                 for o, ms in optimizers.items()]
                + [f"{mm} = {fw}.setup({mm})" for mm in models if mm not in owners])
    lines = [f"{mm} = {fw}.setup_module({mm})" for mm in models]
    opts = list(optimizers)
    lines.append(f"{', '.join(opts)} = {fw}.setup_optimizers({', '.join(opts)})")
    return lines


def _after_made(stmt: cst.CSTNode, name: str, line: cst.BaseStatement):
    """`stmt` (an `if` / `with` that binds `name` on some paths) with `line` after each place that makes it, or None
    when that place cannot be told (a branch binds it twice on different paths)."""
    if isinstance(stmt, cst.With):
        block = _block_after(stmt.body, name, line)
        return None if block is None else stmt.with_changes(body=block)
    if not isinstance(stmt, cst.If):
        return None
    body = _block_after(stmt.body, name, line)
    orelse = stmt.orelse
    if isinstance(orelse, cst.If):
        orelse = _after_made(orelse, name, line)
    elif isinstance(orelse, cst.Else):
        block = _block_after(orelse.body, name, line)
        orelse = None if block is None else orelse.with_changes(body=block)
    if body is None or (stmt.orelse is not None and orelse is None):
        return None
    return stmt.with_changes(body=body, orelse=orelse)


def _block_after(block, name: str, line: cst.BaseStatement):
    if not isinstance(block, cst.IndentedBlock):  # `if flag: opt = Adam(...)` on one line
        block = cst.IndentedBlock(body=[cst.SimpleStatementLine(body=block.body)])
    stmts = list(block.body)
    makers = [i for i, s in enumerate(stmts) if stmt_binds(s, name) != NO]
    if not makers:
        return block
    i = makers[-1]
    if stmt_binds(stmts[i], name) == ALWAYS and not isinstance(stmts[i], (cst.If, cst.With)):
        return block.with_changes(body=stmts[: i + 1] + [line] + stmts[i + 1:])
    if len(makers) > 1:
        return None
    new = _after_made(stmts[i], name, line)
    return None if new is None else block.with_changes(body=stmts[:i] + [new] + stmts[i + 1:])


def already_set_up(body, fw: str, names: List[str]) -> bool:
    """True when some statement of the block already passes these names to the framework."""
    calls = m.Call(func=m.Attribute(value=m.Name(fw), attr=m.Name("setup") | m.Name("setup_module")
                                    | m.Name("setup_optimizers") | m.Name("setup_dataloaders")
                                    | m.Name("prepare")))
    for stmt in body:
        for call in m.findall(stmt, calls):
            args = {dotted(a.value) for a in call.args}
            if args & set(names):
                return True
    return False


def assigns(stmt: cst.CSTNode, names) -> bool:
    for a in m.findall(stmt, m.Assign()):
        if any(n in names for t in a.targets for n in assigned_names(t.target)):
            return True
    return False


class _Transformer(_FrameworkPlacement):
    def _insert_bare(self, body):
        """Models trained by hand (no optimizer): set up alone, after their last assignment before training."""
        models = self.facts.bare_models
        if already_set_up(body, self.fw, models):
            return list(body)
        last = setup_point(body, self.facts)
        if last is None:
            return list(body)
        call = "setup" if self.ctx.target == "fabric" else "prepare"
        names = ", ".join(models)
        new = [cst.parse_statement(f"{names} = {self.fw}.{call}({names})")]
        self.report(self.where(last, body), f"set up {names} alone with {self.fw}: it has no optimizer (its parameters "
                                            f"are updated by hand, from gradients the framework averages)", True)
        if not self.facts.loaders:
            msg = (f"no DataLoader feeds `{models[0]}`: its batches are cut by hand, so every process trains on "
                   f"the same data (not sharded); split it per rank with `{self.fw}."
                   f"{'global_rank' if self.ctx.target == 'fabric' else 'process_index'}` and `{self.fw}."
                   f"{'world_size' if self.ctx.target == 'fabric' else 'num_processes'}` to share the work")
            self.report(self.where(last, body), msg, False)
            new[0] = with_todo(new[0], self.rule.code, msg)
        return list(body[: last + 1]) + new + list(body[last + 1:])

    def visit_Module(self, node):
        self._module = node
        return True

    def _insert(self, body, module_level):
        optimizers = {o: ms for o, ms in self.facts.optimizers.items() if ms}
        for o, ms in self.facts.optimizers.items():
            if not ms and not already_set_up(body, self.fw, [o]):  # set up already: a rerun on the output
                for stmt in body:
                    if assigns(stmt, {o}):
                        self.todo(stmt, f"cannot tell which model `{o}` trains; set both up with "
                                        f"`{self.fw}.{'setup' if self.ctx.target == 'fabric' else 'prepare'}(model, {o})`")
        if not optimizers and self.facts.bare_models:
            return self._insert_bare(body)
        if not optimizers or already_set_up(body, self.fw, list(optimizers)):
            return list(body)
        # a model reassigned after its optimizer (torch.compile, a wrapper) is set up after that, before the model
        # is first used for training; a new instance built after that (for inference) is not set up
        last = setup_point(body, self.facts)
        if last is None:
            return list(body)
        inner = self._descend(body, last, module_level)
        if inner is not None:
            return inner
        conditional = [o for o in optimizers if o in self.facts.conditional_optimizers]
        if conditional:
            body = self._setup_where_made(body, last, conditional)
            optimizers = {o: ms for o, ms in optimizers.items() if o not in conditional}
        body = list(body)  # _captured marks a capture it cannot fix with a TODO in place
        early = self._captured(body, last)
        held = self._held(body, last, optimizers)
        new = [cst.parse_statement(line) for line in setup_lines(self.ctx, optimizers, early, held)]
        early_lines = {mm: [cst.parse_statement(f"{mm} = {self.fw}."
                                                f"{'setup_module' if self.ctx.target == 'fabric' else 'prepare'}({mm})")]
                       for mm in early}
        if self.ctx.target == "fabric" and getattr(self, "_module", None) is not None:
            for model in self.facts.models:
                mark, unsure = forward_methods_to_mark(self._module, model)
                for meth in mark:
                    (early_lines[model] if model in early else new).append(
                        cst.parse_statement(f'{model}.mark_forward_method("{meth}")'))
                if unsure:
                    calls = ", ".join(f"`{model}.{n}(...)`" for n in unsure)
                    new[0] = with_todo(new[0], self.rule.code, (
                        f"{calls} called outside forward, on a class this file does not define: if it is a method "
                        f"that computes the training loss, add `{model}.mark_forward_method(\"NAME\")` after this line "
                        f"(a submodule or attribute needs nothing)"))
                    self.report(self.where(last, body), f"{calls}: pt-migrate cannot tell whether it is a method "
                                                        f"to mark with mark_forward_method", False)
        what = ", ".join([mm for mm in self.facts.models if mm not in early] + list(optimizers))
        self.report(self.where(last, body), f"set up {what} with {self.fw}", True)
        out = list(body[: last + 1]) + new + list(body[last + 1:])
        for mm, at in sorted(early.items(), key=lambda kv: -kv[1]):
            out[at:at] = early_lines[mm]
        return out

    def _held(self, body, last: int, optimizers) -> Dict[str, str]:
        """Plain holders made around their model in one expression (`rf = RF(Net())`, the optimizer on
        `rf.model.parameters()`): the held module is set up in the holder's place (`rf.model = ...`), so the
        holder calls the set-up model. The holder itself is no nn.Module: Fabric's setup raises on it and
        Accelerate's prepare hands it back unwrapped."""
        module = getattr(self, "_module", None)
        if module is None:
            return {}
        plain = plain_classes(module)
        held = {}
        for mm in self.facts.models:
            inner = held_model(body[: last + 1], mm, list(optimizers), plain) if plain else None
            if inner is not None:
                held[mm] = inner
                self.report(self.where(last, body), f"`{mm}` is a plain object that holds the model `{inner}`: "
                                                    f"{inner} is set up in its place, so {mm} calls the set-up "
                                                    f"model", True)
        return held

    def _captured(self, body, last: int) -> Dict[str, int]:
        """Models handed, before the setup point, to something that keeps them (`rf = RF(model)`, `self.model =
        model`): model -> index of the first such statement, above which the model is set up alone. After the
        setup point the holder would call the raw module: its forward bypasses the DDP wrapper and the ranks'
        gradients are never averaged. Where the setup cannot go above it (the statement also makes the model; the
        model is rebound or loaded after it), the combined setup stays and the capture gets a warning and a TODO."""
        module = getattr(self, "_module", None)
        classes = local_classes(module) if module is not None else set()
        called = called_names(body)
        early: Dict[str, int] = {}
        call = "setup_module" if self.ctx.target == "fabric" else "prepare"
        for mm in self.facts.models:
            if mm in self.facts.bare_models:
                continue
            at = next((i for i, s in enumerate(body[:last]) if captures(s, mm, classes, called)), None)
            if at is None:
                continue
            held = cst.Module(body=[]).code_for_node(body[at]).strip().splitlines()[0]
            later = body[at + 1: last + 1]
            if stmt_binds(body[at], mm) == NO and not any(_assigned(s, {mm}) or _loads_into(s, {mm}) for s in later):
                early[mm] = at
                self.report(self.where(at, body), f"set up {mm} with {self.fw}.{call} above `{held}`, which keeps "
                                                  f"it: the holder must call the set-up model, or its forward "
                                                  f"bypasses the DDP wrapper and the ranks' gradients are not "
                                                  f"averaged", True)
                continue
            why = ("is made in that statement" if stmt_binds(body[at], mm) != NO
                   else "is rebound or loaded after it")
            msg = (f"`{held}` keeps `{mm}` before its setup below ({mm} {why}): the object calls the unwrapped "
                   f"model, so gradients are not synchronized across processes; set `{mm}` up with "
                   f"`{mm} = {self.fw}.{call}({mm})` before it is handed over")
            self.report(self.where(at, body), msg, False, WARNING)
            body[at] = with_todo(body[at], self.rule.code, msg)
        return early


    def _setup_where_made(self, body, last: int, conditional: List[str]):
        """Optimizers made only under an `if` (`if args.use_optimizer: opt = AdamW(...)`, the other path updates the
        parameters by hand): each is set up right after it is made, `opt = fabric.setup_optimizers(opt)` /
        `opt = accelerator.prepare(opt)`, and its model alone after the `if`. Fabric and Accelerate take the
        optimizer of a model set up separately (the parameters are the same tensors after the model's move). Where
        the place that makes it cannot be told, the optimizer is left as it is with a TODO: it still steps the
        set-up model's parameters, whose gradients the framework's backward has averaged."""
        body = list(body)
        call = "setup_optimizers" if self.ctx.target == "fabric" else "prepare"
        for o in conditional:
            makers = [i for i, s in enumerate(body[: last + 1]) if stmt_binds(s, o) != NO]
            line = cst.parse_statement(f"{o} = {self.fw}.{call}({o})")
            new = _after_made(body[makers[0]], o, line) if len(makers) == 1 else None
            if new is None:
                if makers:
                    msg = (f"`{o}` is made only on some paths: set it up where it is made with "
                           f"`{o} = {self.fw}.{call}({o})`")
                    self.report(self.where(makers[-1], body), msg, False)
                    body[makers[-1]] = with_todo(body[makers[-1]], self.rule.code, msg)
                continue
            self.report(self.where(makers[0], body), f"set up {o} where it is made, with {self.fw}.{call}: it is made "
                                                     f"only on some paths, so the setup after it names only "
                                                     f"the model", True)
            body[makers[0]] = new
        return body

    def _descend(self, body, last: int, module_level: bool):
        """When the statement that creates the last optimizer is a loop, `with` or `if` that also trains
        (`for run in range(n): model = Net(); opt = SGD(...); train(model, opt)`), the setup goes inside it,
        after the creation: after the statement it would train unset-up models. Returns the new block, or None
        when the statement does not train inside."""
        stmt = body[last]
        models, optimizers = set(self.facts.models), set(self.facts.optimizers)
        if isinstance(stmt, cst.SimpleStatementLine) or not _uses_for_training(stmt, models, optimizers):
            return None
        originals = getattr(self, "_originals", None)
        original = originals[last] if originals is not None and len(originals) == len(body) else None
        for field in ("body", "orelse", "finalbody"):
            block, old = getattr(stmt, field, None), getattr(original, field, None)
            if isinstance(block, cst.Else):
                block, old = block.body, getattr(old, "body", None)
            if not isinstance(block, cst.IndentedBlock) or not _assigned(block, optimizers):
                continue
            inner = list(block.body)
            made = max(i for i, s in enumerate(inner) if _assigned(s, optimizers))
            if not any(_uses_for_training(s, models, optimizers) for s in inner[made + 1:]):
                # `if args.optimizer == "adamw": opt = AdamW(...) elif ...: opt = SGD(...)` only picks the optimizer:
                # the setup goes after the whole statement, for every branch (dino)
                continue
            self._originals = list(old.body) if isinstance(old, cst.IndentedBlock) else None
            try:
                new_inner = self._insert(list(block.body), module_level)
            finally:
                self._originals = originals
            new_block = block.with_changes(body=new_inner)
            if field == "orelse" and isinstance(stmt.orelse, cst.Else):
                new_stmt = stmt.with_changes(orelse=stmt.orelse.with_changes(body=new_block))
            else:
                new_stmt = stmt.with_changes(**{field: new_block})
            return list(body[:last]) + [new_stmt] + list(body[last + 1:])
        return None


class SetupModelOptimizer(Rule):
    code = "PTM105"
    plain_scripts_only = True  # the core migration: a framework script has done it its own way
    name = "setup-model-optimizer"
    examples = [
        Example(
            before='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main():\n    gen = torch.nn.Linear(4, 4)\n    disc = torch.nn.Linear(4, 1)\n    opt_g = torch.optim.Adam(gen.parameters())\n    opt_d = torch.optim.Adam(disc.parameters())\n    disc(gen(torch.randn(8, 4))).mean().backward()\n    opt_g.step()\n    opt_d.step()\n',
            fabric='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main():\n    gen = torch.nn.Linear(4, 4)\n    disc = torch.nn.Linear(4, 1)\n    opt_g = torch.optim.Adam(gen.parameters())\n    opt_d = torch.optim.Adam(disc.parameters())\n    gen, opt_g = fabric.setup(gen, opt_g)\n    disc, opt_d = fabric.setup(disc, opt_d)\n    disc(gen(torch.randn(8, 4))).mean().backward()\n    opt_g.step()\n    opt_d.step()\n',
            accelerate='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main():\n    gen = torch.nn.Linear(4, 4)\n    disc = torch.nn.Linear(4, 1)\n    opt_g = torch.optim.Adam(gen.parameters())\n    opt_d = torch.optim.Adam(disc.parameters())\n    gen, disc, opt_g, opt_d = accelerator.prepare(gen, disc, opt_g, opt_d)\n    disc(gen(torch.randn(8, 4))).mean().backward()\n    opt_g.step()\n    opt_d.step()\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
