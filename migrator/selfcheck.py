"""The engine's check of its own output: a migration that would break a script that ran is not written.

After the rules run, the output is compared with the input (both parsed with the standard library's `ast`):

- undefined names: a name pyflakes reports as undefined in the output but not in the input (pyflakes does the
  scope analysis; we only compare its reports); and a name that code run at import time reads before the module
  binds it (`device = str(fabric.device)` above `fabric = Fabric()`), which pyflakes does not check;
- signatures: a function, method or class whose parameters the run changed is called with arguments that fit
  the new parameters everywhere in the file, and is never handed over as a value (`optimizer.step(closure)`,
  `mp.spawn(worker, ...)`, `Process(target=worker)` call it with the old arguments);
- main-process-only names: a name the output binds only under a main-process guard (`if fabric.is_global_zero:`)
  and reads on every rank, where the input bound it on every rank (migrator/main_only.py; pyflakes sees it
  bound);
- distributed machinery: a DDP wrapper, DistributedSampler or `init_process_group` removed only where the
  framework object is there and models / loaders are set up (`setup` / `prepare` / `setup_dataloaders`), and
  no DDP-only attribute (`require_backward_grad_sync`) is left on a model that is no longer wrapped.

`check(source, output, target)` gives the problems of one file; `fits_elsewhere(...)` checks the calls that other
files of the same run make to the functions whose signatures changed. The engine leaves a file with problems
unchanged and reports each one as an error-level PTM006 diagnostic (migrator/engine.py).
"""
from __future__ import annotations

import ast
import builtins
import functools
import re
import warnings
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Set, Tuple

SELF_CHECK = "PTM006"
_BUILTINS = set(dir(builtins)) | {"__file__", "__name__", "__doc__", "__builtins__", "__spec__", "__loader__",
                                  "__package__", "__path__", "__annotations__", "__dict__", "__module__",
                                  "__qualname__", "__class__"}
_FW_CTORS = {"Fabric", "Accelerator"}
_SETUP = {"setup", "setup_module", "prepare", "prepare_model"}
_SETUP_LOADERS = {"setup_dataloaders", "prepare", "prepare_data_loader"}
_WRAPPERS = {"DistributedDataParallel", "DDP", "DataParallel"}


@dataclass(frozen=True)
class Problem:
    line: int  # in the output
    message: str
    input_line: Optional[int] = None  # where the problem is known by its place in the input


@functools.lru_cache(maxsize=64)
def _parse(code: str) -> Optional[ast.Module]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def check(source: str, output: str, target: str, partial: bool = False) -> List[Problem]:
    """Problems that the output has and the input did not. Inputs: the input and output text of one module, the
    target ("fabric" or "accelerate"), and `partial`: the user deselected the rule that creates the framework object
    (`--select` / `--ignore`), so its name and the machinery it replaces are theirs to provide. Output: a list of
    Problem (empty when the output is sound). Never raises on odd input: an output that does not parse is itself a
    problem; an input that does not parse gives []."""
    before = _parse(source)
    if before is None:
        return []
    after = _parse(output)
    if after is None:
        return [Problem(1, "the migrated code does not parse")]
    problems = _new_undefined(before, after)
    problems += _import_time_order(before, after)
    problems += _signature_fit(before, after)
    from migrator.main_only import main_only_reads  # libcst: only once a file changed (a run of non-scripts skips it)
    problems += [Problem(line, message, at) for line, at, message in main_only_reads(source, output)]
    if partial:
        return [p for p in problems if not any(f"`{n}`" in p.message for n in ("fabric", "accelerator"))]
    return problems + _machinery(before, after)


# -- undefined names ---------------------------------------------------------------------------------------------

