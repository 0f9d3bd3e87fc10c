"""PTM141 accumulate: Accelerate's own gradient accumulation, where it is provably the script's.

What it does: a loop `for i, batch in enumerate(loader)` over a prepared loader, whose loss is divided by k
(`loss = ... / k`, `loss /= k` or `(loss / k).backward()`) and whose optimizer steps and zeroes only under
`if (i + 1) % k == 0 or (i + 1) == len(loader):` (or the same test spelled otherwise: `i == len(loader) - 1`,
`enumerate(loader, 1)` with `i`), becomes `with accelerator.accumulate(model):` around the forward, backward
and step, and `Accelerator(gradient_accumulation_steps=k)`. The `/ k` goes; `loss.item() * k` (and `loss * k`)
become `loss.item()` (`loss`). A guard holding only clipping, `optimizer.step()` and `optimizer.zero_grad()`
goes: the steps run unguarded (the prepared optimizer skips them) and clipping stays under
`if accelerator.sync_gradients:`. A guard holding anything else (a scheduler step, a print, a step counter)
stays as `if accelerator.sync_gradients:`, which is true exactly on the stepping micro-steps. `enumerate`
goes when the counter has no other use.

Why: accelerate 1.15 divides every `accelerator.backward` loss by k, skips the prepared optimizer's step and
zero_grad unless gradients are synced, and syncs on every k-th `accumulate` call and at the end of the
prepared loader, where its count restarts. That is the guard above and nothing else, so the rewrite is
made only when all of these hold: the loader is prepared and the counter counts its batches from the start
of each pass (no `break`/`continue` in the loop, no IterableDataset class in the file); k is an integer or
a module-level constant bound once, before the constructor runs; every backward of the file is in such a
loop, with the same k (the division applies to all of them); the loss variable has no other use than
those named above (its value changes by the factor k); the constructor has no accumulation settings yet.
A guard `(i + 1) % k == 0` alone is equivalent only when len(loader) % k == 0, which cannot be told: such
loops keep the user's logic (PTM139).

Example: `loss = criterion(model(x), y) / K; loss.backward(); if (i + 1) % K == 0 or i + 1 == len(loader):
optimizer.step(); optimizer.zero_grad()` -> `with accelerator.accumulate(model): loss = criterion(model(x), y);
accelerator.backward(loss); optimizer.step(); optimizer.zero_grad()`.

Fabric form: none: Fabric has no accumulation of its own; PTM139 adds `no_backward_sync(enabled=...)`.
Accelerate form: `Accelerator(gradient_accumulation_steps=k)` (PTM100 writes it; an existing constructor is
edited) and `with accelerator.accumulate(model):`. At module level the value is written as the number,
since the constructor may come before the constant there.

Fix safety: safe.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import libcst as cst

from migrator import matching as m
from migrator.analysis import MAIN_GUARD, MODULE
from migrator.rules import _accelerator_args as args
from migrator.rules._accum import CLIPS, Shape, bare, calls, code, find, loss_of
from migrator.matching import Visitor
from migrator.rules.base import Context, Example, Rule, RuleTransformer

KW = "gradient_accumulation_steps"


@dataclass
class Plan:
    shape: Shape
    k: str
    removes: int = -1  # index of a statement that only divided the loss (`loss /= k`), removed
    drop_counter: bool = False
    edits: Dict[int, cst.CSTNode] = field(default_factory=dict)  # id(original node) -> replacement


def _linear(e, counter, loader):
    """(counter coefficient, len(loader) coefficient, constant) of a sum of those, else None."""
    e = bare(e)
    if isinstance(e, cst.Integer):
        return 0, 0, int(e.value, 0)
    if isinstance(e, cst.Name) and e.value == counter:
        return 1, 0, 0
    if m.matches(e, m.Call(func=m.Name("len"), args=[m.Arg(keyword=None)])) and code(e.args[0].value) == loader:
        return 0, 1, 0
    if isinstance(e, cst.BinaryOperation) and isinstance(e.operator, (cst.Add, cst.Subtract)):
        a, b = _linear(e.left, counter, loader), _linear(e.right, counter, loader)
        if a is None or b is None:
            return None
        sign = 1 if isinstance(e.operator, cst.Add) else -1
        return tuple(x + sign * y for x, y in zip(a, b))
    return None


def sync_guard_k(test, shape: Shape) -> Optional[cst.BaseExpression]:
    """k when the guard is `n % k == 0 or n == len(loader)` with n the 1-based micro-step number."""
    test = bare(test)
    if not m.matches(test, m.BooleanOperation(operator=m.Or())):
        return None
    number = (1, 0, 1 - shape.first)
    k = end = None
    for part in (bare(test.left), bare(test.right)):
        if not m.matches(part, m.Comparison(comparisons=[m.ComparisonTarget(operator=m.Equal())])):
            return None
        left, right = bare(part.left), bare(part.comparisons[0].comparator)
        mod = next((s for s, o in ((left, right), (right, left)) if m.matches(s, m.BinaryOperation(operator=m.Modulo()))
                    and m.matches(bare(o), m.Integer("0"))), None)
        if mod is not None:
            if _linear(mod.left, shape.counter, shape.loader) == number:
                k = bare(mod.right)
            continue
        a, b = _linear(left, shape.counter, shape.loader), _linear(right, shape.counter, shape.loader)
        if a is not None and b is not None:
            diff = tuple(x - y for x, y in zip(a, b))
            end = diff in ((1, -1, 1 - shape.first), (-1, 1, shape.first - 1))
    return k if end and isinstance(k, (cst.Integer, cst.Name)) else None


def names_in(node: cst.CSTNode, name: str) -> List[cst.Name]:
    """Uses of a variable: Name nodes, not attribute names or keywords."""
    out: List[cst.Name] = []

    class V(Visitor):
        def visit_Attribute(self, n):
            n.value.visit(self)
            return False

        def visit_Arg(self, n):
            n.value.visit(self)
            return False

        def visit_Name(self, n):
            if n.value == name:
                out.append(n)

    node.visit(V())
    return out


def _loss_like(e, loss: str) -> bool:
    """`loss`, `loss.item()`, `loss.detach().item()`, ..."""
    while m.matches(e, m.Call(func=m.Attribute(attr=m.Name("item") | m.Name("detach") | m.Name("cpu")
                                                 | m.Name("float")), args=[])):
        e = e.func.value
    return m.matches(e, m.Name(loss))


class _Survey(RuleTransformer):
    """First pass: a plan for each loop that can be rewritten, or none at all when the file forbids it."""

    def __init__(self, rule, ctx, module):
        super().__init__(rule, ctx)
        self.module, self.scopes, self.plans = module, [module], {}

    def visit_FunctionDef(self, node):
        self.scopes.append(node)
        return super().visit_FunctionDef(node)

    def leave_FunctionDef(self, original_node, updated_node):
        self.scopes.pop()
        return super().leave_FunctionDef(original_node, updated_node)

    def visit_For(self, node: cst.For):
        shape, _ = find(node, self.facts, self.fw)
        if shape is not None and self.in_fw_scope() and self.scope is not None:
            plan = self.plan(node, shape)
            if plan is not None:
                self.plans[id(node)] = plan
        return True

    def loaders(self):
        f = self.facts
        out = set(f.loader_params.get(self.scope, set()))
        if self.scope == f.setup_scope or (f.setup_scope == MAIN_GUARD and self.scope == MODULE):
            out |= set(f.loaders)
        return out

    def plan(self, loop: cst.For, shape: Shape) -> Optional[Plan]:
        if shape.loader not in self.loaders() or loop.orelse is not None:
            return None
        if m.findall(loop.body, m.Break() | m.Continue() | m.Return() | m.Yield()):
            return None
        body, guard = shape.body, shape.body[shape.guard]
        k = sync_guard_k(guard.test, shape)
        if k is None:
            return None
        plan = Plan(shape, code(k))
        outside = body[:shape.guard] + body[shape.guard + 1:]
        if any(self.is_clip(c) for s in outside for c in m.findall(s, m.Call())):
            return None  # clipping every micro-step would clip partial, unsynced gradients
        if not self.undivide(plan):
            return None
        uses = names_in(self.scopes[-1], shape.counter)
        header = names_in(loop.target, shape.counter) + names_in(guard.test, shape.counter)
        plan.drop_counter = len(uses) == len(header) and m.matches(loop.iter, m.Call(func=m.Name("enumerate")))
        return plan

    def is_clip(self, call: cst.Call) -> bool:
        return (m.matches(call.func, m.Attribute() | m.Name())
                and (code(call.func).rsplit(".", 1)[-1] in CLIPS))

    def undivide(self, plan: Plan) -> bool:
        """Plan the removal of `/ k` and of `* k` where the loss is shown; False when that cannot be done."""
        shape, k = plan.shape, plan.k
        stmt = shape.body[shape.backward]
        loss = loss_of(calls(stmt, "backward")[0], self.fw)

        def divided(e):
            return m.matches(bare(e), m.BinaryOperation(operator=m.Divide())) and code(bare(bare(e).right)) == k

        if loss is not None and divided(loss):
            plan.edits[id(loss)] = bare(bare(loss).left)  # (loss / k).backward(): the loss keeps its value
            return True
        if not isinstance(bare(loss), cst.Name):
            return False
        name = bare(loss).value
        binds = [i for i, s in enumerate(shape.body[:shape.backward])
                 if m.findall(s, m.AssignTarget(m.Name(name)) | m.AugAssign(target=m.Name(name)))]
        if not binds or not all(isinstance(shape.body[i], cst.SimpleStatementLine) for i in binds):
            return False
        last = shape.body[binds[-1]]
        small = last.body[0] if len(last.body) == 1 else None
        # what these statements read of the loss is read before the division, as before
        allowed = [n for i in binds for n in names_in(shape.body[i], name)]
        if m.matches(small, m.AugAssign(operator=m.DivideAssign())) and code(bare(small.value)) == k:
            plan.removes = binds[-1]
        elif m.matches(small, m.Assign(targets=[m.AssignTarget(m.Name(name))])) and divided(small.value):
            left = bare(bare(small.value).left)
            if m.matches(left, m.Name(name)):
                plan.removes = binds[-1]
            else:
                plan.edits[id(small)] = small.with_changes(value=left)
        else:
            return False
        allowed += names_in(stmt, name)
        for mul in m.findall(self.scopes[-1], m.BinaryOperation(operator=m.Multiply())):
            for this, other in ((mul.left, mul.right), (mul.right, mul.left)):
                if code(bare(other)) == k and _loss_like(bare(this), name):
                    plan.edits[id(mul)] = bare(this).with_changes(lpar=mul.lpar, rpar=mul.rpar)
                    allowed += names_in(this, name)
                    break
        allowed_ids = {id(n) for n in allowed}
        return all(id(n) in allowed_ids for n in names_in(self.scopes[-1], name))


def _kind(stmt: cst.BaseStatement, optimizer: str) -> str:
    if not m.matches(stmt, m.SimpleStatementLine(body=[m.Expr(m.Call(func=m.Attribute()))])):
        return "other"
    func = stmt.body[0].value.func
    if func.attr.value in ("step", "zero_grad") and code(func.value) == optimizer:
        return func.attr.value
    return "clip" if func.attr.value in CLIPS else "other"


class _Transformer(RuleTransformer):
    def __init__(self, rule, ctx, plans, ctor):
        super().__init__(rule, ctx)
        self.plans, self.ctor = plans, ctor
        self.edits = {i: new for p in plans.values() for i, new in p.edits.items()}

    def on_leave(self, original_node, updated_node):
        new = self.edits.get(id(original_node))
        if new is not None:
            updated_node = new
        return super().on_leave(original_node, updated_node)

    def leave_Call(self, original_node, updated_node):
        if self.ctor is not None and original_node is self.ctor[0]:
            return args.add_keywords(updated_node, {KW: self.ctor[1]})
        return updated_node

    def leave_For(self, original_node: cst.For, updated_node: cst.For):
        plan = self.plans.get(id(original_node))
        if plan is None:
            return updated_node
        s, fw = plan.shape, self.fw
        body = list(updated_node.body.body)
        start, guard_at = s.start, s.guard
        if plan.removes >= 0:
            gone = body.pop(plan.removes)
            if plan.removes < start:
                start -= 1
            guard_at -= 1
            keep = [line for line in gone.leading_lines if line.comment is not None]
            nxt = body[plan.removes]
            body[plan.removes] = nxt.with_changes(leading_lines=keep + list(nxt.leading_lines))
        guard = body[guard_at]
        kinds = "".join(_kind(st, s.optimizer)[0] for st in guard.body.body)
        sync = cst.parse_expression(f"{fw}.sync_gradients")
        if re.fullmatch(r"c*sz", kinds):  # clipping, step, zero_grad: the prepared optimizer skips the last two
            *clips, step, zero = guard.body.body
            if clips:
                new_guard = [guard.with_changes(test=sync, body=guard.body.with_changes(body=clips)), step, zero]
            else:
                new_guard = [step.with_changes(leading_lines=[*guard.leading_lines, *step.leading_lines]), zero]
        else:
            new_guard = [guard.with_changes(test=sync)]
        region = body[start:guard_at] + new_guard
        lead = region[0].leading_lines
        region[0] = region[0].with_changes(leading_lines=[])
        block = cst.With(items=[cst.WithItem(cst.parse_expression(f"{fw}.accumulate({s.model})"))],
                         body=cst.IndentedBlock(body=region), leading_lines=lead)
        body = body[:start] + [block] + body[guard_at + 1:]
        loop = updated_node.with_changes(body=updated_node.body.with_changes(body=body))
        if plan.drop_counter:
            loop = loop.with_changes(target=bare(loop.target.elements[1].value), iter=loop.iter.args[0].value)
        self.report(original_node, f"Accelerate's own accumulation: `{fw}.accumulate({s.model})` and "
                                   f"`Accelerator({KW}={plan.k})`; the manual `/ {plan.k}` and step guard went "
                                   f"(the backward divides, the optimizer steps on every k-th micro-step and at the "
                                   f"end of the loader)", True)
        return loop


class Accumulate(Rule):
    code = "PTM141"
    name = "accumulate"
    targets = ("accelerate",)
    examples = [
        Example(
            before='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\nACCUMULATE = 4\n\n\ndef main():\n    loader = DataLoader(TensorDataset(torch.randn(40, 4), torch.randn(40, 1)), batch_size=4)\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    for i, (x, y) in enumerate(loader):\n        loss = torch.nn.functional.mse_loss(model(x), y) / ACCUMULATE\n        loss.backward()\n        if (i + 1) % ACCUMULATE == 0 or (i + 1) == len(loader):\n            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n            optimizer.step()\n            optimizer.zero_grad()\n    print(f"last loss {loss.item() * ACCUMULATE:.4f}")\n',
            fabric=None,
            accelerate='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\nACCUMULATE = 4\n\n\ndef main():\n    loader = DataLoader(TensorDataset(torch.randn(40, 4), torch.randn(40, 1)), batch_size=4)\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    for x, y in loader:\n        with accelerator.accumulate(model):\n            loss = torch.nn.functional.mse_loss(model(x), y)\n            loss.backward()\n            if accelerator.sync_gradients:\n                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n            optimizer.step()\n            optimizer.zero_grad()\n    print(f"last loss {loss.item():.4f}")\n',
        ),
        Example(
            before='import torch\nfrom accelerate import Accelerator\nfrom torch.utils.data import DataLoader, TensorDataset\n\n\ndef main():\n    accelerator = Accelerator()\n    loader = DataLoader(TensorDataset(torch.randn(40, 4), torch.randn(40, 1)), batch_size=4)\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2)\n    loader, model, optimizer = accelerator.prepare(loader, model, optimizer)\n    for i, (x, y) in enumerate(loader):\n        loss = torch.nn.functional.mse_loss(model(x), y)\n        accelerator.backward(loss / 2)\n        if (i + 1) % 2 == 0 or i == len(loader) - 1:\n            optimizer.step()\n            scheduler.step()\n            optimizer.zero_grad()\n            accelerator.print(f"step {i // 2} loss {loss.item():.4f}")\n',
            fabric=None,
            accelerate='import torch\nfrom accelerate import Accelerator\nfrom torch.utils.data import DataLoader, TensorDataset\n\n\ndef main():\n    accelerator = Accelerator(gradient_accumulation_steps=2)\n    loader = DataLoader(TensorDataset(torch.randn(40, 4), torch.randn(40, 1)), batch_size=4)\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2)\n    loader, model, optimizer = accelerator.prepare(loader, model, optimizer)\n    for i, (x, y) in enumerate(loader):\n        with accelerator.accumulate(model):\n            loss = torch.nn.functional.mse_loss(model(x), y)\n            accelerator.backward(loss)\n            if accelerator.sync_gradients:\n                optimizer.step()\n                scheduler.step()\n                optimizer.zero_grad()\n                accelerator.print(f"step {i // 2} loss {loss.item():.4f}")\n',
        ),
    ]

    def apply(self, wrapper, ctx: Context):
        # two passes: whether any loop may change depends on every loop of the file
        module = wrapper.module
        survey = _Survey(self, ctx, module)
        wrapper.visit(survey)
        plans = survey.plans
        where = args.slot(module, ctx.facts)
        ks = {p.k for p in plans.values()}
        if not plans or where is None or len(ks) != 1 or not _file_allows(module, ctx.fw, plans, where):
            return module
        value = args.value_code(module, where, cst.parse_expression(ks.pop()))
        if value is None:
            return module
        if where.call is None:
            ctx.facts.accelerator_kwargs[KW] = value
        ctor = (where.call, value) if where.call is not None else None
        return wrapper.visit(_Transformer(self, ctx, plans, ctor))


def _file_allows(module: cst.Module, fw: str, plans: dict, where: args.Slot) -> bool:
    """Every backward of the file is in a planned loop (the division applies to all), accumulation is not set
    up already, and no dataset class is iterable (its `len` would only be a hint)."""
    iterable = any(code(b.value).rsplit(".", 1)[-1] == "IterableDataset"
                   for c in m.findall(module, m.ClassDef()) for b in c.bases)
    return (not where.keywords & {KW, "gradient_accumulation_plugin", "**"} and not iterable
            and len(calls(module, "backward")) == len(plans) and not calls(module, "accumulate", {fw, f"self.{fw}"}))
