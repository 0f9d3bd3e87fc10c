"""PTM151's metric reduction: a training loss the main process logs is the mean over ranks, where that is safe.

A log statement (a writer's method, a line written to a log file, `wandb.log`, a write-only `with open` block, a
statement that fills a container the main process later dumps: `stats["loss"].append(loss.item())` before
`json.dump(stats, f)`) that writes `loss.item()` of a loss every rank backpropagates gets, right before it (before the main-process guard, on
every rank), `loss_mean = fabric.all_reduce(loss.detach().clone(), reduce_op="mean")` /
`loss_mean = accelerator.reduce(loss.detach(), reduction="mean")`, and logs `loss_mean.item()`.

Framework facts relied on: both calls are collectives every rank must reach (inside `if fabric.is_global_zero:`
they would hang); Fabric's all_reduce works in place on its input (hence the clone: the script's `loss` keeps its
own value) and returns the input itself on one process; Accelerate's reduce clones and returns the clone unchanged
on one process. So one process logs the same number as before.

Safe only when the statement runs exactly when the loss's backward does, which DDP already makes every rank run:
the same function, after the backward, with nothing between them that leaves the loop or the function
(`break`, `continue`, `return`, `raise`) or rebinds the loss, and no condition around the statement that the
backward is not under, except `with` blocks and `if` tests on step or epoch counters, the enclosing loops'
indices and settings (`if step % 10 == 0:`, `if i % args.log_interval == 0:`), none of them named for a value of
the data (`best_loss`, `logits`). Anything else keeps the value and says that the main process logs its own shard's.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Set, Tuple

import libcst as cst

from migrator import matching as m
from migrator import side_effects as se
from migrator.names import dotted

# names (or last attributes) a test may read and still be the same on every rank: counters and settings
UNIFORM_WORDS = ("step", "epoch", "iter", "interval", "every", "freq", "log", "print", "idx", "global", "period",
                 "num_", "max_", "eval", "save", "debug", "verbose", "accum")
# ... unless the name also says it holds a value of the data (`logits`, `best_loss`, `val_acc`)
DATA_WORDS = ("loss", "logit", "pred", "score", "metric", "grad_norm", "nan", "best", "accuracy", "output")
SETTINGS_ROOTS = ("args", "config", "cfg", "opt", "opts", "hparams", "hp", "params", "flags", "FLAGS")
_EXITS = (cst.Break, cst.Continue, cst.Return, cst.Raise)

Ancestors = Tuple[Tuple[cst.CSTNode, str], ...]


def _code(node: cst.CSTNode) -> str:
    return cst.Module([]).code_for_node(node)


def _blocks(stmt: cst.CSTNode) -> List[Tuple[str, list]]:
    """(label, statements) of each block right inside a compound statement; an `elif` is a statement of 'orelse'."""
    out = []
    body = getattr(stmt, "body", None)
    if isinstance(body, cst.IndentedBlock):
        out.append(("body", list(body.body)))
    orelse = getattr(stmt, "orelse", None)
    if isinstance(orelse, cst.If):
        out.append(("orelse", [orelse]))
    elif isinstance(orelse, cst.Else):
        out.append(("orelse", list(orelse.body.body)))
    for handler in getattr(stmt, "handlers", ()):
        out.append(("except", list(handler.body.body)))
    final = getattr(stmt, "finalbody", None)
    if isinstance(final, cst.Finally):
        out.append(("finally", list(final.body.body)))
    return out


class Index:
    """Every statement of a module with its scope (the function, class or module whose code it is), the compound
    statements it is inside within that scope, and its place in source order."""

    def __init__(self, module: cst.Module):
        self.where: Dict[int, Tuple[cst.CSTNode, Ancestors, int]] = {}
        self.order: List[cst.CSTNode] = []
        self.names: Set[str] = {n.value for n in m.findall(module, m.Name())}
        self._walk(module.body, module, ())

    def _walk(self, body, scope, ancestors: Ancestors) -> None:
        for stmt in body:
            self.where[id(stmt)] = (scope, ancestors, len(self.order))
            self.order.append(stmt)
            if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
                self._walk(stmt.body.body if isinstance(stmt.body, cst.IndentedBlock) else [], stmt, ())
                continue
            for label, inner in _blocks(stmt):
                self._walk(inner, scope, ancestors + ((stmt, label),))

    def scope(self, stmt) -> Optional[cst.CSTNode]:
        found = self.where.get(id(stmt))
        return found[0] if found else None

    def backwards(self, scope, name: str) -> List[cst.CSTNode]:
        """The statements of the scope that backpropagate `name`: `name.backward()`, `fabric.backward(name)`,
        `accelerator.backward(name)`, `scaler.scale(name).backward()`."""
        out = []
        for stmt in self.order:
            if not isinstance(stmt, cst.SimpleStatementLine) or self.where[id(stmt)][0] is not scope:
                continue
            for call in m.findall(stmt, m.Call()):
                if not (isinstance(call.func, cst.Attribute) and call.func.attr.value == "backward"):
                    continue
                recv = call.func.value
                if isinstance(recv, cst.Call) and dotted(recv.func) and dotted(recv.func).endswith(".scale") \
                        and recv.args:
                    recv = recv.args[0].value
                first = call.args[0].value if call.args and call.args[0].keyword is None else None
                if dotted(recv) == name or (isinstance(first, cst.Name) and first.value == name):
                    out.append(stmt)
                    break
        return out


def _data_word(word: str) -> bool:
    w = word.lower()
    return any(d in w for d in DATA_WORDS) or w == "acc" or w.startswith("acc_") or w.endswith("_acc")


def loop_counters(ancestors: Ancestors) -> Set[str]:
    """Names that count the iterations of the enclosing loops: `i` of `for i in range(n)` and of
    `for i, batch in enumerate(loader)` (every rank runs as many batches: the sampler pads its shard)."""
    out: Set[str] = set()
    for node, _ in ancestors:
        if not (isinstance(node, cst.For) and isinstance(node.iter, cst.Call)):
            continue
        func = dotted(node.iter.func)
        if func == "range" and isinstance(node.target, cst.Name):
            out.add(node.target.value)
        elif func == "enumerate":
            target = node.target
            first = target.elements[0].value if isinstance(target, (cst.Tuple, cst.List)) and target.elements else None
            if isinstance(first, cst.Name):
                out.add(first.value)
    return out


def uniform_test(test: cst.BaseExpression, counters: Set[str] = frozenset()) -> bool:
    """A test every rank answers alike: counters (`counters`: the enclosing loops'), settings and constants compared
    or combined, no call, no rank."""
    if se.rankish(test):
        return False
    for node in m.findall(test, m.Call() | m.Subscript() | m.Lambda() | m.Await()):
        return False
    leaves = []

    def visit(node):
        if isinstance(node, cst.Attribute):
            leaves.append(node)
            return
        if isinstance(node, cst.Name):
            leaves.append(node)
            return
        for child in node.children:
            visit(child)

    visit(test)
    for leaf in leaves:
        if isinstance(leaf, cst.Name) and leaf.value in ("True", "False", "None"):
            continue
        word = leaf.value if isinstance(leaf, cst.Name) else leaf.attr.value
        root = (dotted(leaf) or "").split(".")[0]
        if isinstance(leaf, cst.Name) and word in counters:
            continue
        if _data_word(word):
            return False
        if word.isupper() or any(w in word.lower() for w in UNIFORM_WORDS):
            continue
        if isinstance(leaf, cst.Attribute) and root in SETTINGS_ROOTS:
            continue
        return False
    return True


def logged_losses(stmt: cst.CSTNode, writer_call: bool) -> List[str]:
    """The names `x` of `x.item()` in the statement, and with `writer_call` a name passed as `add_scalar`'s value."""
    found: List[str] = []
    for call in m.findall(stmt, m.Call()):
        f = call.func
        if isinstance(f, cst.Attribute) and f.attr.value == "item" and isinstance(f.value, cst.Name) \
                and not call.args:
            found.append(f.value.value)
        elif writer_call and isinstance(f, cst.Attribute) and f.attr.value == "add_scalar" and len(call.args) > 1 \
                and isinstance(call.args[1].value, cst.Name) and call.args[1].keyword is None:
            found.append(call.args[1].value.value)
    return list(dict.fromkeys(found))


def why_not(index: Index, stmt: cst.CSTNode, name: str) -> Optional[str]:
    """None when `stmt` may log `name` reduced over ranks (see the module docstring), else why not, in words."""
    scope, ancestors, at = index.where[id(stmt)]
    before = [b for b in index.backwards(scope, name) if index.where[id(b)][2] < at]
    if not before:
        return f"`{name}` is not backpropagated before it in the same function"
    back = before[-1]
    shared = 0
    b_anc = index.where[id(back)][1]
    while shared < min(len(ancestors), len(b_anc)) and ancestors[shared] == b_anc[shared]:
        shared += 1
    counters = loop_counters(ancestors)
    for node, label in ancestors[shared:]:
        if isinstance(node, cst.If) and uniform_test(node.test, counters):
            continue
        if isinstance(node, cst.With) and not any(se.rankish(i.item) for i in node.items):
            continue
        head = _code(node).split("\n", 1)[0].strip()[:50]
        return f"it runs under `{head}`, which its backward does not"
    start = index.where[id(back)][2]
    for between in index.order[start + 1:at]:
        if index.where[id(between)][0] is not scope:
            continue
        if isinstance(between, cst.SimpleStatementLine) and any(isinstance(s, _EXITS) for s in between.body):
            return f"`{_code(between).strip()[:40]}` between its backward and it may skip it on some ranks"
        if _binds(between, name):
            return f"`{name}` is bound again between its backward and it"
    return None


def _binds(stmt: cst.CSTNode, name: str) -> bool:
    if isinstance(stmt, cst.SimpleStatementLine):
        for small in stmt.body:
            targets = []
            if isinstance(small, cst.Assign):
                targets = [t.target for t in small.targets]
            elif isinstance(small, (cst.AugAssign, cst.AnnAssign)):
                targets = [small.target]
            if any(isinstance(n, cst.Name) and n.value == name for t in targets for n in m.findall(t, m.Name())) \
                    or any(isinstance(t, cst.Name) and t.value == name for t in targets):
                return True
        return False
    if isinstance(stmt, cst.For):
        return any(n.value == name for n in m.findall(stmt.target, m.Name())) or (
            isinstance(stmt.target, cst.Name) and stmt.target.value == name)
    if isinstance(stmt, cst.With):
        return any(i.asname is not None and dotted(i.asname.name) == name for i in stmt.items)
    return False


DUMP_FUNCS = {"json.dump", "pickle.dump", "yaml.dump", "yaml.safe_dump"}
FILL_METHODS = ("append", "extend", "insert", "update", "add", "setdefault")


def _root(expr: cst.CSTNode) -> Optional[str]:
    """The name a container expression starts from: `stats` of `stats["loss"]`, `self.hist` of `self.hist[k]`."""
    while isinstance(expr, (cst.Subscript, cst.Call)):
        expr = expr.value if isinstance(expr, cst.Subscript) else expr.func
    return dotted(expr)


def dumped_containers(index: "Index", qn) -> Set[Tuple[int, str]]:
    """(id(scope), name) of each container the module dumps to a file: `json.dump(stats, f)`, `pickle.dump(h, f)`."""
    out: Set[Tuple[int, str]] = set()
    for stmt in index.order:
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        for call in m.findall(stmt, m.Call()):
            if qn(call.func) & DUMP_FUNCS and call.args and call.args[0].keyword is None:
                name = _root(call.args[0].value)
                if name:
                    out.add((id(index.scope(stmt)), name))
    return out


def filled(stmt: cst.SimpleStatementLine) -> Optional[str]:
    """The container a one-line statement fills with values, or None: `stats["loss"].append(loss.item())`,
    `history.append({...})`, `stats["loss"] = loss.item()`, `stats["loss"] += loss.item()`."""
    if len(stmt.body) != 1:
        return None
    small = stmt.body[0]
    if isinstance(small, cst.Expr) and isinstance(small.value, cst.Call) and isinstance(small.value.func, cst.Attribute) \
            and small.value.func.attr.value in FILL_METHODS:
        return _root(small.value.func.value)
    if isinstance(small, cst.Assign) and len(small.targets) == 1 and isinstance(small.targets[0].target, cst.Subscript):
        return _root(small.targets[0].target)
    if isinstance(small, cst.AugAssign) and isinstance(small.target, cst.Subscript):
        return _root(small.target)
    return None


def reduction(target: str, fw: str, name: str, new: str) -> cst.SimpleStatementLine:
    """`loss_mean = fabric.all_reduce(loss.detach().clone(), reduce_op="mean")` (Fabric reduces in place: the clone
    keeps `loss`), or `loss_mean = accelerator.reduce(loss.detach(), reduction="mean")` (it clones itself)."""
    if target == "fabric":
        return cst.parse_statement(f'{new} = {fw}.all_reduce({name}.detach().clone(), reduce_op="mean")\n')
    return cst.parse_statement(f'{new} = {fw}.reduce({name}.detach(), reduction="mean")\n')


class Rename(cst.CSTTransformer):
    """`x.item()` -> `x_mean.item()` and `add_scalar(tag, x, ...)` -> `add_scalar(tag, x_mean, ...)`."""

    def __init__(self, names: Dict[str, str]):
        super().__init__()
        self.names = names

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:
        f = updated_node.func
        if isinstance(f, cst.Attribute) and f.attr.value == "item" and isinstance(f.value, cst.Name) \
                and f.value.value in self.names and not updated_node.args:
            return updated_node.with_changes(func=f.with_changes(value=cst.Name(self.names[f.value.value])))
        if isinstance(f, cst.Attribute) and f.attr.value == "add_scalar" and len(updated_node.args) > 1:
            arg = updated_node.args[1]
            if isinstance(arg.value, cst.Name) and arg.value.value in self.names and arg.keyword is None:
                args = list(updated_node.args)
                args[1] = arg.with_changes(value=cst.Name(self.names[arg.value.value]))
                return updated_node.with_changes(args=args)
        return updated_node
