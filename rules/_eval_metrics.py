"""Shared by PTM112: where set-up loaders flow, which loops over them evaluate, and what those loops collect.

- `loader_flow(module, facts)`: from each loader of the setup scope, the names it reaches (a function's parameter,
  a method's parameter, `self.x` of a class whose constructor receives it), the `for` loops over each, and whether
  it is handed to code out of sight (then nothing is decided for it).
- `trains(loop, facts)`: the loop backpropagates or steps (a training loop), directly, through a local function, or
  through a method of its own class called on `self` (a trainer's `_run_batch`).
- `collected(loop, numbers, lists)`: what an evaluation loop adds to names started before it, each with the
  rewrite that gathers it across ranks (Accelerate's `gather_for_metrics`), or why it cannot be gathered.

The framework facts relied on: Fabric's `setup_dataloaders(loader, use_distributed_sampler=False)` keeps the
loader's own sampler (every rank iterates the whole set, batches still moved to the device); Accelerate's
`gather_for_metrics(t)` concatenates every rank's `t` along the first dimension and drops the samples it repeated to
even out the last batches (accelerate 1.15), so what it returns per batch is what one process would have seen.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Set, Tuple

import libcst as cst

from migrator import matching as m
from migrator.analysis import MAIN_GUARD, MODULE, unwrap_loader_iter
from migrator.names import assigned_names, dotted

# calls that take a loader without taking it anywhere: its iteration stays in the loop we see
_HARMLESS = {"len", "iter", "next", "enumerate", "tqdm", "tqdm.tqdm", "tqdm.auto.tqdm", "print", "isinstance",
             "getattr", "hasattr", "type", "id", "repr", "str"}
_FW_SETUP = {"setup_dataloaders", "prepare", "prepare_data_loader"}
_TRAINING = {"backward", "step", "zero_grad", "grad"}  # loss.backward(), optimizer.step(), torch.autograd.grad
_CONVERSIONS = {"cpu", "numpy", "tolist", "detach", "float", "double", "long", "int", "half", "clone",
                "contiguous", "flatten", "ravel", "squeeze", "view", "reshape", "to"}
_METRIC_METHODS = {"update", "add_batch", "add", "process", "accumulate", "append_batch"}


@dataclass
class Flow:
    sources: Dict[Tuple[int, str], Set[str]] = field(default_factory=dict)  # (id(scope node), name) -> loaders
    loops: Dict[str, List[cst.For]] = field(default_factory=dict)  # loader -> loops over it, under any name
    unknown: Set[str] = field(default_factory=set)  # loaders handed to code out of sight
    scope_of: Dict[int, cst.CSTNode] = field(default_factory=dict)  # id(loop) -> the function (or module) it is in


def _params(fd: cst.FunctionDef) -> List[str]:
    p = fd.params
    return [x.name.value for x in list(p.posonly_params) + list(p.params)]


def _all_params(fd: cst.FunctionDef) -> Set[str]:
    p = fd.params
    return {x.name.value for x in list(p.posonly_params) + list(p.params) + list(p.kwonly_params)}


def loader_flow(module: cst.Module, facts) -> Flow:
    """Follow each loader of the setup scope into the module's functions, methods and classes."""
    flow = Flow()
    funcs = {s.name.value: s for s in module.body if isinstance(s, cst.FunctionDef)}
    classes = {s.name.value: s for s in module.body if isinstance(s, cst.ClassDef)}
    methods: Dict[str, List[Tuple[cst.ClassDef, cst.FunctionDef]]] = {}
    for c in classes.values():
        for s in c.body.body:
            if isinstance(s, cst.FunctionDef):
                methods.setdefault(s.name.value, []).append((c, s))
    setup = facts.setup_scope
    if setup in funcs:
        root, root_body = funcs[setup], [funcs[setup].body]
    elif setup in (MODULE, MAIN_GUARD):
        root, root_body = module, [s for s in module.body if not isinstance(s, (cst.FunctionDef, cst.ClassDef))]
    else:
        return flow
    work = [(root, root_body, name, name) for name in facts.loaders]
    if setup in (MODULE, MAIN_GUARD):  # a module-level loader is a global: a function may loop over it by name
        for fd in funcs.values():
            bound = _all_params(fd) | {n for a in m.findall(fd.body, m.Assign()) for t in a.targets
                                       for n in assigned_names(t.target)}
            work.extend((fd, [fd.body], name, name) for name in facts.loaders if name not in bound)
    while work:
        scope, body, name, src = work.pop()
        seen = flow.sources.setdefault((id(scope), name), set())
        if src in seen:
            continue
        seen.add(src)
        for node in body:
            for loop in m.findall(node, m.For()):
                if unwrap_loader_iter(loop.iter) == name:
                    flow.loops.setdefault(src, []).append(loop)
                    flow.scope_of[id(loop)] = scope
            for call in m.findall(node, m.Call()):
                handed = [(i, a) for i, a in enumerate(call.args) if dotted(a.value) == name and not a.star]
                if not handed:
                    continue
                callee = dotted(call.func) or ""
                last = callee.rsplit(".", 1)[-1]
                if callee in _HARMLESS or last in _FW_SETUP:
                    continue
                targets: List[Tuple[cst.FunctionDef, int, Optional[cst.ClassDef]]] = []
                if callee in funcs:
                    targets = [(funcs[callee], 0, None)]
                elif callee in classes:
                    targets = [(fd, 1, c) for c, fd in methods.get("__init__", []) if c is classes[callee]]
                elif "." in callee:
                    targets = [(fd, 1, c) for c, fd in methods.get(last, [])]
                if not targets:
                    flow.unknown.add(src)
                    continue
                for fd, offset, cls in targets:
                    for i, a in handed:
                        params = _params(fd)
                        if a.keyword is not None:
                            p = a.keyword.value if a.keyword.value in _all_params(fd) else None
                        else:
                            p = params[i + offset] if i + offset < len(params) else None
                        if p is None:
                            flow.unknown.add(src)
                            continue
                        work.append((fd, [fd.body], p, src))
                        if cls is not None and fd.name.value == "__init__":
                            for attr in _stored_as(fd, p):
                                for s in cls.body.body:
                                    if isinstance(s, cst.FunctionDef):
                                        work.append((s, [s.body], f"self.{attr}", src))
    return flow


