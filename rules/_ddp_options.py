"""Shared by PTM131 and PTM100: the options of a removed `DistributedDataParallel(model, ...)` wrapper move to the
framework object that wraps the model in its place.

PTM131 reads each wrapper it removes (`read_wrapper`) and, where PTM100 creates the object in the same file,
leaves the record in `Facts.ddp_wrappers`; PTM100 turns the records into one constructor argument (`plan`).

Framework facts relied on (checked: lightning 2.6, accelerate 1.15, torch 2.13):
- Fabric: `DDPStrategy(**kwargs)` passes its extra keyword arguments to torch's DistributedDataParallel; the
  strategy names "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook" are `DDPStrategy(start_method=...)` with
  "popen", "spawn", "fork", "fork". Under `fabric run` the CLI sets the strategy, and a different one in the code
  is an error.
- Accelerate: `Accelerator(kwargs_handlers=[DistributedDataParallelKwargs(...)])` passes the handler's fields
  that differ from their defaults to DistributedDataParallel; its fields are `ACCELERATE_FIELDS` (plus hooks of
  its own).
"""
from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Set

import libcst as cst
from migrator import matching as m

from migrator.names import dotted

# set by the framework itself: the device of the process (Fabric and Accelerate pass their own device_ids)
FRAMEWORK_OWN = {"module", "device_ids", "output_device"}
# DistributedDataParallel's keyword arguments after `module` and their defaults (torch 2.13), as code
DEFAULTS = {
    "dim": {"0"}, "broadcast_buffers": {"True", "None"}, "init_sync": {"True"}, "process_group": {"None"},
    "bucket_cap_mb": {"None"}, "find_unused_parameters": {"False"}, "check_reduction": {"False"},
    "gradient_as_bucket_view": {"False"}, "static_graph": {"False"}, "delay_all_reduce_named_params": {"None"},
    "param_to_hook_all_reduce": {"None"}, "mixed_precision": {"None"}, "device_mesh": {"None"},
    "skip_all_reduce_unused_params": {"False"}, "bucket_cap_mb_list": {"None"}, "batched_grad_copy": {"False"},
    "forward_sync_buffers": {"None"},
}
ACCELERATE_FIELDS = {"dim", "broadcast_buffers", "bucket_cap_mb", "find_unused_parameters", "check_reduction",
                     "gradient_as_bucket_view", "static_graph"}
# a group or mesh the script builds after the process group starts: it does not exist when the object is created
NOT_AT_CREATION = {"process_group", "device_mesh"}
FABRIC_START = {None: "popen", "auto": "popen", "ddp": "popen", "ddp_spawn": "spawn", "ddp_fork": "fork",
                "ddp_notebook": "fork"}
LITERAL_NAMES = {"True", "False", "None"}


@dataclass
class WrapperOptions:
    """One removed wrapper: the options that mean something (kw -> code), what cannot be read as keywords, the
    scope it is in (a top-level function name, MODULE, MAIN_GUARD, or None in a class), and the names its
    enclosing function binds (empty at module level)."""
    options: Dict[str, str]
    names: Dict[str, Set[str]]
    unreadable: List[str]
    scope: Optional[str]
    local_names: Set[str] = field(default_factory=set)
    nested: bool = False  # in a function inside the scope's function: its locals are not the scope's

    def __bool__(self) -> bool:
        return bool(self.options or self.unreadable)


def free_names(expr: cst.CSTNode) -> Set[str]:
    """Names an expression reads (not attribute names, not keyword names, not True / False / None)."""
    found: Set[str] = set()

    class _V(cst.CSTVisitor):
        def visit_Attribute(self, node):
            node.value.visit(self)
            return False

        def visit_Arg(self, node):
            node.value.visit(self)
            return False

        def visit_Name(self, node):
            found.add(node.value)

    expr.visit(_V())
    return found - LITERAL_NAMES


def read_wrapper(call: cst.Call, scope: Optional[str], function: Optional[cst.FunctionDef],
                 nested: bool) -> WrapperOptions:
    """The options of `DistributedDataParallel(module, ...)` that the framework must be given: keywords other than
    the framework's own (`FRAMEWORK_OWN`) whose value is not the default. Positional arguments after the module
    and `**kwargs` cannot be read by name: they are listed as unreadable."""
    code = cst.Module([]).code_for_node
    options, names, unreadable = {}, {}, []
    positional = [a for a in call.args if a.keyword is None and not a.star]
    for a in call.args:
        if a.star == "**":
            unreadable.append(f"**{code(a.value)}")
        elif a.star == "*":
            unreadable.append(f"*{code(a.value)}")
        elif a.keyword is None:
            if a is not positional[0] or any(k.keyword is not None and k.keyword.value == "module" for k in call.args):
                unreadable.append(f"the positional argument `{code(a.value)}`")
        elif a.keyword.value not in FRAMEWORK_OWN and code(a.value) not in DEFAULTS.get(a.keyword.value, ()):
            options[a.keyword.value] = code(a.value)
            names[a.keyword.value] = free_names(a.value)
    return WrapperOptions(options, names, unreadable, scope, binders(function) if function is not None else set(),
                          nested)