def _undefined(tree: ast.Module) -> Dict[str, List[int]]:
    from pyflakes import checker, messages  # a runtime dependency: scope analysis is its job, not ours
    found: Dict[str, List[int]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = checker.Checker(tree, "<migrated>")
    for msg in w.messages:
        if isinstance(msg, (messages.UndefinedName, messages.UndefinedLocal)):
            found.setdefault(msg.message_args[0], []).append(msg.lineno)
    return found


def _new_undefined(before: ast.Module, after: ast.Module) -> List[Problem]:
    old, new = _undefined(before), _undefined(after)
    out = []
    for name, lines in sorted(new.items()):
        if len(lines) > len(old.get(name, ())):
            out.append(Problem(min(lines), f"`{name}` is not defined where the migrated code uses it"))
    return out


# -- names read at import time before the module binds them --------------------------------------------------------

class _Order(ast.NodeVisitor):
    """Module-level code in execution order: where each global is first bound, and the loads that run at import
    time (module statements, class bodies, and the bodies of local functions called at module level)."""

    def __init__(self, functions: Dict[str, ast.AST]):
        self.functions = functions
        self.bound: Dict[str, int] = {}
        self.early: Dict[str, int] = {}  # name -> line of a read before its first binding
        self.pos = 0

    def _bind(self, name: str) -> None:
        self.bound.setdefault(name, self.pos)

    def _load(self, name: str, line: int) -> None:
        if name not in self.bound and name not in _BUILTINS:
            self.early.setdefault(name, line)

    def run(self, body: Iterable[ast.stmt]) -> None:
        for stmt in body:
            self.pos += 1
            self.visit(stmt)

    def visit_FunctionDef(self, node) -> None:
        for d in node.decorator_list:
            self.visit(d)
        self._bind(node.name)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for e in node.bases + [k.value for k in node.keywords] + node.decorator_list:
            self.visit(e)
        for stmt in node.body:  # a class body runs at import; its own names are not globals
            if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Assign, ast.AnnAssign)):
                self.visit(stmt)
        self._bind(node.name)

    def visit_Lambda(self, node) -> None:
        return

    def _comprehension(self, node) -> None:
        self.visit(node.generators[0].iter)

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self._load(node.id, node.lineno)
        else:
            self._bind(node.id)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for t in node.targets:
            self.visit(t)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            self._load(node.target.id, node.lineno)
        self.visit(node.target)

    def visit_Import(self, node) -> None:
        for a in node.names:
            self._bind((a.asname or a.name).split(".")[0])

    def visit_ImportFrom(self, node) -> None:
        for a in node.names:
            self._bind(a.asname or a.name)

    def visit_Global(self, node) -> None:
        return

    def visit_Try(self, node) -> None:  # a handler may bind what the body failed to: count every binding
        for part in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
            for stmt in part:
                self.visit(stmt)
        for h in node.handlers:
            if h.name:
                self._bind(h.name)

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        fn = self.functions.get(node.func.id) if isinstance(node.func, ast.Name) else None
        if fn is not None and node.func.id in self.bound:
            for name, _line in _global_loads(fn):
                self._load(name, node.lineno)


def _global_loads(fn) -> List[Tuple[str, int]]:
    """Names a function reads that it does not bind itself (parameters, assignments, imports, inner defs)."""
    local: Set[str] = set()
    args = fn.args
    for a in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
        if a is not None:
            local.add(a.arg)
    declared_global: Set[str] = set()
    loads = []
    for node in ast.walk(fn):
        if isinstance(node, ast.Global):
            declared_global.update(node.names)
        elif isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                loads.append((node.id, node.lineno))
            else:
                local.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node is not fn:
            local.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            local.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.arg):
            local.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            local.add(node.name)
    return [(n, line) for n, line in loads if n not in local or n in declared_global]


def _early_reads(tree: ast.Module) -> Dict[str, int]:
    functions = {s.name: s for s in tree.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))}
    order = _Order(functions)
    order.run(tree.body)
    # a name bound nowhere at module level is pyflakes' business (undefined), not an ordering problem
    return {n: line for n, line in order.early.items() if n in order.bound}