def _stored_as(init: cst.FunctionDef, param: str) -> List[str]:
    """`self.val_loader = loader` in a constructor: ["val_loader"]."""
    out = []
    for a in m.findall(init.body, m.Assign()):
        if dotted(a.value) == param:
            for t in a.targets:
                name = dotted(t.target) or ""
                if name.startswith("self.") and name.count(".") == 1:
                    out.append(name[5:])
    return out


def trains(loop: cst.For, facts, module: Optional[cst.Module] = None) -> bool:
    """The loop backpropagates, steps or zeroes gradients, itself or through a local function that does (read in
    the module, so a helper already migrated to `fabric.backward` counts too)."""
    funcs = {s.name.value: s for s in module.body if isinstance(s, cst.FunctionDef)} if module is not None else {}
    # a loop in a method that calls `self.update(x, y)`, where the backward is (a trainer class): its class's methods
    for cls in (m.findall(module, m.ClassDef()) if module is not None else []):
        if any(f is loop for f in m.findall(cls, m.For())):
            funcs.update({f"self.{s.name.value}": s for s in cls.body.body if isinstance(s, cst.FunctionDef)})
            break
    seen: Set[str] = set()
    todo: List[cst.CSTNode] = [loop.body]
    while todo:
        node = todo.pop()
        for call in m.findall(node, m.Call()):
            name = dotted(call.func) or ""
            if name.rsplit(".", 1)[-1] in _TRAINING:
                return True
            info = facts.functions.get(name)
            if info is not None and info.has_backward:
                return True
            if name in funcs and name not in seen:
                seen.add(name)
                todo.append(funcs[name].body)
    return False


# ---- what an evaluation loop collects ----------------------------------------------------------------------------

def _gather(expr: cst.BaseExpression, fw: str) -> cst.Call:
    inner = expr.with_changes(lpar=[], rpar=[]) if getattr(expr, "lpar", None) else expr
    return cst.Call(func=cst.parse_expression(f"{fw}.gather_for_metrics"), args=[cst.Arg(inner)])