def binders(scope: cst.CSTNode) -> Set[str]:
    """Names bound anywhere in a function (its parameters included); a nested function's count too (stricter)."""
    found: Set[str] = set()
    if isinstance(scope, cst.FunctionDef):
        found |= {p.name.value for p in m.findall(scope.params, m.Param())}
    for node in m.findall(scope, m.AssignTarget() | m.AnnAssign() | m.AugAssign() | m.For() | m.CompFor()
                          | m.NamedExpr() | m.AsName() | m.ImportAlias() | m.FunctionDef() | m.ClassDef()):
        if isinstance(node, (cst.FunctionDef, cst.ClassDef)):
            found.add(node.name.value)
        elif isinstance(node, cst.ImportAlias):
            if node.asname is None:
                found.add((dotted(node.name) or "").split(".")[0])
        else:
            found |= target_names(node.name if isinstance(node, cst.AsName) else node.target)
    return found - {""}


def target_names(target: cst.BaseExpression) -> Set[str]:
    """The names an assignment target binds (`a`, `a, (b, *c)`); not `x.a` or `x[a]`, which bind none."""
    if isinstance(target, cst.Name):
        return {target.value}
    if isinstance(target, (cst.Tuple, cst.List)):
        return {n for e in target.elements for n in target_names(e.value)}
    if isinstance(target, cst.StarredElement):
        return target_names(target.value)
    return set()


def bound_by(stmts: Sequence[cst.BaseStatement]) -> Set[str]:
    """Names the statements of a block bind at its own level, unconditionally: assignments, imports, defs."""
    found: Set[str] = set()
    for s in stmts:
        if isinstance(s, (cst.FunctionDef, cst.ClassDef)):
            found.add(s.name.value)
        elif isinstance(s, cst.SimpleStatementLine):
            for small in s.body:
                if isinstance(small, (cst.Assign, cst.AnnAssign, cst.Import, cst.ImportFrom)):
                    found |= binders(small)
    return found


@dataclass
class Place:
    """Where the object is created: the names bound before it, as locals of its function (its parameters and its
    block's statements above it) and as module globals; the function (None at module level) and the scope."""
    local_bound: Set[str]
    global_bound: Set[str]
    function: Optional[cst.FunctionDef]
    scope: Optional[str]


def place(module: cst.Module, scope: str, block: Sequence[cst.BaseStatement], index: int) -> Place:
    """The object is created at `block[index]` of the setup scope `scope` (a function name, MODULE, MAIN_GUARD)."""
    from migrator.analysis import MAIN_GUARD, MODULE, is_main_guard
    above = bound_by(block[:index])
    if scope == MODULE:
        return Place(set(), above, None, scope)
    at = next((i for i, s in enumerate(module.body)
               if (is_main_guard(s) if scope == MAIN_GUARD else
                   isinstance(s, cst.FunctionDef) and s.name.value == scope)), len(module.body))
    if scope == MAIN_GUARD:
        return Place(set(), above | bound_by(module.body[:at]), None, scope)
    function = module.body[at] if at < len(module.body) else None
    params = {p.name.value for p in m.findall(function.params, m.Param())} if function is not None else set()
    # a function runs once its call has come: module globals bound above the first statement that names it
    call = next((j for j, s in enumerate(module.body) if j > at and m.findall(s, m.Name(scope))), len(module.body))
    return Place(above | params, bound_by(module.body[:call]), function, scope)


def _once(module: cst.Module, scope: Optional[cst.CSTNode], name: str) -> bool:
    """`name` is bound once in its scope (the whole module for a global: stricter) and none of its attributes or
    items is assigned anywhere: its value where the object is created is the value the wrapper read."""
    where = scope if scope is not None else module
    count = len(m.findall(where, m.Param(name=m.Name(name))))
    for node in m.findall(where, m.AssignTarget() | m.AugAssign() | m.AnnAssign() | m.For() | m.CompFor()
                          | m.NamedExpr() | m.AsName() | m.ImportAlias() | m.FunctionDef() | m.ClassDef()):
        if isinstance(node, (cst.FunctionDef, cst.ClassDef)):
            count += node.name.value == name
        elif isinstance(node, cst.ImportAlias):
            count += node.asname is None and (dotted(node.name) or "").split(".")[0] == name
        else:
            count += name in target_names(node.name if isinstance(node, cst.AsName) else node.target)
    changed = [t for t in m.findall(module, m.AssignTarget() | m.AugAssign() | m.AnnAssign())
               if not isinstance(t.target, cst.Name) and name in free_names(t.target)]
    return count <= 1 and not changed


