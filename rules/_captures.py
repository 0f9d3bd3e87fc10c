"""Models captured before their setup (PTM105): kept by another object that later calls the raw module.

`rf = RF(model)` before `model, opt = fabric.setup(model, opt)` leaves `rf.model` the plain module: its forward
never goes through the DDP wrapper, so gradients are not averaged and the ranks drift apart without an error.
The fix moves the model's setup above the capture (rules/setup_model_optimizer.py); this module only finds it.
"""
from __future__ import annotations

from typing import Iterable, Optional, Set

import libcst as cst

from migrator import matching as m
from migrator.names import assigned_names, dotted

# calls that read a model and keep nothing of it (a count, a printout, a type test)
NON_CAPTURING = {
    "print", "len", "sum", "str", "repr", "format", "isinstance", "issubclass", "type", "id", "hash", "hasattr",
    "getattr", "vars", "dir", "callable", "count_parameters", "count_params", "num_params", "get_num_params",
    "parameter_count", "summary", "info", "debug", "warning", "log",
    "unwrap_model",  # the framework's own view of the raw module (PTM131 writes it for `model.module`)
}
# DDP wrappers: PTM131 removes them; the model setup takes their place
WRAPPERS = {"DistributedDataParallel", "DDP", "DataParallel"}
# copies: deepcopy (an EMA's shadow, a target network) copies the weights and never calls the model; a set-up
# module cannot be copied at all (deepcopy of Fabric's DDP wrapper raises "cannot pickle '_thread.lock'")
COPY_WORDS = ("copy", "ema", "averaged", "swa")


def local_classes(module: cst.Module) -> Set[str]:
    """Names of the classes the module defines at top level or under the main guard."""
    found = {c.name.value for c in module.body if isinstance(c, cst.ClassDef)}
    return found | {c.name.value for c in m.findall(module, m.ClassDef())}


def _holds(value: cst.BaseExpression, name: str) -> bool:
    """`model`, `[model]`, `(model, head)`, `{"g": model}`: the value is the model or a literal that keeps it."""
    if dotted(value) == name:
        return True
    if isinstance(value, (cst.List, cst.Tuple, cst.Set)):
        return any(_holds(e.value, name) for e in value.elements)
    if isinstance(value, cst.Dict):
        return any(isinstance(e, cst.DictElement) and _holds(e.value, name) for e in value.elements)
    return False


def _copying(func: str) -> bool:
    leaf = func.rsplit(".", 1)[-1].lower()
    return any(w in leaf for w in COPY_WORDS)


def _capturing_call(call: cst.Call, name: str, bound: bool, classes: Set[str]) -> bool:
    if not any(_holds(a.value, name) for a in call.args):
        return False
    func = dotted(call.func) or ""
    leaf = func.rsplit(".", 1)[-1]
    if not leaf or leaf in NON_CAPTURING or leaf in WRAPPERS or _copying(func):
        return False
    lowered = leaf.lower()
    if "load" in lowered or "restore" in lowered or "resume" in lowered:
        return False  # a checkpoint load into the model (rules/_moves._loads_into)
    if func.startswith(("logging.", "logger.", "log.")) or func.endswith(".print"):
        return False
    # a constructor (capitalised, or a class of this file) keeps what it is given; any other call is
    # taken to keep it when its result is kept
    return leaf[0].isupper() or leaf in classes or bound


class _Finder(m.Visitor):
    def __init__(self, name: str, classes: Set[str], called: Set[str]):
        super().__init__()
        self.name, self.classes, self.called, self.found = name, classes, called, False
        self.bound_calls: Set[int] = set()

    # a def or lambda reads the name when it runs, after the setup rebound it: no capture
    def visit_FunctionDef(self, node):
        return False

    def visit_Lambda(self, node):
        return False

    def visit_ClassDef(self, node):
        return False

    def _assign(self, targets: Iterable[cst.BaseExpression], value: Optional[cst.BaseExpression]) -> None:
        if value is None:
            return
        names = {n for t in targets for n in assigned_names(t)}
        if names <= {self.name}:
            return  # `model = torch.compile(model)`: a rebinding, not another holder
        plain_alias = dotted(value) == self.name and all(isinstance(t, cst.Name) for t in targets)
        if plain_alias and not names & self.called:
            return  # `model_without_ddp = model`: a view for parameters and checkpoints, never called
        if _holds(value, self.name):
            self.found = True  # `net = model` (called later), `self.model = model`, `models = [model]`
        if isinstance(value, cst.Call):
            self.bound_calls.add(id(value))

    def visit_Assign(self, node):
        self._assign([t.target for t in node.targets], node.value)

    def visit_AnnAssign(self, node):
        self._assign([node.target], node.value)

    def visit_Call(self, node):
        if _capturing_call(node, self.name, id(node) in self.bound_calls, self.classes):
            self.found = True