def _import_time_order(before: ast.Module, after: ast.Module) -> List[Problem]:
    old = _early_reads(before)
    return [Problem(line, f"`{name}` is used at import time before the module defines it")
            for name, line in sorted(_early_reads(after).items(), key=lambda kv: kv[1]) if name not in old]


# -- signatures --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Signature:
    positional: Tuple[str, ...]  # positional-only and positional-or-keyword, in order
    posonly: int
    required: int  # positional parameters without a default
    varargs: bool
    kwonly: Tuple[str, ...]
    kwonly_required: Tuple[str, ...]
    varkw: bool

    @classmethod
    def of(cls, fn, drop_first: bool = False) -> "Signature":
        a = fn.args
        pos = [p.arg for p in a.posonlyargs + a.args]
        required = len(pos) - len(a.defaults)
        posonly = len(a.posonlyargs)
        if drop_first and pos:
            pos, required, posonly = pos[1:], max(required - 1, 0), max(posonly - 1, 0)
        kwonly = tuple(p.arg for p in a.kwonlyargs)
        kw_required = tuple(p.arg for p, d in zip(a.kwonlyargs, a.kw_defaults) if d is None)
        return cls(tuple(pos), posonly, required, a.vararg is not None, kwonly, kw_required, a.kwarg is not None)

    def fits(self, call: ast.Call) -> bool:
        """Whether the call's arguments bind to these parameters; a call with `*args` or `**kwargs` is taken to
        fit (what it passes is not known before it runs)."""
        if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
            return True
        n = len(call.args)
        if n > len(self.positional) and not self.varargs:
            return False
        filled = set(self.positional[:n])
        for k in call.keywords:
            if k.arg in filled:
                return False
            if k.arg in self.positional[self.posonly:] or k.arg in self.kwonly:
                filled.add(k.arg)
            elif not self.varkw:
                return False
        return set(self.positional[:self.required]) <= filled and set(self.kwonly_required) <= filled


def _defs(tree: ast.Module) -> Dict[str, Tuple[str, object]]:
    """'path' -> (kind, node) for functions ("f", "main.closure"), methods ("Trainer.fit") and classes (by their
    `__init__`, "Trainer"). Definitions under `if`/`for`/`with` count at the enclosing level; a name defined twice
    at one level is left out (which one a call reaches is not known)."""
    found: Dict[str, Tuple[str, object]] = {}
    twice: Set[str] = set()

    def walk(body, prefix: str, in_class: bool) -> None:
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                key = prefix + stmt.name
                (twice.add(key) if key in found else found.__setitem__(key, ("method" if in_class else "function",
                                                                             stmt)))
                walk(stmt.body, key + ".", False)
            elif isinstance(stmt, ast.ClassDef):
                key = prefix + stmt.name
                init = next((s for s in stmt.body if isinstance(s, ast.FunctionDef) and s.name == "__init__"), None)
                if init is not None:
                    (twice.add(key) if key in found else found.__setitem__(key, ("class", init)))
                walk(stmt.body, key + ".", True)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    inner = getattr(stmt, field, None)
                    if isinstance(inner, list):
                        walk([s for s in inner if isinstance(s, ast.stmt)] +
                             [s for h in inner if isinstance(h, ast.ExceptHandler) for s in h.body], prefix, in_class)
    walk(tree.body, "", False)
    return {k: v for k, v in found.items() if k not in twice}


def _signature(kind: str, node) -> Signature:
    if kind == "class":
        return Signature.of(node, drop_first=True)
    if kind == "method":
        static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)
        return Signature.of(node, drop_first=not static)
    return Signature.of(node)


def changed_signatures(source: str, output: str) -> Dict[str, Signature]:
    """'path' -> new Signature for each function, method or class whose parameters the migration changed."""
    before, after = _parse(source), _parse(output)
    if before is None or after is None:
        return {}
    return _changed(_defs(before), _defs(after))