def reachable(module: cst.Module, at: Place, wrapper: WrapperOptions, name: str) -> bool:
    """The wrapper's `name` has the same value where the object is created: a local of the wrapper's function
    when that is the object's function too, bound above the object; or a module global for both, bound above
    it; bound once either way. A builtin that nothing rebinds is reachable too."""
    local_at = at.function is not None and name in binders(at.function)
    if name in wrapper.local_names:
        return (not wrapper.nested and wrapper.scope == at.scope and local_at and name in at.local_bound
                and _once(module, at.function, name))
    if local_at:
        return False  # a global for the wrapper, another value (a local) where the object is
    if name in binders(module):
        return name in at.global_bound and _once(module, None, name)
    return hasattr(builtins, name)


@dataclass
class Plan:
    """What the object gets: a constructor argument (keyword, code), imports, and TODO lines."""
    argument: Optional[tuple] = None
    imports: List[tuple] = field(default_factory=list)
    todos: List[str] = field(default_factory=list)


def _items(options: Dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items())


def plan(module: cst.Module, wrappers: List[WrapperOptions], target: str, at: Place, strategy: Optional[str],
         launcher: Optional[str]) -> Plan:
    """The constructor argument that gives the framework's DDP the options of the removed wrappers, or TODOs for
    what cannot be given: wrappers with different options, options the framework cannot take, values not set
    where the object is created."""
    wrappers = [w for w in wrappers if w]
    result = Plan()
    if not wrappers:
        return result
    kinds = {tuple(w.options.items()) for w in wrappers}
    unreadable = sorted({u for w in wrappers for u in w.unreadable})
    if unreadable:
        result.todos.append(f"the removed DistributedDataParallel wrapper had {', '.join(unreadable)}: give its "
                            f"options to the framework object by hand")
    if len(kinds) > 1:
        shown = "; ".join(f"({_items(dict(k)) or 'defaults'})" for k in sorted(kinds))
        result.todos.append(f"the removed DistributedDataParallel wrappers had different options {shown}: one "
                            f"framework object wraps every model alike; choose the options and set them here by hand")
        return result
    wrapper = wrappers[0]
    moved: Dict[str, str] = {}
    for kw, value in wrapper.options.items():
        if kw in NOT_AT_CREATION or kw not in DEFAULTS:
            result.todos.append(f"`{kw}={value}` of the removed DistributedDataParallel wrapper cannot be given "
                                f"where the object is created; set it up by hand")
        elif target == "accelerate" and kw not in ACCELERATE_FIELDS:
            result.todos.append(f"`{kw}={value}` of the removed DistributedDataParallel wrapper: Accelerate's "
                                f"DistributedDataParallelKwargs has no `{kw}`; set it by hand")
        elif not all(reachable(module, at, w, n) for w in wrappers for n in w.names[kw]):
            missing = sorted(n for n in wrapper.names[kw] if not reachable(module, at, wrapper, n))
            result.todos.append(f"`{kw}={value}` of the removed DistributedDataParallel wrapper reads "
                                f"{', '.join(f'`{n}`' for n in missing)}, not set where the object is created: "
                                f"give the framework's DDP `{kw}` by hand")
        else:
            moved[kw] = value
    if not moved:
        return result
    if target == "accelerate":
        result.argument = ("kwargs_handlers", f"[DistributedDataParallelKwargs({_items(moved)})]")
        result.imports.append(("accelerate", "DistributedDataParallelKwargs"))
        return result
    if launcher == "fabric-run" or strategy not in FABRIC_START:
        why = "`fabric run` sets the strategy" if launcher == "fabric-run" else f"the strategy is \"{strategy}\""
        result.todos.append(f"the removed DistributedDataParallel wrapper had `{_items(moved)}`: {why}, so they are "
                            f"not passed; give them to the strategy by hand")
        return result
    start = FABRIC_START[strategy]
    first = "" if start == "popen" else f'start_method="{start}", '
    result.argument = ("strategy", f"DDPStrategy({first}{_items(moved)})")
    result.imports.append(("lightning.fabric.strategies", "DDPStrategy"))
    return result