def _count(value: cst.BaseExpression) -> Optional[Callable[[str], cst.BaseExpression]]:
    """`y.size(0)`, `len(y)`, `y.shape[0]`, `y.numel()`: the number of samples of a batch tensor."""
    if m.matches(value, m.Call(func=m.Name("len"))) and len(value.args) == 1:
        return lambda fw: value.with_changes(args=[value.args[0].with_changes(value=_gather(value.args[0].value, fw))])
    if isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute):
        attr = value.func.attr.value
        if (attr == "size" and len(value.args) == 1 and m.matches(value.args[0].value, m.Integer("0"))) or \
                (attr == "numel" and not value.args):
            return lambda fw: value.with_changes(func=value.func.with_changes(value=_gather(value.func.value, fw)))
    if isinstance(value, cst.Subscript) and m.matches(value.value, m.Attribute(attr=m.Name("shape"))) and \
            len(value.slice) == 1 and m.matches(value.slice[0].slice, m.Index(value=m.Integer("0"))):
        return lambda fw: value.with_changes(value=value.value.with_changes(value=_gather(value.value.value, fw)))
    return None


def _per_batch(value: cst.BaseExpression) -> Optional[Callable[[str], cst.BaseExpression]]:
    """`out.argmax(1).cpu().numpy()` -> gather `out.argmax(1)`, then convert: a batch of per-sample values."""
    chain = []
    node = value
    while isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and \
            node.func.attr.value in _CONVERSIONS:
        chain.append(node)
        node = node.func.value
    if isinstance(node, (cst.Integer, cst.Float, cst.SimpleString, cst.List, cst.Tuple, cst.Dict, cst.ListComp)):
        return None
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == "item":
        return None  # a number per batch (a batch mean): no samples to gather

    def build(fw: str, chain=tuple(reversed(chain)), inner=node):
        out: cst.BaseExpression = _gather(inner, fw)
        for call in chain:
            out = call.with_changes(func=call.func.with_changes(value=out))
        return out
    return build


def _summed(value: cst.BaseExpression, fw: str) -> Optional[cst.BaseExpression]:
    """A per-batch sum of per-sample values, gathered: see eval_dataset_len.gathered; also `torch.sum(E)`."""
    from migrator.rules.eval_dataset_len import gathered
    new = gathered(value, fw)
    if new is not None:
        return new
    item = isinstance(value, cst.Call) and m.matches(value.func, m.Attribute(attr=m.Name("item"))) and not value.args
    inner = value.func.value if item else value
    if m.matches(inner, m.Call(func=m.Attribute(value=m.Name("torch"), attr=m.Name("sum")))) and len(inner.args) == 1:
        new_inner = inner.with_changes(args=[inner.args[0].with_changes(value=_gather(inner.args[0].value, fw))])
        return value.with_changes(func=value.func.with_changes(value=new_inner)) if item else new_inner
    return None


@dataclass
class Collected:
    kinds: Dict[int, str] = field(default_factory=dict)  # id(AugAssign / append Call) -> "items", "count", "sum"
    names: List[str] = field(default_factory=list)  # what the loop collects, in order
    unknown: List[str] = field(default_factory=list)  # what it collects in a way that cannot be gathered


def _one_element(value: cst.BaseExpression) -> Optional[cst.BaseExpression]:
    return value.elements[0].value if isinstance(value, cst.List) and len(value.elements) == 1 else None


def gathered_form(kind: str, node: cst.CSTNode, fw: str) -> cst.CSTNode:
    """The statement part `collected` classified, with what it adds gathered across ranks."""
    if isinstance(node, cst.Call):  # lst.append(E) / lst.extend(E)
        return node.with_changes(args=[node.args[0].with_changes(value=_per_batch(node.args[0].value)(fw))])
    value = node.value
    if kind == "items":
        inner = _one_element(value)
        if inner is None:
            return node.with_changes(value=_per_batch(value)(fw))
        el = value.elements[0]
        return node.with_changes(value=value.with_changes(elements=[el.with_changes(value=_per_batch(inner)(fw))]))
    if kind == "count":
        return node.with_changes(value=_count(value)(fw))
    return node.with_changes(value=_summed(value, fw))


