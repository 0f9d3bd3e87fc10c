"""PTM112 sharded-metric: an evaluation over a set-up loader gives the metric of a single process.

What it does: for every loop over a set-up loader that does not train (no backward, step or zero_grad in it, nor
in a local function it calls), followed wherever the loader goes (a function's or method's parameter, `self.x`
of a class whose constructor receives it, the module level, a function that loops over a module-level loader by
its global name):
- Fabric: a loader that is only evaluated (every loop over it evaluates, it goes nowhere out of sight, and no
  function that iterates it reduces across ranks itself) is set up with `use_distributed_sampler=False` (PTM106
  writes it): every rank evaluates the whole set, so any metric (running `correct / total`, concatenated
  predictions, NumPy or sklearn on collected values, `len(loader.dataset)`) is the one of a single process.
  Where the loader must stay sharded, what the loop collects gets a TODO; sums divided by
  `len(loader.dataset)` are still all-reduced after the loop (`correct = fabric.all_reduce(torch.tensor(correct,
  device=fabric.device), reduce_op="sum").item()`; the padded last shard counts a few samples twice).
- Accelerate: what the loop adds to names started before it is gathered per batch with
  `accelerator.gather_for_metrics`, which drops the samples repeated to even out the shards:
  `correct += (pred == y).sum().item()` -> `correct += accelerator.gather_for_metrics(pred == y).sum().item()`,
  `total += y.size(0)` (or `len(y)`, `y.shape[0]`, `y.numel()`) -> `accelerator.gather_for_metrics(y).size(0)`,
  `loss_sum += F.cross_entropy(o, y, reduction="sum").item()` -> the per-sample losses (`reduction="none"`)
  gathered and summed, `preds.append(out.argmax(1).cpu().numpy())` / `.extend(...)` / `+= [...]` -> the tensor
  gathered before it is converted. A helper that evaluates takes the accelerator for it (the analysis threads it
  in). A loop that also collects anything else (a mean loss per batch `+= loss.item()`, a metric object's
  `.update(...)`, `self.x += ...`, a subscript) gets a TODO that says pt-migrate cannot tell how the metric is
  formed, and nothing in it is rewritten; so does an evaluation under a rank-0 guard (a gather there would wait
  forever) or out of reach of the accelerator. A `len(loader.dataset)` of a set-up loader whose loop is not
  handled gets a TODO.

Why: after `setup_dataloaders` / `prepare` each process sees only its shard, and the last shard is padded with
repeated samples when the set does not split evenly: a metric computed per rank, or summed across ranks, is not
the original's. Fabric has no de-duplicating gather, so an unsharded evaluation loader is the exact form there
(it costs each rank the whole evaluation).

Example: `correct += (pred == labels).sum().item()` and `total += labels.size(0)` in an evaluation helper.

Fabric form: `val_loader = fabric.setup_dataloaders(val_loader, use_distributed_sampler=False)`.
Accelerate form: `correct += accelerator.gather_for_metrics(pred == labels).sum().item()`.

Checked with 2 CPU processes on fixtures/eval_* (function, module level, trainer class; 203 validation samples):
the metric of the initial weights equals the single-process one on both targets.

Fix safety: safe. Whatever the rule cannot place keeps its TODO; the scripts that reduce across ranks themselves
are left as they are.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Set

import libcst as cst
from migrator import matching as m

from libcst.metadata import QualifiedNameProvider

from migrator.analysis import MAIN_GUARD, MODULE, unwrap_loader_iter
from migrator.names import dotted, qualified_names
from migrator.rules import _eval_metrics as em
from migrator.rules.base import Example, Context, Rule, RuleTransformer
from migrator.rules.rank_zero import guard_parts, rank_flags

_NUMBER_CALLS = {"len", "float", "int", "sum"}
_REDUCTIONS = {"all_reduce", "reduce", "all_gather", "gather", "gather_for_metrics", "reduce_tensor", "sync_dist"}


def _dataset_len_loader(node: cst.CSTNode) -> Optional[str]:
    """`len(loader.dataset)` -> "loader"."""
    if m.matches(node, m.Call(func=m.Name("len"), args=[m.Arg(m.Attribute(attr=m.Name("dataset")))])):
        return dotted(node.args[0].value.value)
    return None


def _is_python_number(node: cst.BaseExpression) -> bool:
    """`x.item()`, `3`, `len(b)`, `x.size(0)`, `x.numel()`, `x.shape[0]`, `float(...)`: a Python number."""
    if isinstance(node, (cst.Integer, cst.Float)):
        return True
    if isinstance(node, cst.Call):
        if isinstance(node.func, cst.Attribute) and node.func.attr.value in ("item", "numel") and not node.args:
            return True
        if isinstance(node.func, cst.Attribute) and node.func.attr.value == "size" and len(node.args) == 1:
            return True
        return isinstance(node.func, cst.Name) and node.func.value in _NUMBER_CALLS
    if isinstance(node, cst.Subscript):
        return m.matches(node.value, m.Attribute(attr=m.Name("shape")))
    if isinstance(node, cst.BinaryOperation):
        return _is_python_number(node.left) and _is_python_number(node.right)
    return False


def gathered(value: cst.BaseExpression, fw: str) -> Optional[cst.BaseExpression]:
    """Accelerate: a per-batch sum written as a sum over per-sample values, rewritten to sum over every rank's
    samples without the padding: `E.sum().item()` -> `fw.gather_for_metrics(E).sum().item()`,
    `F.nll_loss(o, t, reduction="sum").item()` -> `fw.gather_for_metrics(F.nll_loss(o, t, reduction="none")).sum()
    .item()`. None for any other form."""
    item = isinstance(value, cst.Call) and m.matches(value.func, m.Attribute(attr=m.Name("item"))) and not value.args
    inner = value.func.value if item else value
    per_sample = None
    if isinstance(inner, cst.Call) and m.matches(inner.func, m.Attribute(attr=m.Name("sum"))) and not inner.args:
        per_sample = inner.func.value
    elif isinstance(inner, cst.Call):
        args = list(inner.args)
        for i, a in enumerate(args):
            if a.keyword is not None and a.keyword.value == "reduction" and isinstance(a.value, cst.SimpleString) \
                    and a.value.evaluated_value == "sum":
                args[i] = a.with_changes(value=cst.SimpleString(a.value.value[0] + "none" + a.value.value[-1]))
                per_sample = inner.with_changes(args=args)
    if per_sample is None:
        return None
    if per_sample.lpar:
        per_sample = per_sample.with_changes(lpar=[], rpar=[])
    call = cst.parse_expression(f"{fw}.gather_for_metrics(__x__).sum()" + (".item()" if item else ""))

    class Fill(cst.CSTTransformer):
        def leave_Name(self, o, u):
            return per_sample if u.value == "__x__" else u

    return call.visit(Fill())


def _number_init(stmt: cst.CSTNode) -> List[str]:
    """`correct = 0`, `test_loss, correct = 0.0, 0`, `a = b = 0`: the names started at a number literal."""
    if not (isinstance(stmt, cst.SimpleStatementLine)):
        return []
    out = []
    for small in stmt.body:
        if not isinstance(small, cst.Assign):
            continue
        for t in small.targets:
            if isinstance(t.target, cst.Name) and isinstance(small.value, (cst.Integer, cst.Float)):
                out.append(t.target.value)
            elif isinstance(t.target, cst.Tuple) and isinstance(small.value, cst.Tuple) \
                    and len(t.target.elements) == len(small.value.elements):
                for te, ve in zip(t.target.elements, small.value.elements):
                    if isinstance(te.value, cst.Name) and isinstance(ve.value, (cst.Integer, cst.Float)):
                        out.append(te.value.value)
    return out


def _sums_in(loop: cst.For) -> Dict[str, List[cst.AugAssign]]:
    """name -> the `name += value` statements in the loop's body (nested functions aside)."""
    found: Dict[str, List[cst.AugAssign]] = {}
    other: Set[str] = set()
    for node in m.findall(loop.body, m.AugAssign() | m.Assign()):
        if isinstance(node, cst.AugAssign) and isinstance(node.target, cst.Name):
            if isinstance(node.operator, cst.AddAssign):
                found.setdefault(node.target.value, []).append(node)
            else:
                other.add(node.target.value)
        elif isinstance(node, cst.Assign):
            for t in node.targets:
                if isinstance(t.target, cst.Name):
                    other.add(t.target.value)
    return {k: v for k, v in found.items() if k not in other}


