"""Where hand-made tensors reach a set-up model: the tracing behind PTM114 (input-device).

A script that never places anything on a device trains on the CPU. After the migration the framework moves the
set-up model and the batches of set-up loaders to the process's device, and every other tensor stays where the
script makes it. `Tracer` follows, inside one file, what reaches a set-up model's call and what meets a device
tensor (arithmetic, a torch function, a loss module) back to where it is made, and says how to put it on the
device (`Fix`):

- `Kw(call)`: a tensor factory without `device=` (torch.randn, zeros, arange, ...) gets `device=<fw>.device`; on
  the CPU this draws the very same numbers as before;
- `Wrap(node)`: `.to(<fw>.device)` after a constructor (torch.tensor, from_numpy, FloatTensor, ...), after a
  factory that takes a `generator=` (a CPU generator cannot make CUDA tensors), after a call of a helper of the
  module, or, where the binding cannot be changed (made at import time or out of reach of the framework object,
  also used as numpy or by a Dataset), after the name where it is used;
- `After(statement, name)`: `a, b = helper()` is followed by `a = a.to(<fw>.device)`.

What cannot be followed (a call into another module, a method of an object, a parameter whose callers are out of
sight, a loader that is not set up) is `unknown`, with a reason.

Flow: a name's value at a use is the last binding before it in the same block or an enclosing one, the bindings
between that one and the use, and, in a loop, the bindings later in the loop (the next iteration). Names are
followed in top-level functions and module-level code (the main guard included), and into the callers of a
function for its parameters; class bodies are not followed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Optional, Set, Tuple

import libcst as cst

from migrator.analysis import MAIN_GUARD, MODULE, Facts, batch_names
from migrator.imports import ImportTable
from migrator.names import dotted
from migrator.rules._flow_walk import MODEL_NOT_FORWARD, Binding, Walker, reaching
from migrator.rules._global_draws import nn_subclasses

FACTORIES = {"randn", "rand", "randint", "randperm", "zeros", "ones", "full", "empty", "arange", "linspace",
             "logspace", "eye", "tril_indices", "triu_indices", "empty_strided", "bartlett_window",
             "hann_window", "hamming_window"}
LIKE = {"randn_like", "rand_like", "randint_like", "zeros_like", "ones_like", "full_like", "empty_like"}
MAKERS = {"tensor", "as_tensor", "from_numpy", "Tensor", "FloatTensor", "LongTensor", "IntTensor", "DoubleTensor",
          "HalfTensor", "BoolTensor", "ByteTensor", "ShortTensor", "CharTensor", "BFloat16Tensor", "asarray"}
# tensor methods whose result is not a tensor
NOT_TENSOR_METHODS = {"item", "tolist", "numpy", "size", "dim", "numel", "nelement", "element_size", "data_ptr",
                      "is_contiguous", "get_device", "stride", "ndimension", "__len__", "storage", "type",
                      "backward", "register_hook"}
NOT_TENSOR_ATTRS = {"shape", "dtype", "device", "ndim", "requires_grad", "is_cuda", "is_leaf", "names", "layout"}
# builtins whose result is the thing passed in (`next(iter(loader))`)
PASS_THROUGH = {"next", "iter"}
BUILTINS = {"len", "int", "float", "str", "bool", "range", "list", "tuple", "dict", "set", "zip", "enumerate",
            "sorted", "reversed", "min", "max", "sum", "abs", "round", "print", "isinstance", "open", "map", "filter",
            "any", "all", "type", "vars", "getattr", "hasattr", "repr", "format", "divmod", "pow", "hash", "id",
            "input", "ord", "chr", "hex", "bin", "oct", "callable", "issubclass", "super", "object", "slice",
            "frozenset", "bytes", "complex", "setattr", "globals", "locals", "exit", "quit"} | PASS_THROUGH
# libraries whose values are never torch tensors (a tensor handed to them must stay on the CPU)
NOT_TORCH = {"numpy", "math", "random", "os", "sys", "time", "argparse", "json", "yaml", "collections", "itertools",
             "functools", "pathlib", "gym", "gymnasium", "matplotlib", "pandas", "PIL", "re", "string", "pickle",
             "csv", "logging", "warnings", "datetime", "copy", "typing", "tqdm", "wandb", "scipy", "sklearn", "shutil",
             "glob", "operator", "statistics", "dataclasses", "configparser", "omegaconf", "hydra", "tyro", "seaborn",
             "cv2", "imageio", "h5py", "socket", "platform", "subprocess", "uuid", "hashlib", "contextlib", "click",
             "absl", "tensorboardX", "torch.utils.tensorboard"}
# parameter names that hold the script's settings
CONFIG_NAMES = {"args", "opt", "opts", "cfg", "config", "conf", "hparams", "hp", "params", "settings", "flags",
                "FLAGS", "options"}
INIT_METHODS = {"__init__", "reset_parameters", "_reset_parameters", "init_weights", "_init_weights", "extra_repr",
                "__repr__", "__str__"}
TENSOR, MODULE_VALUE, OBJECT, VALUE = "tensor", "module", "object", "value"


@dataclass(frozen=True)
class Kw:
    call: cst.Call


@dataclass(frozen=True)
class Wrap:
    node: cst.BaseExpression


@dataclass(frozen=True)
class After:
    stmt: cst.SimpleStatementLine
    name: str
    index: int = 0


@dataclass(frozen=True)
class Res:
    """What an expression holds (a tensor, an nn.Module, another object, a plain value), whether part of it comes
    from the device (a set-up loader's batch, a set-up model's output), the fixes that put the rest there, and what
    could not be followed."""
    what: str = VALUE
    dev: bool = False
    fixes: FrozenSet = frozenset()
    unknown: Tuple[str, ...] = ()
    set_up: bool = False  # a set-up model
    container: bool = False  # a tuple, list or dict (of tensors): `.to()` cannot follow it
    cls: Optional[str] = None  # the class of this module an object is an instance of

    @property
    def tensor(self) -> bool:
        return self.what == TENSOR

    def __or__(self, other: "Res") -> "Res":
        what = TENSOR if TENSOR in (self.what, other.what) else self.what if self.what == other.what else VALUE
        return Res(what, self.dev or other.dev, self.fixes | other.fixes, _merge(self.unknown, other.unknown),
                   container=self.container or other.container, cls=self.cls if self.cls == other.cls else None)


PLAIN = Res()
ON_DEVICE = Res(TENSOR, dev=True)


def unknown(reason: str) -> Res:
    return Res(unknown=(reason,))


def _merge(a: Tuple[str, ...], b: Tuple[str, ...]) -> Tuple[str, ...]:
    return a + tuple(r for r in b if r not in a)


class Tracer:
    """Classifies the expressions of one module (see the module docstring). `facts` are the analysis' facts."""

    def __init__(self, module: cst.Module, facts: Facts, source: str):
        self.facts = facts
        self.table = ImportTable(source)
        self.w = Walker(facts)
        module.visit(self.w)
        self.memo: Dict[int, Res] = {}
        self.busy: Set[int] = set()
        self.nn_classes = self._nn_classes()
        self.batch: Dict[str, Set[str]] = {f: batch_names(facts, f) for f in self.w.functions}
        self.batch[MODULE] = batch_names(facts, MODULE) | batch_names(facts, MAIN_GUARD)
        self.loaders = set(facts.loaders)
        self.reachable_scopes = facts.fw_scopes()

    # -- where the framework object is in reach
    def reachable(self, node: cst.CSTNode) -> bool:
        scope = self.w.scope_of.get(id(node))
        if scope is None:
            return False
        if scope != MODULE:
            return scope in self.reachable_scopes
        setup = self.facts.setup_scope
        return setup == MODULE or (setup == MAIN_GUARD and id(node) in self.w.in_guard)

    def fix_node(self, fix) -> cst.CSTNode:
        return fix.call if isinstance(fix, Kw) else fix.node if isinstance(fix, Wrap) else fix.stmt

    # -- expressions
    def classify(self, node: cst.BaseExpression) -> Res:
        key = id(node)
        if key in self.memo:
            return self.memo[key]
        if key in self.busy:
            return PLAIN  # a cycle (`h = model(x, h)` in a loop): the other bindings decide
        self.busy.add(key)
        try:
            res = self._classify(node)
        finally:
            self.busy.discard(key)
        self.memo[key] = res
        return res

    def _classify(self, node: cst.BaseExpression) -> Res:
        if isinstance(node, cst.Name):
            return self.name(node)
        if isinstance(node, cst.Attribute):
            if node.attr.value in NOT_TENSOR_ATTRS:
                return PLAIN
            inner = self.classify(node.value)
            if inner.what == MODULE_VALUE:  # a model's weight: on the device once the model is set up or moved
                return ON_DEVICE if inner.set_up else Res(TENSOR, fixes=inner.fixes, unknown=inner.unknown)
            return self._chain(node, node.value, inner) if inner.tensor else Res(inner.what, unknown=inner.unknown)
        if isinstance(node, cst.Subscript):
            inner = self.classify(node.value)
            return self._chain(node, node.value, inner) if inner.tensor else Res(unknown=inner.unknown)
        if isinstance(node, cst.Call):
            return self.call(node)
        if isinstance(node, cst.BinaryOperation):
            return self.classify(node.left) | self.classify(node.right)
        if isinstance(node, cst.UnaryOperation):
            return self.classify(node.expression)
        if isinstance(node, cst.Comparison):
            res = self.classify(node.left)
            for c in node.comparisons:
                res = res | self.classify(c.comparator)
            return res
        if isinstance(node, cst.IfExp):
            return self.classify(node.body) | self.classify(node.orelse)
        if isinstance(node, (cst.Tuple, cst.List, cst.Set, cst.Dict)):
            res = PLAIN
            for el in node.elements:
                if isinstance(el, (cst.Element, cst.StarredElement, cst.DictElement)):
                    res = res | self.classify(el.value)
            return Res(res.what, res.dev, res.fixes, res.unknown, container=True)
        if isinstance(node, (cst.ListComp, cst.GeneratorExp, cst.SetComp)):
            res = self.classify(node.elt)
            return Res(res.what, res.dev, res.fixes, res.unknown, container=True)
        if isinstance(node, cst.StarredElement):
            return self.classify(node.value)
        return PLAIN

    def _chain(self, node, child, inner: Res) -> Res:
        """`x[i]`, `x.T`, `x.float()`: where `x` is; a wrap of `x` itself moves out to the whole chain."""
        if len(inner.fixes) == 1:
            fix = next(iter(inner.fixes))
            if isinstance(fix, Wrap) and fix.node is child:
                return Res(TENSOR, inner.dev, frozenset({Wrap(node)}), inner.unknown)
        return Res(TENSOR, inner.dev, inner.fixes, inner.unknown)

    def torch_name(self, func: cst.BaseExpression) -> Optional[str]:
        for q in self.table.names(func):
            if q.startswith("torch."):
                return q
        return None

    def not_torch(self, func: cst.BaseExpression) -> bool:
        return any(q.split(".")[0] in NOT_TORCH or q.startswith("torch.utils.tensorboard")
                   for q in self.table.names(func))

    def imported(self, func: cst.BaseExpression) -> bool:
        return bool(self.table.names(func))

    def call(self, node: cst.Call) -> Res:
        func = node.func
        if self.w.is_model_call(node):
            return ON_DEVICE
        kws = {a.keyword.value for a in node.args if a.keyword is not None}
        q = self.torch_name(func)
        if q is not None:
            return self._torch_call(node, q, kws)
        if self.not_torch(func):
            return PLAIN
        if isinstance(func, cst.Name):
            name = func.value
            local = self._global_kind(name)
            if local == "class":
                if name in self.nn_classes:  # a module that is not set up: moved where it is made
                    return Res(MODULE_VALUE, fixes=frozenset({Wrap(node)}))
                return Res(OBJECT, cls=name)
            if local == "function":
                return self.helper(node, name)
            if name in BUILTINS and local is None:
                if name in PASS_THROUGH and node.args:
                    return self.classify(node.args[0].value)
                return PLAIN
        if isinstance(func, cst.Attribute) and not self.imported(func):
            recv = self.classify(func.value)
            method = func.attr.value
            if recv.tensor:
                if method in NOT_TENSOR_METHODS:
                    return Res(unknown=recv.unknown)
                if method == "cpu":
                    return Res(TENSOR, unknown=_merge(recv.unknown, (f"`{code_of(node)}`",)))
                if method == "to" and node.args and dotted(node.args[0].value) == f"{self.facts.fw}.device":
                    return ON_DEVICE
                if method.startswith("new_"):
                    return Res(TENSOR, recv.dev, frozenset(), recv.unknown)
                res = self._chain(node, func.value, recv)
                for a in node.args:  # `x.masked_fill(mask, 0)`: a tensor argument goes along
                    arg = self.classify(a.value)
                    res = Res(TENSOR, res.dev or arg.dev, res.fixes | arg.fixes, res.unknown)
                return res
            if recv.what == MODULE_VALUE:
                if method in MODEL_NOT_FORWARD:
                    return PLAIN
                return ON_DEVICE if recv.set_up else self._module_call(node, recv)
            if recv.what == OBJECT and recv.cls and not recv.unknown:
                made = self.method_returns(recv.cls, method)
                if made is not None:  # `memory.sample(n)` returns tensors its class makes: moved where called
                    return Res(TENSOR, fixes=frozenset({Wrap(node)})) if made else PLAIN
            if recv.what == OBJECT or recv.unknown:
                return Res(unknown=recv.unknown or (f"`{code_of(node)}`",))
            return PLAIN  # a method of a plain value: `args.x`, `"a b".split()`, `parser.parse_args()`
        callee = self.classify(func)
        if callee.what == MODULE_VALUE:
            return ON_DEVICE if callee.set_up else self._module_call(node, callee)
        return unknown(f"`{code_of(node)}`")

    def _module_call(self, node: cst.Call, module: Res) -> Res:
        """A module that is not set up (a target network, a loss): its weights go where its inputs go."""
        res = self._args(node)
        return Res(TENSOR, res.dev, res.fixes | module.fixes, _merge(res.unknown, module.unknown))

    def _torch_call(self, node: cst.Call, q: str, kws: Set[str]) -> Res:
        last = q.rsplit(".", 1)[-1]
        top = q.count(".") == 1
        if top and last in FACTORIES:
            if "device" in kws or "out" in kws:
                return ON_DEVICE
            return Res(TENSOR, fixes=frozenset({Wrap(node) if "generator" in kws else Kw(node)}))
        if top and last in LIKE:
            if "device" in kws or not node.args:
                return ON_DEVICE
            inner = self.classify(node.args[0].value)
            return Res(TENSOR, inner.dev, inner.fixes, inner.unknown)
        if top and last in MAKERS:
            if "device" in kws:
                return ON_DEVICE
            return Res(TENSOR, fixes=frozenset({Wrap(node)}))
        if last in ("Variable", "Parameter"):  # torch.autograd.Variable(x): x itself
            return self.classify(node.args[0].value) if node.args else PLAIN
        if last == "DataLoader":
            return Res(OBJECT, unknown=(f"the batches of `{code_of(node)}`, a loader that is not set up",))
        if last[:1].isupper():
            if not q.startswith("torch.nn."):
                return Res(OBJECT)
            # a layer made outside the model (not set up): moved where it is made; a loss has no weights
            return Res(MODULE_VALUE, fixes=frozenset() if last.endswith("Loss") else frozenset({Wrap(node)}))
        if q.startswith(("torch.utils.", "torch.distributed.", "torch.cuda.", "torch.backends.", "torch.save",
                         "torch.load", "torch.manual_seed", "torch.set_", "torch.get_", "torch.is_", "torch.no_grad",
                         "torch.enable_grad", "torch.inference_mode", "torch.compile", "torch.optim.")):
            return PLAIN
        return self._args(node)

    def _args(self, node: cst.Call) -> Res:
        """A torch function or a loss module: a tensor where its tensor arguments are."""
        res = Res(TENSOR)
        for a in node.args:
            if a.keyword is not None and a.keyword.value in ("dim", "dtype", "keepdim", "device", "out"):
                continue
            r = self.classify(a.value)
            res = Res(TENSOR, res.dev or r.dev, res.fixes | r.fixes, _merge(res.unknown, r.unknown))
        return res

    def _global_kind(self, name: str) -> Optional[str]:
        """"function" / "class" for a def of this module that nothing else binds; "other" when bound otherwise."""
        bindings = self.w.bindings.get((MODULE, name), [])
        if not bindings:
            return None
        if all(b.kind == "def" for b in bindings):
            if name in self.w.classes:
                return "class"
            if name in self.w.functions:
                return "function"
        return "other"

    # -- helpers of this module
    def helper(self, node: cst.Call, name: str) -> Res:
        """A call of a function of this module: what it returns; a tensor made on the CPU is moved at the call."""
        res = self.returns(name)
        if res.tensor and res.fixes and not res.dev:  # made on the CPU only (a result of the model is not moved)
            return Res(TENSOR, False, frozenset({Wrap(node)}), res.unknown)
        return res

    def returns(self, name: str, index: Optional[int] = None) -> Res:
        fn = self.w.functions[name]
        res: Optional[Res] = None
        for v in _return_values(fn):
            if isinstance(v, cst.Tuple):
                if index is None or index >= len(v.elements):
                    return unknown(f"what `{name}()` returns")
                v = v.elements[index].value
            elif index is not None:
                return unknown(f"what `{name}()` returns")
            r = self.classify(v)
            res = r if res is None else res | r
        return res if res is not None else PLAIN

    def method_returns(self, cls: str, method: str, index: Optional[int] = None) -> Optional[bool]:
        """Whether a method of a class of this module returns a tensor it makes on the CPU (a constructor or a
        factory without `device=`, in every `return`), or nothing but plain values (literals); None: it cannot be
        told (the class body is not followed further)."""
        fn = next((item for item in self.w.classes[cls].body.body
                   if isinstance(item, cst.FunctionDef) and item.name.value == method), None)
        if fn is None:
            return None
        made = set()
        for v in _return_values(fn):
            if isinstance(v, cst.Tuple):
                if index is None or index >= len(v.elements):
                    return None
                v = v.elements[index].value
            elif index is not None:
                return None
            q = self.torch_name(v.func) if isinstance(v, cst.Call) else None
            last = (q or "").rsplit(".", 1)[-1]
            kws = {a.keyword.value for a in v.args if a.keyword is not None} if isinstance(v, cst.Call) else set()
            if q and q.count(".") == 1 and last in FACTORIES | MAKERS and "device" not in kws:
                made.add(True)
            elif isinstance(v, (cst.Integer, cst.Float, cst.SimpleString, cst.Name)) and not isinstance(v, cst.Name) \
                    or (isinstance(v, cst.Name) and v.value in ("None", "True", "False")):
                made.add(False)
            else:
                return None
        return None if len(made) != 1 else made.pop()

    # -- names
    def name(self, node: cst.Name) -> Res:
        n = node.value
        use = self.w.uses.get(id(node))
        if use is None:
            return PLAIN
        if n in self.w.models:
            return Res(MODULE_VALUE, set_up=True)
        if n in self.batch.get(use.scope, ()):
            return ON_DEVICE
        scope = use.scope if (use.scope, n) in self.w.bindings else MODULE
        if scope == MODULE and n in self.batch[MODULE] and use.scope == MODULE:
            return ON_DEVICE
        if n in self.loaders and scope in (MODULE, self.facts.setup_scope):
            return ON_DEVICE  # a set-up loader: `next(iter(loader))` is a batch on the device
        bindings = self.w.bindings.get((scope, n), [])
        if not bindings:
            return PLAIN  # a builtin, or a name the module never binds
        if any(b.kind == "def" for b in bindings):
            kind = self._global_kind(n)
            if kind == "class":
                return Res(MODULE_VALUE if n in self.nn_classes else OBJECT)
            if kind == "function":
                return PLAIN
        found = reaching(bindings, use) if scope == use.scope else bindings
        res: Optional[Res] = None
        for b in found:
            r = self.binding(b)
            res = r if res is None else res | r
        res = res or PLAIN
        if not res.fixes:
            return res
        if res.what == MODULE_VALUE:  # a module is moved where it is made, or not at all
            if all(self.reachable(self.fix_node(f)) for f in res.fixes):
                return res
            return Res(MODULE_VALUE, unknown=_merge(res.unknown, (f"`{n}`, a module made out of reach of the "
                                                                  f"framework object",)))
        # the fixes go where the tensor is made; where that cannot be, the name is moved where it is used
        if all(self.reachable(self.fix_node(f)) for f in res.fixes) and not self._cpu_uses(scope, n):
            return res
        if self.reachable(node) and not res.container:
            return Res(TENSOR, res.dev, frozenset({Wrap(node)}), res.unknown)
        return Res(TENSOR, res.dev, frozenset(), _merge(res.unknown, (f"`{n}`",)))

    def _cpu_uses(self, scope: str, n: str) -> bool:
        """The name is also used where a CPU tensor is needed: `.numpy()`, numpy and other non-torch calls, a
        Dataset or a DataLoader (the set-up loader moves its batches)."""
        for use in self.w.uses_of.get((scope, n), ()):
            parent = self.w.parent.get(id(use.node))
            if isinstance(parent, cst.Attribute) and parent.attr.value == "numpy":
                return True
            if isinstance(parent, cst.Arg):
                call = self.w.parent.get(id(parent))
                if isinstance(call, cst.Call) and call.func is not use.node:
                    q = self.torch_name(call.func) or ""
                    if self.not_torch(call.func) or q.startswith("torch.utils.data"):
                        return True
                    if isinstance(call.func, cst.Name) and self._global_kind(call.func.value) == "class" \
                            and call.func.value not in self.nn_classes:
                        return True  # a Dataset of this module
        return False

    def binding(self, b: Binding) -> Res:
        key = id(b)
        if key in self.memo:
            return self.memo[key]
        if key in self.busy:
            return PLAIN
        self.busy.add(key)
        try:
            res = self._binding(b)
        finally:
            self.busy.discard(key)
        self.memo[key] = res
        return res

    def _binding(self, b: Binding) -> Res:
        if b.kind in ("value", "aug"):
            return self.classify(b.value)
        if b.kind == "param":
            return self.param(b)
        if b.kind == "for":
            it = b.value.iter
            if isinstance(it, cst.Call) and dotted(it.func) in ("range", "enumerate", "zip") \
                    and self._global_kind(dotted(it.func)) is None:
                if dotted(it.func) == "range":
                    return PLAIN
                res = PLAIN
                for a in it.args:
                    res = res | self.classify(a.value)
                return _rows(res)
            return _rows(self.classify(it))
        if b.kind == "item":
            v = b.value
            if isinstance(v, (cst.Tuple, cst.List)):
                if b.index < len(v.elements):
                    return self.classify(v.elements[b.index].value)
                return unknown(f"`{b.name}`")
            if isinstance(v, cst.Call) and isinstance(v.func, cst.Attribute) and not self.imported(v.func):
                recv = self.classify(v.func.value)
                if recv.what == OBJECT and recv.cls and not recv.unknown:
                    made = self.method_returns(recv.cls, v.func.attr.value, b.index)
                    if made is not None and not isinstance(b.stmt, cst.SimpleStatementLine) and made:
                        return unknown(f"`{b.name}`")  # `if c: a, b = f()` on one line: no line to move after
                    if made is not None:
                        return Res(TENSOR, fixes=frozenset({After(b.stmt, b.name, b.index)})) if made else PLAIN
            if isinstance(v, cst.Call) and isinstance(v.func, cst.Name) and self._global_kind(v.func.value) == "function":
                res = self.returns(v.func.value, b.index)
                if res.tensor and res.fixes and not res.dev and not isinstance(b.stmt, cst.SimpleStatementLine):
                    return unknown(f"`{b.name}`")  # `if c: a, b = f()` on one line: no line to move after
                if res.tensor and res.fixes and not res.dev:
                    return Res(TENSOR, res.dev, frozenset({After(b.stmt, b.name, b.index)}), res.unknown)
                return res
            return _rows(self.classify(v))
        if b.kind == "import":
            return unknown(f"`{b.name}`, imported")
        return unknown(f"`{b.name}`")

    def param(self, b: Binding) -> Res:
        fn = self.w.functions.get(b.scope)
        name = b.name
        if fn is None or name in CONFIG_NAMES or name in self.facts.loader_params.get(b.scope, set()):
            return PLAIN if fn is not None else unknown(f"`{name}`")
        calls = self.w.calls_of.get(b.scope, [])
        if not calls or b.scope in self.w.not_called:
            return unknown(f"`{name}`, a parameter of `{b.scope}()` whose callers pt-migrate cannot see")
        positional = [p.name.value for p in list(fn.params.posonly_params) + list(fn.params.params)]
        every = list(fn.params.posonly_params) + list(fn.params.params) + list(fn.params.kwonly_params)
        default = next((p.default for p in every if p.name.value == name), None)
        res: Optional[Res] = None
        for call in calls:
            if any(a.star for a in call.args):
                return unknown(f"`{name}`, a parameter of `{b.scope}()` called with *args / **kwargs")
            arg = None
            plain = [a for a in call.args if a.keyword is None]
            if name in positional and positional.index(name) < len(plain):
                arg = plain[positional.index(name)].value
            arg = next((a.value for a in call.args if a.keyword is not None and a.keyword.value == name), arg)
            value = arg if arg is not None else default
            if value is None:
                continue
            r = self.classify(value)
            res = r if res is None else res | r
        return res or PLAIN

    def _nn_classes(self) -> Set[str]:
        """Classes of this module that are nn.Modules (directly or through another class of the module)."""
        return nn_subclasses(self.w.classes, lambda base: any(q.startswith("torch.nn") for q in self.table.names(base)))


def _rows(res: Res) -> Res:
    """An item of a sequence (a loop over it, unpacking it): a tensor's rows are where it is."""
    return Res(res.what, res.dev, res.fixes, res.unknown)


def _return_values(fn: cst.FunctionDef) -> List[cst.BaseExpression]:
    out: List[cst.BaseExpression] = []

    class V(cst.CSTVisitor):
        def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
            return node is fn

        def visit_Lambda(self, node) -> bool:
            return False

        def visit_ClassDef(self, node) -> bool:
            return False

        def visit_Return(self, node: cst.Return) -> None:
            if node.value is not None:
                out.append(node.value)

    fn.visit(V())
    return out


def code_of(node: cst.CSTNode) -> str:
    text = " ".join(cst.Module(body=[]).code_for_node(node).split())
    return text if len(text) <= 60 else text[:57] + "..."