def collected(loop: cst.For, numbers: Set[str], lists: Set[str]) -> Collected:
    """What the loop adds to names started before it (`numbers`: at a number literal, `lists`: at `[]`): per
    statement, the kind of value it adds where `gathered_form` can gather it, else the name in `unknown`."""
    out = Collected()
    local = set(assigned_names(loop.target))
    for a in m.findall(loop.body, m.Assign()):
        for t in a.targets:
            local |= set(assigned_names(t.target))

    def note(name: str, ok: bool) -> None:
        if name not in out.names:
            out.names.append(name)
        if not ok and name not in out.unknown:
            out.unknown.append(name)

    for aug in m.findall(loop.body, m.AugAssign()):
        target = dotted(aug.target) if not isinstance(aug.target, cst.Subscript) else None
        if target is None:
            note(cst.Module([]).code_for_node(aug.target), False)
            continue
        if target in local and target not in numbers | lists:
            continue
        if not isinstance(aug.operator, cst.AddAssign) or target not in numbers | lists:
            note(target, False)
            continue
        value = aug.value
        if target in lists:
            ok = _per_batch(_one_element(value) or value) is not None
            if ok:
                out.kinds[id(aug)] = "items"
            note(target, ok)
        elif _count(value) is not None:
            out.kinds[id(aug)] = "count"
            note(target, True)
        elif _summed(value, "fw") is not None:
            out.kinds[id(aug)] = "sum"
            note(target, True)
        else:
            note(target, False)
    for call in m.findall(loop.body, m.Call(func=m.Attribute())):
        owner, attr = dotted(call.func.value), call.func.attr.value
        if owner is None or (owner in local and owner not in lists):
            continue
        if attr in ("append", "extend") and owner in lists and len(call.args) == 1 and not call.args[0].star \
                and call.args[0].keyword is None:
            ok = _per_batch(call.args[0].value) is not None
            if ok:
                out.kinds[id(call)] = "items"
            note(owner, ok)
        elif attr in ("append", "extend") or (attr in _METRIC_METHODS and owner not in numbers):
            note(owner, False)
    return out


def started(stmt: cst.CSTNode) -> Tuple[Set[str], Set[str]]:
    """Names a simple statement starts at a number literal, and at an empty list (`[]`, `list()`)."""
    numbers: Set[str] = set()
    lists: Set[str] = set()
    if not isinstance(stmt, cst.SimpleStatementLine):
        return numbers, lists

    def kind(v):
        if isinstance(v, (cst.Integer, cst.Float)):
            return numbers
        if (isinstance(v, cst.List) and not v.elements) or m.matches(v, m.Call(func=m.Name("list"), args=[])):
            return lists
        return None

    for small in stmt.body:
        if not isinstance(small, cst.Assign):
            continue
        for t in small.targets:
            if isinstance(t.target, cst.Name) and kind(small.value) is not None:
                kind(small.value).add(t.target.value)
            elif isinstance(t.target, cst.Tuple) and isinstance(small.value, cst.Tuple) \
                    and len(t.target.elements) == len(small.value.elements):
                for te, ve in zip(t.target.elements, small.value.elements):
                    if isinstance(te.value, cst.Name) and kind(ve.value) is not None:
                        kind(ve.value).add(te.value.value)
    return numbers, lists


def loops_with_starts(stmts) -> List[Tuple[cst.For, Set[str], Set[str]]]:
    """Every `for` loop of the statements with the names started (numbers, lists) before it in its block or a block
    around it that no other loop separates from it."""
    out: List[Tuple[cst.For, Set[str], Set[str]]] = []

    def walk(block, numbers: Set[str], lists: Set[str]) -> None:
        numbers, lists = set(numbers), set(lists)
        for stmt in block:
            n, li = started(stmt)
            numbers |= n
            lists |= li
            numbers -= li
            lists -= n
            if isinstance(stmt, cst.For):
                out.append((stmt, set(numbers), set(lists)))
                walk(stmt.body.body, set(), set())
            elif isinstance(stmt, cst.While):
                walk(stmt.body.body, set(), set())
            elif isinstance(stmt, (cst.With, cst.If, cst.Try)):
                for sub in _blocks(stmt):
                    walk(sub, numbers, lists)
    walk(list(stmts), set(), set())
    return out


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