def _changed(old: Dict[str, Tuple[str, object]], new: Dict[str, Tuple[str, object]]) -> Dict[str, Signature]:
    out = {}
    for key, (kind, node) in new.items():
        if key in old and old[key][0] == kind:
            sig = _signature(kind, node)
            if sig != _signature(*old[key]):
                out[key] = sig
    return out


def _signature_fit(before: ast.Module, after: ast.Module) -> List[Problem]:
    new_defs = _defs(after)
    changed = _changed(_defs(before), new_defs)
    if not changed:
        return []
    problems = []
    functions: Dict[str, List[str]] = {}  # short name -> changed functions and classes of that name
    methods: Dict[str, List[str]] = {}
    for key in changed:
        (methods if new_defs[key][0] == "method" else functions).setdefault(key.rsplit(".", 1)[-1], []).append(key)
    call_funcs = {id(n.func): n for n in ast.walk(after) if isinstance(n, ast.Call)}
    local = _function_local_loads(after)
    for node in ast.walk(after):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in functions \
                and id(node) not in local:
            keys, shown = functions[node.id], node.id
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self" \
                and node.attr in methods:
            keys, shown = methods[node.attr], f"self.{node.attr}"
        else:
            continue
        call = call_funcs.get(id(node))
        if call is None:
            problems.append(Problem(node.lineno, f"`{shown}` is handed over as a value, so whoever calls it still "
                                                 f"passes the old arguments: its parameters must not change"))
        elif not any(changed[k].fits(call) for k in keys):
            problems.append(Problem(node.lineno, f"this call of `{shown}` does not fit the parameters the migration "
                                                 f"gave it"))
    return problems


def fits_elsewhere(module: str, changed: Dict[str, Signature], caller: str) -> List[Problem]:
    """Calls that another file of the run (`caller`, its text) makes to the top-level functions and classes of
    `module` (a module name, e.g. "trainer" or "pkg.trainer") whose signatures changed: each must fit."""
    tree = _parse(caller)
    top = {k: s for k, s in changed.items() if "." not in k}
    if tree is None or not top:
        return []
    short = module.rsplit(".", 1)[-1]
    local: Dict[str, str] = {}  # local name -> changed key
    modules: Set[str] = set()  # local names of the module itself
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.rsplit(".", 1)[-1] == short:
            for a in node.names:
                if a.name in top:
                    local[a.asname or a.name] = a.name
        if isinstance(node, ast.ImportFrom):  # `from pkg import trainer`, `from . import trainer`
            for a in node.names:
                if a.name == short:
                    modules.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.rsplit(".", 1)[-1] == short:
                    modules.add(a.asname or a.name)
    if not local and not modules:
        return []
    problems = []
    call_funcs = {id(n.func): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in local:
            key, shown = local[node.id], node.id
        elif isinstance(node, ast.Attribute) and node.attr in top and _dotted(node.value) in modules:
            key, shown = node.attr, f"{_dotted(node.value)}.{node.attr}"
        if key is None:
            continue
        call = call_funcs.get(id(node))
        if call is None:
            problems.append(Problem(node.lineno, f"`{shown}` (from {module}) is handed over as a value, so whoever "
                                                 f"calls it still passes the old arguments"))
        elif not top[key].fits(call):
            problems.append(Problem(node.lineno, f"this call of `{shown}` (from {module}) does not fit the "
                                                 f"parameters the migration gave it"))
    return problems


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp,
           ast.GeneratorExp)