def reduces_itself(stmts) -> bool:
    """The code calls a reduction (all_reduce, reduce, gather_for_metrics, ...): the script reduces across ranks
    itself, or a previous run of this rule did."""
    return any((dotted(call.func) or "").rsplit(".", 1)[-1] in _REDUCTIONS
               for stmt in stmts for call in m.findall(stmt, m.Call()))


def plan_reductions(stmts, loaders: Set[str], gather: bool = False) -> Dict[int, List[tuple]]:
    """id(for loop over a set-up loader) -> [(name, python number?, its `+=` statements)] of the sums to reduce.
    With `gather` (Accelerate), only loops whose every such `+=` can be gathered per sample (`gathered`).

    A sum qualifies when it is started with a number literal before the loop, in the same block or one around
    it that no other loop separates from it, and a later statement of the function reads it next to
    `len(<that loader>.dataset)`."""
    plan: Dict[int, List[tuple]] = {}
    flat = list(stmts)
    if reduces_itself(flat):
        return plan
    # statements of the function that use len(L.dataset), with the names they read
    uses: List[tuple] = []  # (loader, names read)
    aliases: List[tuple] = []  # (loader, name bound to its len(loader.dataset))
    for stmt in flat:
        for line in m.findall(stmt, m.SimpleStatementLine()):
            lens = {_dataset_len_loader(c) for c in m.findall(line, m.Call(func=m.Name("len")))} - {None}
            lens |= {l for l, alias in aliases if any(n.value == alias for n in m.findall(line, m.Name()))}
            if lens & loaders:
                names = {n.value for n in m.findall(line, m.Name())}
                uses.extend((l, names) for l in lens & loaders)
                # `n = len(loader.dataset)`: a later `correct / n` divides by it too
                for small in line.body:
                    if isinstance(small, cst.Assign) and len(small.targets) == 1 \
                            and isinstance(small.targets[0].target, cst.Name) and _dataset_len_loader(small.value):
                        aliases.append((_dataset_len_loader(small.value), small.targets[0].target.value))

    def walk(block, inits: Set[str]) -> None:
        inits = set(inits)
        for stmt in block:
            inits |= set(_number_init(stmt))
            if isinstance(stmt, cst.For):
                loader = unwrap_loader_iter(stmt.iter)
                if loader in loaders:
                    sums = _sums_in(stmt)
                    chosen = [(n, all(_is_python_number(v.value) for v in augs), augs) for n, augs in sums.items()
                              if n in inits and any(l == loader and n in names for l, names in uses)]
                    if chosen and (not gather or all(gathered(a.value, "fw") is not None
                                                     for _, _, augs in chosen for a in augs)):
                        plan[id(stmt)] = chosen
                    continue
                walk(stmt.body.body, set())  # another loop: sums started outside it are carried over it
            elif isinstance(stmt, cst.While):
                walk(stmt.body.body, set())
            elif isinstance(stmt, (cst.With, cst.If, cst.Try)):
                for sub in _blocks(stmt):
                    walk(sub, inits)
    walk(flat, set())
    return plan


