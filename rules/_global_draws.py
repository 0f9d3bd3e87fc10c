"""Shared by PTM145: where a script draws from a global random generator (torch's, NumPy's legacy one, Python's
`random`), and whether it seeds at all.

Facts these rely on (torch 2.13): a process that seeds nothing starts torch's default generator from a random
seed (`torch.initial_seed()` differs between processes), and Python's `random` and NumPy's legacy generator are
seeded from the OS, so every rank of an unseeded script draws its own numbers. DataLoader workers seed `random`,
torch and NumPy from a base seed drawn from the main process's torch generator when the loader's iterator is made.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Set

import libcst as cst

from migrator import matching as m
from migrator.analysis import is_main_guard
from migrator.names import dotted

TORCH_DRAWS = {"randn", "rand", "randint", "randn_like", "rand_like", "randint_like", "randperm", "bernoulli",
               "multinomial", "normal", "poisson"}
NUMPY_NOT_DRAWS = {"seed", "default_rng", "RandomState", "Generator", "get_state", "set_state", "SeedSequence",
                   "BitGenerator", "PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"}
RANDOM_DRAWS = {"random", "randint", "randrange", "choice", "choices", "shuffle", "sample", "uniform", "gauss",
                "normalvariate", "lognormvariate", "expovariate", "betavariate", "gammavariate", "triangular",
                "vonmisesvariate", "paretovariate", "weibullvariate", "binomialvariate", "getrandbits", "randbytes"}
ITEM_METHODS = ("__getitem__", "__getitems__", "__iter__", "__next__")

Names = Callable[[cst.CSTNode], Set[str]]  # qualified names of an expression (the transformer's provider)


def draw_kind(call: cst.Call, names: Names) -> Optional[str]:
    """"torch", "numpy" or "random" when `call` draws from that library's global generator, else None.

    `random_split` draws a permutation from torch's generator; a call given `generator=` draws from its own."""
    if any(a.keyword and a.keyword.value == "generator" for a in call.args):
        return None  # a generator of its own
    for q in names(call.func):
        head, _, last = q.rpartition(".")
        if head == "torch" and last in TORCH_DRAWS:
            return "torch"
        if last == "random_split" and head.startswith("torch.utils.data"):
            return "torch"
        if head == "numpy.random" and last not in NUMPY_NOT_DRAWS:
            return "numpy"
        if head == "random" and last in RANDOM_DRAWS:
            return "random"
    return None


def seeds_anywhere(module: cst.Module) -> bool:
    """Whether any call in the file names a seed (`torch.manual_seed`, `random.seed`, `np.random.seed`,
    `seed_everything`, `set_seed`, a helper `seed_all(...)`); `torch.initial_seed()` reads one and does not count.
    Wide on purpose: a script that seeds in any way keeps its own seeding."""
    for call in m.findall(module, m.Call()):
        name = dotted(call.func) or ""
        last = name.rpartition(".")[2].lower()
        if "seed" in last and last != "initial_seed":
            return True
    return False


def trains(loop: cst.CSTNode) -> bool:
    return bool(m.findall(loop, m.Call(func=m.Attribute(attr=m.Name("backward")))) or
                m.findall(loop, m.Call(func=m.Attribute(attr=m.Name("step")))))


def _direct_calls(node: cst.CSTNode, skip_training_loops: bool) -> List[cst.Call]:
    """Calls under `node`, not those in nested functions, classes or lambdas (run later, if ever), and, when asked,
    not those in a loop that trains (the training loop's own draws)."""
    out: List[cst.Call] = []

    class _V(cst.CSTVisitor):
        def visit_FunctionDef(self, n):
            return n is node

        def visit_ClassDef(self, n):
            return n is node

        def visit_Lambda(self, n):
            return False

        def visit_For(self, n):
            return not (skip_training_loops and trains(n))

        def visit_While(self, n):
            return not (skip_training_loops and trains(n))

        def visit_Call(self, n):
            out.append(n)

    node.visit(_V())
    return out


class Draws:
    """The module's top-level functions and classes, and which of them draw from a global generator when called
    (directly or through other local functions, a class through `__init__` and the `self.` methods it calls)."""

    def __init__(self, module: cst.Module, names: Names):
        self.names = names
        self.module = module
        self.functions: Dict[str, cst.FunctionDef] = {}
        self.classes: Dict[str, cst.ClassDef] = {}
        for s in module.body:
            if isinstance(s, cst.FunctionDef):
                self.functions[s.name.value] = s
            elif isinstance(s, cst.ClassDef):
                self.classes[s.name.value] = s
        self._memo: Dict[str, Optional[str]] = {}

    def _methods(self, cls: cst.ClassDef) -> Dict[str, cst.FunctionDef]:
        return {s.name.value: s for s in cls.body.body if isinstance(s, cst.FunctionDef)}

    def in_node(self, node: cst.CSTNode, skip_training_loops: bool = True, methods=None, seen=None) -> Optional[str]:
        """The kind of the first global draw `node` makes when it runs (local calls followed), else None."""
        seen = set() if seen is None else seen
        for call in _direct_calls(node, skip_training_loops):
            kind = draw_kind(call, self.names)
            if kind:
                return kind
            callee = dotted(call.func) or ""
            if methods and callee.startswith("self.") and callee[5:] in methods and callee not in seen:
                seen.add(callee)
                kind = self.in_node(methods[callee[5:]], skip_training_loops, methods, seen)
            elif callee in self.functions or callee in self.classes:
                kind = self.callable_draws(callee)
            if kind:
                return kind
        return None

    def callable_draws(self, name: str) -> Optional[str]:
        if name not in self._memo:
            self._memo[name] = None  # recursion guard
            if name in self.functions:
                self._memo[name] = self.in_node(self.functions[name])
            else:
                methods = self._methods(self.classes[name])
                init = methods.get("__init__")
                self._memo[name] = self.in_node(init, True, methods, {"self.__init__"}) if init else None
        return self._memo[name]

    def kinds_anywhere(self) -> Set[str]:
        """Every library the module draws from, anywhere."""
        return {k for k in (draw_kind(c, self.names) for c in m.findall(self.module, m.Call())) if k}

    def item_draws(self, name: str) -> Optional[str]:
        """For a local class: the kind its `__getitem__` / `__iter__` (or a `self.` method they call) draws, every
        loop included (a Dataset's per-sample randomness)."""
        if name not in self.classes:
            return None
        methods = self._methods(self.classes[name])
        for meth in ITEM_METHODS:
            if meth in methods:
                kind = self.in_node(methods[meth], False, methods, {f"self.{meth}"})
                if kind:
                    return kind
        return None


