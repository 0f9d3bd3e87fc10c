"""Conditions whose value can differ between ranks (used by PTM136).

A collective (`fabric.save` ends with `fabric.barrier()`) under such a condition hangs: a rank that skips the
branch never reaches the barrier the others wait at. Every process runs the whole script, so a test is the same on
every rank only when it reads the same values there; these are the kinds that do not:
- the file system: `os.path.exists`, `Path(p).is_file()`, `glob.glob`, `os.listdir`, ... (rank 0 writes the
  file, rank 1 then finds it; each node may have its own disk);
- the clock: `time.time()`, `time.perf_counter()`, `datetime.now()`;
- the environment or the rank: `os.environ`, `os.getenv`, a rank or main-process flag;
- a value a rank computed from its own shard: a name that says it holds a value of the data (`val_loss`,
  `best_acc`, `score`), unless it was bound from a reduction across ranks (`fabric.all_reduce`,
  `accelerator.reduce`/`gather`, directly or through names bound from it);
- any name bound from one of the above (`elapsed = time.time() - start`);
- an `except` handler (a rank whose I/O raises takes it; the `try` body runs on every rank until one raises).
"""
from __future__ import annotations

import re
from typing import Dict, Optional, Set

import libcst as cst

from migrator import matching as m
from migrator import side_effects as se
from migrator.names import dotted
from migrator.rules._reduce_logged import DATA_WORDS, SETTINGS_ROOTS

FS_TAILS = ("glob", "iglob", "rglob", "listdir", "scandir", "iterdir", "getmtime", "getsize", "stat", "walk")
CLOCK_FUNCS = {"time.time", "time.time_ns", "time.perf_counter", "time.perf_counter_ns", "time.monotonic",
               "time.monotonic_ns", "time.process_time", "datetime.datetime.now", "datetime.datetime.today",
               "datetime.datetime.utcnow", "datetime.date.today"}
ENV_FUNCS = {"os.getenv", "os.environ.get"}
REDUCE_TAILS = ("all_reduce", "reduce", "gather", "all_gather", "broadcast", "gather_for_metrics", "reduce_mean")


def _call_reason(call: cst.Call, qn) -> Optional[str]:
    name = dotted(call.func) or (call.func.attr.value if isinstance(call.func, cst.Attribute) else "")
    q = qn(call.func)
    if se.exists_test(call) or any(name == t or name.endswith("." + t) for t in FS_TAILS):
        return f"a file-system check (`{name}`)"
    if q & CLOCK_FUNCS or name in ("time.time", "time.perf_counter", "time.monotonic", "datetime.now"):
        return f"the clock (`{name}`)"
    if q & ENV_FUNCS or name in ("os.getenv", "os.environ.get"):
        return f"the environment (`{name}`)"
    return None


def _direct_reason(expr: cst.CSTNode, qn) -> Optional[str]:
    """Why the expression itself reads something that differs between ranks (no names followed)."""
    for call in m.findall(expr, m.Call()):
        why = _call_reason(call, qn)
        if why:
            return why
    for node in m.findall(expr, m.Attribute() | m.Subscript()):
        if isinstance(node, cst.Subscript) and dotted(node.value) == "os.environ" or \
                isinstance(node, cst.Attribute) and dotted(node) == "os.environ":
            return "the environment (`os.environ`)"
    if se.rankish(expr):
        return "the rank"
    return None


CONSTANT_NAMES = {"torch", "np", "numpy", "math", "float", "int", "len", "range", "min", "max", "abs", "round",
                  "True", "False", "None", "inf"}


def _uniform_value(value: cst.CSTNode, uniform: Set[str]) -> bool:
    """A reduction across ranks, or a value made only of constants and names in `uniform`."""
    if _reduces(value):
        return True
    nodes = m.findall(value, m.Name() | m.Attribute())
    attrs = {id(n.attr) for n in nodes if isinstance(n, cst.Attribute)}
    return all(n.value in uniform or n.value in CONSTANT_NAMES
               for n in nodes if isinstance(n, cst.Name) and id(n) not in attrs)


def _reduces(expr: cst.CSTNode) -> bool:
    for call in m.findall(expr, m.Call()):
        if isinstance(call.func, cst.Attribute) and call.func.attr.value in REDUCE_TAILS:
            return True
    return False