def _blocks(stmt: cst.BaseCompoundStatement) -> List[list]:
    out = [list(stmt.body.body)] if isinstance(stmt.body, cst.IndentedBlock) else []
    if isinstance(stmt, cst.If) and stmt.orelse is not None:
        if isinstance(stmt.orelse, cst.If):
            out.extend(_blocks(stmt.orelse))
        elif isinstance(stmt.orelse.body, cst.IndentedBlock):
            out.append(list(stmt.orelse.body.body))
    if isinstance(stmt, cst.Try):
        for h in stmt.handlers:
            out.append(list(h.body.body))
    return out


class _Transformer(RuleTransformer):
    METADATA_DEPENDENCIES = RuleTransformer.METADATA_DEPENDENCIES + (QualifiedNameProvider,)

    def __init__(self, rule, ctx):
        super().__init__(rule, ctx)
        self._plans: List[Dict[int, List[tuple]]] = []
        self._reduced: List[Set[str]] = []  # loaders whose sums this function reduces
        self._defs: List[cst.CSTNode] = []  # the functions the visit is in (the module at the bottom)
        self._starts: Dict[int, tuple] = {}  # id(for loop) -> (names started at numbers, at empty lists) before it
        self._own_reduction: List[bool] = []  # per function: the script reduces across ranks itself
        self._gather: Dict[int, str] = {}  # id(statement part) -> the kind of value it adds (_eval_metrics)
        self._loop_says: Dict[int, tuple] = {}  # id(for loop) -> ("report" | "todo", message)

    def qn(self, node):
        return qualified_names(self, node)

    def _loaders(self) -> Set[str]:
        scope = self.scope
        loaders = set(self.facts.loader_params.get(scope, set()))
        if scope == self.facts.setup_scope or (self.facts.setup_scope == MAIN_GUARD and scope == MODULE):
            loaders |= set(self.facts.loaders)
        here = id(self._defs[-1]) if self._defs else None
        if self.facts.setup_scope in (MODULE, MAIN_GUARD) and hasattr(self, "flow"):
            # a function that loops over a module-level loader by its global name (loader_flow follows it there)
            loaders |= {n for n in self.facts.loaders if (here, n) in self.flow.sources}
        # Fabric: a loader only evaluated is not sharded (every rank sees the whole set): nothing to reduce
        return {n for n in loaders if not (self.unsharded and (here, n) in self.flow.sources
                                           and self.flow.sources[(here, n)] <= self.unsharded)}

    def _evaluation_flow(self, module: cst.Module) -> None:
        """Which loops over set-up loaders evaluate (no training in them), and, on Fabric, which loaders are only
        evaluated, wherever they go in the module: those are set up unsharded (PTM106 reads the fact)."""
        self.flow = em.loader_flow(module, self.facts)
        self.eval_sources: Dict[int, Set[str]] = {}  # id(evaluation loop) -> loaders it iterates
        training = set()
        for loader, loops in self.flow.loops.items():
            for loop in loops:
                if em.trains(loop, self.facts, module):
                    training.add(loader)
                else:
                    self.eval_sources.setdefault(id(loop), set()).add(loader)
        self.unsharded: Set[str] = set()
        self.announced: Set[str] = set()
        if self.ctx.target == "fabric" and self.in_reach_of_setup():
            # a loader the script already sets up (by hand, or an earlier run) keeps its setup line; one set up
            # unsharded already counts as such, without a word
            calls = m.findall(module, m.Call(func=m.Attribute(attr=m.Name("setup_dataloaders") | m.Name("prepare"))))
            set_up = {dotted(a.value) for call in calls for a in call.args if a.keyword is None}
            whole = {dotted(a.value) for call in calls for a in call.args if a.keyword is None and any(
                k.keyword is not None and k.keyword.value == "use_distributed_sampler" and dotted(k.value) == "False"
                for k in call.args)}
            only = {ld for ld in self.flow.loops if ld not in training and ld not in self.flow.unknown
                    and ld not in set_up and not any(self._reduces_there(loop) for loop in self.flow.loops[ld])}
            changed = True
            while changed:  # a name fed by a loader that stays sharded keeps its partners sharded too
                changed = False
                for srcs in self.flow.sources.values():
                    if srcs & only and srcs - only:
                        only -= srcs
                        changed = True
            self.unsharded = only | whole
            self.announced |= whole
            self.facts.unsharded_loaders = set(only)
        self.flags = rank_flags(module, self.qn, self.facts.fw)
        self.called_under_guard: Set[str] = set()
        for guard in m.findall(module, m.If(), metadata_resolver=self):
            if guard_parts(guard.test, self.qn, self.facts.fw, self.flags) or \
                    guard_parts(guard.test, self.qn, f"self.{self.facts.fw}", self.flags):
                for call in m.findall(guard.body, m.Call()):
                    name = dotted(call.func)
                    if name:
                        self.called_under_guard.add(name.rsplit(".", 1)[-1])

    def _reduces_there(self, loop: cst.For) -> bool:
        """The function around the loop reduces across ranks itself (all_reduce, gather, ...): its sums are meant
        to be per shard, so the loader stays sharded."""
        scope = self.flow.scope_of.get(id(loop))
        body = scope.body.body if isinstance(scope, cst.FunctionDef) else getattr(scope, "body", [])
        return reduces_itself(body)

    def in_reach_of_setup(self) -> bool:
        return self.facts.setup_scope is not None

    def _under_rank_guard(self) -> bool:
        if any(isinstance(s, cst.If) and guard_parts(s.test, self.qn, self.fw, self.flags) is not None
               for s in self._stmts[:-1]):
            return True
        return any(isinstance(d, cst.FunctionDef) and d.name.value in self.called_under_guard for d in self._defs)

    def visit_For(self, node: cst.For):
        srcs = self.eval_sources.get(id(node)) if hasattr(self, "eval_sources") else None
        if not srcs:
            return True
        loader = unwrap_loader_iter(node.iter)
        fw = self.fw
        numbers, lists = self._starts.get(id(node), (set(), set()))
        got = em.collected(node, numbers, lists)
        if self.ctx.target == "fabric":
            if srcs <= self.unsharded:
                new = sorted(srcs - self.announced)
                self.announced |= srcs
                if new:
                    self._loop_says[id(node)] = ("report", (
                        f"{', '.join(f'`{s}`' for s in new)} only evaluated: set up with use_distributed_sampler=False, "
                        f"so every rank evaluates the whole set and the metric is the one of a single process"))
            elif got.names and id(node) not in (self._plans[-1] if self._plans else {}) and \
                    not (self._own_reduction and self._own_reduction[-1]):
                self._loop_says[id(node)] = ("todo", (
                    f"{_listed(got.names)} collected over `{loader}`, which is sharded: each rank sees 1/world-size of "
                    f"it (the last shard padded with repeated samples): set it up with "
                    f"`use_distributed_sampler=False` where it is only evaluated, or all_gather what is collected and "
                    f"drop the padded duplicates"))
            return True
        if not got.names or (self._own_reduction and self._own_reduction[-1]):
            return True
        if self._plans:
            self._plans[-1].pop(id(node), None)  # the evaluation's own plan replaces the len(dataset) one
        if self._reduced:
            self._reduced[-1].add(loader)
        why = None
        if self._under_rank_guard():
            why = (f"this evaluation runs on the main process only, but `{loader}` is prepared, so it sees "
                   f"1/world-size of the set: run it on every rank, gathering what it collects with "
                   f"`{fw}.gather_for_metrics`, or leave this loader unprepared")
        elif not self.in_fw_scope():
            why = (f"{_listed(got.names)} collected over the prepared `{loader}`, out of reach of the accelerator: each "
                   f"rank sees 1/world-size of the set; gather what each batch adds with `gather_for_metrics`")
        elif got.unknown:
            why = (f"{_listed(got.unknown)} collected over the prepared `{loader}` in a way pt-migrate cannot tell "
                   f"how the metric is formed from: each rank sees 1/world-size of the set; gather the per-sample "
                   f"values each batch adds with `{fw}.gather_for_metrics(...)` (it drops the samples repeated to "
                   f"even out the shards) before summing or concatenating")
        if why:
            self._loop_says[id(node)] = ("todo", why)
            return True
        self._gather.update(got.kinds)
        self._loop_says[id(node)] = ("report", (
            f"{_listed(got.names)} gathered across ranks with `{fw}.gather_for_metrics` (it drops the samples "
            f"repeated to even out the shards): the evaluation over `{loader}` counts every sample once"))
        return True

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call):
        kind = self._gather.get(id(original_node))
        if kind is not None:
            updated_node = em.gathered_form(kind, updated_node, self.fw)
        return self._dataset_len(original_node, updated_node)

    def visit_FunctionDef(self, node: cst.FunctionDef):
        super().visit_FunctionDef(node)
        self._defs.append(node)
        for loop, numbers, lists in em.loops_with_starts(node.body.body):
            self._starts[id(loop)] = (numbers, lists)
        self._own_reduction.append(reduces_itself(node.body.body))
        gather = self.ctx.target == "accelerate"
        plan = plan_reductions(node.body.body, self._loaders(), gather) if self.in_fw_scope() and self.scope else {}
        self._plans.append(plan)
        loaders = self._loaders() if reduces_itself(node.body.body) else set()
        self._reduced.append(loaders | {unwrap_loader_iter(f.iter) for f in m.findall(node.body, m.For()) if id(f) in plan})
        return True

    def leave_FunctionDef(self, original_node, updated_node):
        self._plans.pop()
        self._reduced.pop()
        self._defs.pop()
        self._own_reduction.pop()
        return super().leave_FunctionDef(original_node, updated_node)

    def visit_Module(self, node: cst.Module):
        self._evaluation_flow(node)
        self._defs.append(node)
        stmts = [s for s in node.body if not isinstance(s, (cst.FunctionDef, cst.ClassDef))]
        for loop, numbers, lists in em.loops_with_starts(stmts):
            self._starts[id(loop)] = (numbers, lists)
        self._own_reduction.append(reduces_itself(stmts))
        guard = [s for s in stmts if isinstance(s, cst.If) and s.body and _is_guard(s)]
        plan: Dict[int, List[tuple]] = {}
        if self.facts.setup_scope in (MODULE, MAIN_GUARD):
            loaders = self._loaders()  # a loader set up unsharded (Fabric) has nothing to reduce
            gather = self.ctx.target == "accelerate"
            plan = plan_reductions(stmts, loaders, gather)
            for g in guard:
                plan.update(plan_reductions(g.body.body, loaders, gather))
        self._plans.append(plan)
        loaders = set(self.facts.loaders) if reduces_itself(stmts) else set()
        self._reduced.append(loaders | {unwrap_loader_iter(f.iter) for s in stmts for f in m.findall(s, m.For())
                                        if id(f) in plan})
        return True

    def _gathered_augs(self) -> Set[int]:
        return {id(a) for plan in self._plans[-1:] for entries in plan.values() for _, _, augs in entries
                for a in augs} if self.ctx.target == "accelerate" else set()

    def leave_AugAssign(self, original_node: cst.AugAssign, updated_node: cst.AugAssign):
        kind = self._gather.get(id(original_node))
        if kind is not None:
            return em.gathered_form(kind, updated_node, self.fw)
        if id(original_node) not in self._gathered_augs():
            return updated_node
        new = gathered(updated_node.value, self.fw)
        return updated_node if new is None else updated_node.with_changes(value=new)

    def leave_For(self, original_node: cst.For, updated_node: cst.For):
        said = self._loop_says.get(id(original_node))
        if said is not None:
            kind, message = said
            if kind == "todo":
                self.todo(original_node, message)
            else:
                self.report(original_node, message, True)
        names = self._plans[-1].get(id(original_node)) if self._plans else None
        if not names:
            return updated_node
        fw = self.fw
        loader = unwrap_loader_iter(original_node.iter)
        listed = ", ".join(f"`{n}`" for n, _, _ in names)
        if self.ctx.target == "accelerate":
            self.report(original_node, f"{listed} summed over every rank's samples with `{fw}.gather_for_metrics` "
                                       f"(which drops the padding): `len({loader}.dataset)` counts them all", True)
            return updated_node
        stmts = [updated_node]
        for name, number, _ in names:
            code = f'{name} = {fw}.all_reduce(torch.tensor({name}, device={fw}.device), reduce_op="sum")'
            if number:
                code += ".item()"
            else:
                code = code.replace("torch.tensor(", "torch.as_tensor(", 1)
            stmts.append(cst.parse_statement(code))
        self.ctx.imports.add("torch")
        self.report(original_node, f"{listed} summed over the ranks after the loop: `len({loader}.dataset)` counts "
                                   f"every rank's samples (the last shard is padded with repeated samples when the "
                                   f"dataset does not split evenly)", True)
        return cst.FlattenSentinel(stmts)

    def _dataset_len(self, original_node: cst.Call, updated_node: cst.Call):
        loader = _dataset_len_loader(original_node)
        if loader is None:
            return updated_node
        if loader in self._loaders() and not (self._reduced and loader in self._reduced[-1]):
            fix = ("all_reduce the metric and its count" if self.ctx.target == "fabric"
                   else "use accelerator.gather_for_metrics")
            self.todo(original_node, f"`len({loader}.dataset)` counts all ranks' samples but this rank sees only its "
                                     f"shard: {fix}")
        return updated_node