def _own_bindings(scope) -> Set[str]:
    """Names a function, lambda or comprehension binds itself (parameters, assignments, imports, nested defs),
    less those it declares global: Python's rule for what is local to a function scope."""
    if isinstance(scope, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        return {n.id for g in scope.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
    a = scope.args
    bound = {p.arg for p in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg] if p is not None}
    declared: Set[str] = set()
    todo = list(scope.body) if isinstance(scope.body, list) else [scope.body]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Global):
            declared.update(node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
            todo.extend(node.decorator_list)
            continue  # its body is its own scope
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        if isinstance(node, _SCOPES):
            continue
        todo.extend(ast.iter_child_nodes(node))
    return bound - declared


def _function_local_loads(tree: ast.Module) -> Set[int]:
    """id() of the Name loads that read a function's own parameter or local (or an enclosing function's), not a
    module-level name: `train` in `def test(model, train=False): if train: ...` is not the function `train`."""
    found: Set[int] = set()

    def walk(node, bound: Set[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Load) and child.id in bound:
                found.add(id(child))
            inner = bound | _own_bindings(child) if isinstance(child, _SCOPES) else bound
            walk(child, inner)

    walk(tree, set())
    return found


def _dotted(node) -> Optional[str]:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


# -- distributed machinery ---------------------------------------------------------------------------------------

def _calls_named(tree: ast.Module, names: Set[str]) -> List[ast.Call]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
            if name in names:
                out.append(node)
    return out


def _fw_method_calls(tree: ast.Module, methods: Set[str]) -> List[ast.Call]:
    """`fabric.setup(...)`, `self.accelerator.prepare(...)`: calls of those methods on the framework object."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in methods:
            recv = _dotted(node.func.value) or ""
            if recv.rsplit(".", 1)[-1] in ("fabric", "accelerator") or recv.endswith(("fabric", "accelerator")):
                out.append(node)
    return out


def _framework(tree: ast.Module) -> Optional[str]:
    """"made" when the object is made here (`Fabric(...)` / `Accelerator(...)`), "handed in" when a function takes
    it (a `fabric` / `accelerator` parameter), else None."""
    if _calls_named(tree, _FW_CTORS):
        return "made"
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.arg in ("fabric", "accelerator"):
            return "handed in"
    return None


def _machinery(before: ast.Module, after: ast.Module) -> List[Problem]:
    problems = []
    wrapped_before = _calls_named(before, _WRAPPERS)
    wrapped_after = _calls_named(after, _WRAPPERS)
    samplers_before = _calls_named(before, {"DistributedSampler"})
    samplers_after = _calls_named(after, {"DistributedSampler"})
    groups_before = _calls_named(before, {"init_process_group"})
    groups_after = _calls_named(after, {"init_process_group"})
    removed = []
    if len(wrapped_after) < len(wrapped_before):
        removed.append(("the DDP wrapper", wrapped_before[0].lineno, _SETUP))
    if len(samplers_after) < len(samplers_before):
        removed.append(("the DistributedSampler", samplers_before[0].lineno, _SETUP_LOADERS))
    if len(groups_after) < len(groups_before):
        removed.append(("`init_process_group`", groups_before[0].lineno, None))
    if not removed:
        return []
    fw = _framework(after)
    for what, line, needs in removed:
        if fw is None:
            problems.append(Problem(1, f"{what} was removed but no framework object is made or handed in here to "
                                       f"replace it", line))
        # a module that is handed the object (a trainer class) is given set-up models and loaders by the entry
        # script that makes it; that file is checked on its own
        elif fw == "made" and needs is not None and not [c for c in _fw_method_calls(after, needs) if c.args]:
            verb = "set up" if needs is _SETUP else "set up as a loader"
            problems.append(Problem(1, f"{what} was removed but nothing is {verb} through the framework to "
                                       f"replace it", line))
    if len(wrapped_after) < len(wrapped_before):
        for node in ast.walk(after):
            # setting it on a model that is not wrapped does nothing; reading it fails
            if isinstance(node, ast.Attribute) and node.attr == "require_backward_grad_sync" and \
                    isinstance(node.ctx, ast.Load):
                problems.append(Problem(node.lineno, "`require_backward_grad_sync` is a DDP attribute, and the "
                                                     "model is no longer wrapped in DDP"))
                break
    return problems


def problems_at_input_lines(source: str, output: str, problems: List[Problem]) -> List[Tuple[int, str]]:
    """(input line, message) for each problem, through the diff between input and output."""
    from migrator.linemap import back_map
    mp = back_map(source, output)
    return [(p.input_line or mp[min(max(p.line - 1, 0), len(mp) - 1)], p.message) for p in problems]


# -- across the files of one run ---------------------------------------------------------------------------------

def top_signatures(code: str) -> Dict[str, Signature]:
    """Top-level functions and classes of a module and their parameters."""
    tree = _parse(code)
    if tree is None:
        return {}
    return {k: _signature(kind, node) for k, (kind, node) in _defs(tree).items() if "." not in k}


_IMPORTED = re.compile(r"^[ \t]*(?:from[ \t]+([\w.]+)[ \t]+import[ \t]+\(?([\w, \t]+)|import[ \t]+([\w., \t]+))", re.M)


def _imported_names(text: str) -> Set[str]:
    """Every dotted part of the modules a text imports, and the names it imports from them (cheap, by regex)."""
    out: Set[str] = set()
    for frm, names, plain in _IMPORTED.findall(text):
        for mod in ([frm] if frm else plain.split(",")):
            out.update(mod.strip().split(" ")[0].split("."))
        out.update(n.strip().split(" ")[0] for n in names.split(","))
    return out


def across_files(files: Dict[str, Tuple[str, str]]) -> Dict[str, List[Tuple[int, str]]]:
    """The files of one run that must be left unchanged because a call between two of them no longer fits.

    Input: path -> (input text, output text) for every Python file of the run (unchanged ones too: a caller in
    another folder, one that never names torch, counts). A call from one file to a top-level function or class of
    another (imported by module name) is checked against the callee's output signature where either file changed;
    it fails when the output has more calls that do not fit than the input had (modules are matched by file name,
    so a same-named module elsewhere must not count against the run). Both files of such a call are left
    unchanged, and so on until every call fits (a caller that passes the framework object to a callee that was left
    unchanged is itself left unchanged). Output: path -> [(input line, message)] for the files to leave unchanged;
    {} when all fit. Cost: only pairs where one side changed and the caller names the callee's module are parsed."""
    current = {p: out for p, (_, out) in files.items()}
    stems = {p: p.replace("\\", "/").rsplit("/", 1)[-1][:-3] for p in files if p.endswith(".py")}
    by_stem: Dict[str, List[str]] = {}
    for p, stem in stems.items():
        by_stem.setdefault(stem, []).append(p)
    found: Dict[str, List[Tuple[int, str]]] = {}
    for _ in range(len(files) + 1):
        changed = [p for p in files if current[p] != files[p][0]]
        pairs = set()
        for callee in changed:
            if callee in stems:
                pairs.update((callee, caller) for caller in files
                             if caller != callee and stems[callee] in current[caller])
        for caller in changed:
            for name in _imported_names(current[caller]):
                pairs.update((callee, caller) for callee in by_stem.get(name, ()) if callee != caller)
        reverted = False
        for callee, caller in sorted(pairs):
            if current[callee] == files[callee][0] and current[caller] == files[caller][0]:
                continue  # put back by an earlier pair of this round
            stem = stems[callee]
            problems = fits_elsewhere(stem, top_signatures(current[callee]), current[caller])
            if not problems or len(problems) <= len(fits_elsewhere(stem, top_signatures(files[callee][0]),
                                                                   files[caller][0])):
                continue
            where = ", ".join(f"{caller}:{p.line}" for p in problems[:3])
            for path in (callee, caller):
                if current[path] != files[path][0]:
                    line = _input_line(files[caller], problems[0].line) if path == caller else 1
                    current[path] = files[path][0]
                    reverted = True
                    found.setdefault(path, []).append(
                        (line, f"a call between {caller} and {callee} would no longer fit ({where}: "
                               f"{problems[0].message})"))
        if not reverted:
            break
    return found


def _input_line(texts: Tuple[str, str], out_line: int) -> int:
    from migrator.linemap import back_map
    mp = back_map(texts[0], texts[1])
    return mp[min(max(out_line - 1, 0), len(mp) - 1)]