def _bound(target: cst.CSTNode) -> Set[str]:
    """The names an assignment target binds: `x`, `self.x` (as `x`), each of `a, b`; not `d["k"]` (the dict's
    other entries keep their own values)."""
    if isinstance(target, cst.Name):
        return {target.value}
    if isinstance(target, cst.Attribute):
        return {target.attr.value}
    if isinstance(target, (cst.Tuple, cst.List)):
        return set().union(*(_bound(e.value) for e in target.elements)) if target.elements else set()
    return set()


def _root_name(expr: cst.CSTNode) -> Optional[str]:
    """`correct` of `correct[0]`, `hist` of `self.hist["loss"]`."""
    while isinstance(expr, cst.Subscript):
        expr = expr.value
    if isinstance(expr, cst.Attribute):
        return expr.attr.value
    return expr.value if isinstance(expr, cst.Name) else None


def _words(expr: cst.CSTNode) -> Set[str]:
    """The names the expression reads, each a plain name or the last part of an attribute."""
    out = set()
    for node in m.findall(expr, m.Name() | m.Attribute()):
        out.add(node.value if isinstance(node, cst.Name) else node.attr.value)
    return out


class Divergence:
    """What the module's assignments make of its names: those bound from a value that differs between ranks
    (name -> why) and those bound from a reduction across ranks (the same on every rank).

    Input: the module and the rule's qualified-name lookup. Scope-blind on purpose: a name bound from the clock
    anywhere counts everywhere, which only ever keeps a save off the collective path (still right for DDP)."""

    def __init__(self, module: cst.Module, qn):
        self.qn = qn
        self.names: Dict[str, str] = {}
        self.uniform: Set[str] = set()
        bindings = []
        for stmt in m.findall(module, m.Assign() | m.AugAssign() | m.AnnAssign()):
            value = getattr(stmt, "value", None)
            if value is None:
                continue
            targets = [t.target for t in stmt.targets] if isinstance(stmt, cst.Assign) else [stmt.target]
            bound = set().union(*(_bound(t) for t in targets))
            # `correct[0] += (pred == y).sum()` changes `correct`: it counts against its being the same everywhere
            parts = {_root_name(t) for t in targets if isinstance(t, cst.Subscript)} - {None}
            bindings.append((bound, value, parts))
        changed = True
        while changed:  # follow names through each other until nothing changes
            changed = False
            for bound, value, _ in bindings:
                why = _direct_reason(value, qn) or next(
                    (self.names[w] for w in sorted(_words(value)) if w in self.names), None)
                if why:
                    for b in bound - set(self.names):
                        self.names[b] = why
                        changed = True
        # the same on every rank: names whose every binding is a reduction across ranks, a constant, or made of
        # such names (`acc = (correct[0] / correct[1]).item()` after `correct = fabric.all_reduce(correct)`;
        # `best_acc = acc`); a name's own earlier value counts as such (`best = max(best, acc)`)
        values: Dict[str, list] = {}
        for bound, value, parts in bindings:
            for b in bound | parts:
                values.setdefault(b, []).append(value)
        changed = True
        while changed:
            changed = False
            for name, vals in values.items():
                if name not in self.uniform and all(_uniform_value(v, self.uniform | {name}) for v in vals):
                    self.uniform.add(name)
                    changed = True

    def reason(self, test: cst.BaseExpression) -> Optional[str]:
        """Why the test can differ between ranks, in words (for a diagnostic), or None."""
        why = _direct_reason(test, self.qn)
        if why:
            return why
        for word in sorted(_words(test)):
            if word in self.names:
                return f"{self.names[word]}, through `{word}`"
        for word in sorted(_data_words(test)):
            if word not in self.uniform:
                return f"a value each rank computed from its own data (`{word}`)"
        return None


def _data_words(expr: cst.CSTNode) -> Set[str]:
    """Names that say they hold a value of the data (`val_loss`, `best_acc`), settings (`args.save_best`) aside."""
    out = set()
    nodes = m.findall(expr, m.Name() | m.Attribute())
    attrs = {id(n.attr) for n in nodes if isinstance(n, cst.Attribute)}  # judged with their attribute
    for node in nodes:
        if id(node) in attrs:
            continue
        if isinstance(node, cst.Attribute):
            root = dotted(node)
            if root and root.split(".")[0] in SETTINGS_ROOTS:
                continue
            word = node.attr.value
        else:
            word = node.value
        low = word.lower()
        if any(w in low for w in DATA_WORDS) or re.search(r"(^|_)(acc|top1|top5|f1|auc|bleu|ppl)(\d|_|$)", low):
            out.add(word)
    return out