def nn_subclasses(classes: Dict[str, cst.ClassDef],
                  nn_base: Callable[[cst.BaseExpression], bool] = lambda base: False) -> Set[str]:
    """The names among `classes` that are nn.Modules: a base named `Module` (`nn.Module`, `torch.nn.Module`), one
    `nn_base` accepts (a qualified-name check), or another class found so."""
    found: Set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, cls in classes.items():
            if name not in found and any(
                    (dotted(base.value) or "") in found or nn_base(base.value)
                    or (dotted(base.value) or "").rsplit(".", 1)[-1] == "Module" for base in cls.bases):
                found.add(name)
                changed = True
    return found


def module_classes(module: cst.Module) -> Set[str]:
    """Classes of the file whose base is an nn.Module (`nn.Module`, `torch.nn.Module`, or another such class)."""
    return nn_subclasses({c.name.value: c for c in m.findall(module, m.ClassDef())})


def builds_module(stmt: cst.CSTNode, classes: Set[str]) -> List[str]:
    """The names `stmt` binds to new modules (`q_target = QNet()`, `q, q_target = QNet(), QNet()`,
    `net = torch.nn.Linear(4, 1)`); empty when it builds none."""
    if not (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 and isinstance(stmt.body[0], cst.Assign)
            and len(stmt.body[0].targets) == 1):
        return []
    target, value = stmt.body[0].targets[0].target, stmt.body[0].value
    pairs = list(zip(target.elements, value.elements)) if isinstance(target, cst.Tuple) and \
        isinstance(value, cst.Tuple) else [(None, value)] if not isinstance(target, cst.Tuple) else []
    out = []
    for t, v in pairs:
        v = v.value if isinstance(v, cst.Element) else v
        while isinstance(v, cst.Call) and isinstance(v.func, cst.Attribute) and isinstance(v.func.value, cst.Call):
            v = v.func.value  # `QNet().to(fabric.device)`, `Net().train()`: the construction inside
        func = (dotted(v.func) or "") if isinstance(v, cst.Call) else ""
        if func in classes or (func.startswith(("torch.nn.", "nn.")) and func.rsplit(".", 1)[-1][:1].isupper()):
            name = dotted(t.value if t is not None else target)
            if name:
                out.append(name)
    return out


def first_setup_draw(module: cst.Module, draws: Draws, setup_scope: Optional[str],
                     modules: Optional[Set[str]] = None):
    """(statement, scope) of the first statement on the path that sets up training that draws (itself or through
    a local function or class it calls) before the training loop, with scope "<module>", "<main-guard>" or the
    setup function's name; None when nothing draws before training starts.

    The path: the module's statements in order, the main guard's body, and the body of the setup function where
    a statement calls it. It ends at the first statement that holds a training loop or calls the setup function.
    `modules`: classes whose construction counts as a draw (module_classes), for scripts that build a module that
    is never set up."""
    from migrator.analysis import MAIN_GUARD, MODULE

    def walk(stmts, scope):
        for s in stmts:
            if isinstance(s, (cst.FunctionDef, cst.ClassDef)):
                continue
            if scope == MODULE and isinstance(s, cst.If) and is_main_guard(s):
                found = walk(s.body.body, MAIN_GUARD)
                if found is not None:
                    return found
                continue
            calls_setup = setup_scope in draws.functions and any(
                dotted(c.func) == setup_scope for c in _direct_calls(s, True))
            if calls_setup:
                before = [c for c in _direct_calls(s, True) if dotted(c.func) != setup_scope]
                if any(draw_kind(c, draws.names) or _local_draws(draws, dotted(c.func)) for c in before):
                    return s, scope  # `main(make_target())`, `main(Problem())`: drawn before the call
                return walk(draws.functions[setup_scope].body.body, setup_scope) or (END, None)
            if draws.in_node(s) or (modules is not None and builds_module(s, modules)):
                return s, scope  # `modules`: a module's random initial weights count as a draw too
            if any(trains(loop) for loop in m.findall(s, m.For() | m.While())):
                return END, None
        return None

    found = walk(module.body, MODULE)
    return None if found is None or found[0] is END else found


def _local_draws(draws: Draws, name: Optional[str]) -> Optional[str]:
    """The kind a call of the module's own function or class draws, else None."""
    if name in draws.functions or name in draws.classes:
        return draws.callable_draws(name)
    return None


END = object()