def _listed(names) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _is_guard(stmt) -> bool:
    from migrator.analysis import is_main_guard
    return is_main_guard(stmt)


class ShardedMetric(Rule):
    code = "PTM112"
    name = "sharded-metric"
    triggers = ("dataset",)
    examples = [
        Example(  # Fabric: the loader's setup line gains use_distributed_sampler=False (written by PTM106)
            before='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\n\ndef evaluate(model, loader):\n    correct, total, preds = 0, 0, []\n    for x, y in loader:\n        pred = model(x).argmax(1)\n        correct += (pred == y).sum().item()\n        total += y.size(0)\n        preds.append(pred.cpu())\n    return correct / total, torch.cat(preds)\n\n\ndef main():\n    model = torch.nn.Linear(4, 2)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loader = DataLoader(TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,))), batch_size=4)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n    print(evaluate(model, loader))\n',
            fabric=None,
            accelerate='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\n\ndef evaluate(model, loader):\n    correct, total, preds = 0, 0, []\n    for x, y in loader:\n        pred = model(x).argmax(1)\n        correct += accelerator.gather_for_metrics(pred == y).sum().item()\n        total += accelerator.gather_for_metrics(y).size(0)\n        preds.append(accelerator.gather_for_metrics(pred).cpu())\n    return correct / total, torch.cat(preds)\n\n\ndef main():\n    model = torch.nn.Linear(4, 2)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loader = DataLoader(TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,))), batch_size=4)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n    print(evaluate(model, loader))\n',
        ),
        Example(  # the loader is also trained on, so it stays sharded
            before='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef test(model, loader):\n    correct = 0\n    for x, y in loader:\n        correct += (model(x).argmax(1) == y).sum().item()\n    print(correct / len(loader.dataset))\n\n\ndef main():\n    model = torch.nn.Linear(4, 2)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loader = DataLoader(TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,))), batch_size=4)\n    for x, y in loader:\n        model(x).sum().backward()\n        optimizer.step()\n    test(model, loader)\n',
            fabric='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef test(model, loader):\n    correct = 0\n    for x, y in loader:\n        correct += (model(x).argmax(1) == y).sum().item()\n    correct = fabric.all_reduce(torch.tensor(correct, device=fabric.device), reduce_op="sum").item()\n    print(correct / len(loader.dataset))\n\n\ndef main():\n    model = torch.nn.Linear(4, 2)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loader = DataLoader(TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,))), batch_size=4)\n    for x, y in loader:\n        model(x).sum().backward()\n        optimizer.step()\n    test(model, loader)\n',
            accelerate='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef test(model, loader):\n    correct = 0\n    for x, y in loader:\n        correct += accelerator.gather_for_metrics(model(x).argmax(1) == y).sum().item()\n    print(correct / len(loader.dataset))\n\n\ndef main():\n    model = torch.nn.Linear(4, 2)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loader = DataLoader(TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,))), batch_size=4)\n    for x, y in loader:\n        model(x).sum().backward()\n        optimizer.step()\n    test(model, loader)\n',
        ),
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