def called_names(stmts: Iterable[cst.CSTNode]) -> Set[str]:
    """Names called in these statements, as `net(x)` or `net.forward(x)`."""
    found: Set[str] = set()
    for stmt in stmts:
        for call in m.findall(stmt, m.Call()):
            func = dotted(call.func) or ""
            found.add(func[: -len(".forward")] if func.endswith(".forward") else func)
    return found


def captures(stmt: cst.CSTNode, name: str, classes: Set[str], called: Set[str] = frozenset()) -> bool:
    """True when the statement hands the model `name` to something that keeps it: a constructor (`RF(model)`,
    `Trainer(model=model)`), another name or attribute (`net = model`, `self.model = model`, `models = [model]`) or
    an unknown call whose result is kept (`state = wrap(model)`). A plain alias counts only when `called` (the
    names the scope calls, see called_names) has it: `model_without_ddp = model` is the unwrapped view that
    parameter groups and checkpoints read, which must stay the raw module. Not: printing or counting it, deep
    copies and EMA or averaging helpers (they copy the weights; a set-up module cannot be deep-copied), checkpoint
    loads, the DDP wrappers, the model's own rebinding (`model = torch.compile(model)`), code in a def or lambda."""
    finder = _Finder(name, classes, set(called))
    stmt.visit(finder)
    return finder.found


def _unwrapped(node: cst.BaseExpression) -> str:
    """Dotted name of `rf.model`, also as an earlier rule wrote it: `accelerator.unwrap_model(rf).model`."""
    if isinstance(node, cst.Attribute):
        base = _unwrapped(node.value)
        return f"{base}.{node.attr.value}" if base else ""
    if isinstance(node, cst.Call) and (dotted(node.func) or "").endswith(".unwrap_model") and node.args:
        return dotted(node.args[0].value) or ""
    return dotted(node) or ""


def plain_classes(module: cst.Module) -> Set[str]:
    """Classes of the module with no base class (or only `object`): not nn.Modules, so setup/prepare cannot take
    their instances (Fabric raises; Accelerate passes them through untouched)."""
    return {c.name.value for c in m.findall(module, m.ClassDef())
            if all(dotted(b.value) == "object" for b in c.bases)}


def held_model(body, holder: str, optimizers: Iterable[str], plain: Set[str]) -> Optional[str]:
    """`rf.model` when `holder` is made in `body` by a plain class of the file (`rf = RF(Net())`) and the
    optimizers train exactly one attribute of it (`Adam(rf.model.parameters())`): the module to set up in its
    place. None otherwise."""
    made = [a for s in body for a in m.findall(s, m.Assign())
            if any(holder in assigned_names(t.target) for t in a.targets)]
    if not made or not all(isinstance(a.value, cst.Call) and (dotted(a.value.func) or "").rsplit(".", 1)[-1] in plain
                           for a in made):
        return None
    paths = set()
    for s in body:
        for a in m.findall(s, m.Assign()):
            if not any(set(assigned_names(t.target)) & set(optimizers) for t in a.targets):
                continue
            for call in m.findall(a.value, m.Call()):
                func = call.func
                if isinstance(func, cst.Attribute) and func.attr.value in ("parameters", "named_parameters"):
                    path = _unwrapped(func.value)
                    if path == holder:
                        return None
                    if path.startswith(holder + "."):
                        paths.add(path)
    return paths.pop() if len(paths) == 1 else None


def deepcopy_of(value: cst.BaseExpression, models) -> str:
    """`copy.deepcopy(model)` / `deepcopy(model)` of one of `models` -> its name; "" otherwise."""
    if isinstance(value, cst.Call) and (dotted(value.func) or "").rsplit(".", 1)[-1] == "deepcopy" and value.args:
        name = dotted(value.args[0].value)
        if name in models:
            return name
    return ""


def plain_objects(module: cst.Module) -> Set[str]:
    """Names bound only to instances of the module's plain classes (`flow = Flow(Net())`): never nn.Modules."""
    plain = plain_classes(module)
    if not plain:
        return set()
    made: dict = {}
    for a in m.findall(module, m.Assign()):
        kind = (dotted(a.value.func) or "").rsplit(".", 1)[-1] if isinstance(a.value, cst.Call) else None
        for t in a.targets:
            for name in assigned_names(t.target):
                made[name] = made.get(name, True) and kind in plain
    return {n for n, only in made.items() if only}
