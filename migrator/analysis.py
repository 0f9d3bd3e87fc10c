"""One read-only pass over a module that finds what the rules need: the training setup.

Facts are names (strings), not nodes, so they stay valid while the rules rewrite the tree one after another.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set

import libcst as cst
from libcst.metadata import GlobalScope, MetadataWrapper, QualifiedNameProvider, ScopeProvider

from migrator import matching as m
from migrator import param_sources, samplers
from migrator.imports import with_import_names
from migrator.matching import Visitor
from migrator.trains import backward_reached_from_loop
from migrator.names import (
    DDP_WRAPPERS,
    DISTRIBUTED_SAMPLERS,
    assigned_names,
    dotted,
    env_key,
    is_dataloader_ctor,
    is_optimizer_ctor,
    qualified_names,
)

MODULE = "<module>"
MAIN_GUARD = "<main-guard>"
CLASS_BODY = "<class>"  # a caller inside a class (analysis only: never a scope of the rules)
FRAMEWORK_CTORS = {
    "fabric": {"lightning.fabric.Fabric", "lightning.Fabric", "lightning.fabric.fabric.Fabric", "lightning_fabric.Fabric"},
    "accelerate": {"accelerate.Accelerator", "accelerate.accelerator.Accelerator"},
}
DEFAULT_FW_NAME = {"fabric": "fabric", "accelerate": "accelerator"}
RANK_ENV = {"LOCAL_RANK", "RANK", "WORLD_SIZE"}
FW_METHODS = {"backward", "setup", "setup_module", "setup_dataloaders", "prepare", "prepare_model"}
DEVICE_STRING = re.compile(r"^(cuda|cpu|mps|xpu|hpu)(:\d+)?$")
# Wrappers around a loader in a `for` header that keep its items: enumerate(loader), tqdm(loader), ...
LOADER_WRAPPERS = {"enumerate", "tqdm", "iter", "tqdm.tqdm", "tqdm.auto.tqdm"}


@dataclass
class FunctionInfo:
    name: str
    params: List[str]
    has_backward: bool = False
    has_print: bool = False
    calls: List[tuple] = field(default_factory=list)  # (callee, [arg dotted names or None], {kw: dotted})
    returns_loaders: bool = False
    loader_returns: List[bool] = field(default_factory=list)  # per returned value: a loader? (`return loader, sampler`)
    returns: Optional[List[Optional[str]]] = None  # names a top-level `return a, b` gives back
    loader_fors: List[tuple] = field(default_factory=list)  # (iterated name, [target names])
    all_params: Set[str] = field(default_factory=set)  # keyword-only and positional-only ones too
    reads_rank_env: bool = False  # os.environ["RANK"] and the like: the framework's properties replace them
    reads_dataset_len: bool = False  # len(x.dataset): a metric over a loader (PTM112 reduces it across ranks)
    evaluates: bool = False  # adds up or collects values in a loop over a parameter (PTM112 gathers them, Accelerate)
    writes_output: bool = False  # an output file or a writer (PTM151 writes it on the main process only)
    binds_fw: Optional[str] = None  # the name it binds the framework object to, when it constructs one


@dataclass
class Facts:
    target: str
    fw: str
    fw_exists: bool = False
    is_training: bool = False
    setup_scope: Optional[str] = None  # function name, MODULE or MAIN_GUARD
    optimizers: Dict[str, List[str]] = field(default_factory=dict)  # optimizer -> models it trains
    loaders: List[str] = field(default_factory=list)  # loaders assigned in the setup scope
    unsharded_loaders: Set[str] = field(default_factory=set)  # only evaluated: Fabric sets them up unsharded (PTM112)
    device_names: Set[str] = field(default_factory=set)
    functions: Dict[str, FunctionInfo] = field(default_factory=dict)
    fw_functions: Set[str] = field(default_factory=set)  # functions that take the framework object
    loader_params: Dict[str, Set[str]] = field(default_factory=dict)  # function -> params fed by set-up loaders
    external_fw: Set[str] = field(default_factory=set)  # local names of imported functions that take it
    unthreadable: Set[str] = field(default_factory=set)  # need it but are used other than by direct calls
    fw_globals: Set[str] = field(default_factory=set)  # handed over as values: they use the module's global object
    print_only: Set[str] = field(default_factory=set)  # top-level functions that do nothing but format and print
    print_only_calls: Set[str] = field(default_factory=set)  # of those, the ones whose calls get a main-process guard
    # calls of local (and imported fw) functions from class bodies: (top-level class or None, callee)
    class_calls: List[tuple] = field(default_factory=list)
    # functions that would need the object but keep their parameters: some caller cannot pass it (migrator.project
    # tells the modules that call them); and imported fw functions called where the object is out of reach
    keeps_signature: Set[str] = field(default_factory=set)
    external_unreached: Set[str] = field(default_factory=set)
    # DistributedSamplers read for more than feeding their loader (migrator/samplers.py): name -> the code that
    # reads it; they stay (PTM132), and the loaders built on them are not set up
    kept_samplers: Dict[str, str] = field(default_factory=dict)
    kept_loaders: Set[str] = field(default_factory=set)
    fw_classes: Set[str] = field(default_factory=set)  # classes whose methods call backward: they take it in __init__
    class_candidates: Set[str] = field(default_factory=set)  # the same before asking whether anything hands it one
    model_aliases: Set[str] = field(default_factory=set)  # set-up models under another name (in a factory)
    assign_calls: List[tuple] = field(default_factory=list)  # (scope, local function, [targets]) of `a, b = f()`
    accelerator_kwargs: Dict[str, str] = field(default_factory=dict)  # asked of PTM100 by later rules: kw -> code
    # options of the DDP wrappers PTM131 removed, for PTM100 to give the object (rules/_ddp_options.py)
    ddp_wrappers: List[object] = field(default_factory=list)
    # PTM131 kept a DistributedDataParallel wrapper (a model nothing sets up): it needs a process group even on one
    # device, so PTM100 asks Fabric for strategy="ddp"
    kept_ddp: bool = False
    # the first node that shows the script already uses the other framework (its constructor, or a backward
    # called on an object named like it): such a script is not migrated (engine, PTM005)
    other_framework: Optional[cst.CSTNode] = None
    fw_own: Set[str] = field(default_factory=set)  # functions that already take or make the framework object
    # the script constructs the target's framework object and calls its backward or setup / prepare: written for
    # the framework by hand, or migrated already (engine: left as it is)
    on_target: bool = False
    handed_over: Set[str] = field(default_factory=set)  # names the script itself passes to setup / prepare
    bare_models: List[str] = field(default_factory=list)  # trained by hand, no optimizer (migrator/manual_updates.py)
    # optimizers that the setup block binds only under an `if` (migrator/bindings.py): unbound on the other path,
    # so they are set up where they are made and the setup after that `if` does not name them (PTM105, PTM135)
    conditional_optimizers: Set[str] = field(default_factory=set)
    # asked of PTM100 by PTM114 / PTM115: the device the object picks ("cpu", or (flag code, whether the flag checks
    # the accelerator's presence itself, Fabric's accelerator when it is true: "cuda" or "auto")),
    # a comment above its creation, and a name bound in its block that the creation must follow
    device_choice: object = None
    device_comment: Optional[str] = None
    create_after: Optional[str] = None
    # the script's switches that chose a device PTM101 replaced (rules/device_flag.Switch): PTM115 carries them
    device_flags: List[object] = field(default_factory=list)
    # the source names no accelerator ("cuda", "mps", "xpu", "gpu", "accelerator"): with a literal CPU device it pins
    # the CPU (PTM101)
    cpu_only_source: bool = False

    @property
    def models(self) -> List[str]:
        seen: List[str] = []
        for ms in self.optimizers.values():
            for model in ms:
                if model not in seen:
                    seen.append(model)
        return seen + [mm for mm in self.bare_models if mm not in seen]

    def fw_scopes(self) -> Set[str]:
        scopes = set(self.fw_functions) | self.fw_own | self.fw_globals
        if self.setup_scope:
            scopes.add(self.setup_scope)
        # module-level code outside the main guard runs at import time, before a guard's object exists; the main
        # guard runs after the module-level code that made the object, which it reaches as a global
        if self.setup_scope == MODULE:
            scopes.add(MAIN_GUARD)
        return scopes


def is_device_expr(node: cst.BaseExpression, qnames) -> bool:
    """`torch.device(...)`, "cuda", `"cuda" if c else "cpu"`, f"cuda:{rank}", current_accelerator()."""
    if isinstance(node, cst.Call):
        q = qnames(node.func)
        return bool(q & {"torch.device", "torch.accelerator.current_accelerator"})
    if isinstance(node, cst.SimpleString):
        return bool(DEVICE_STRING.match(node.evaluated_value if isinstance(node.evaluated_value, str) else ""))
    if isinstance(node, cst.FormattedString):
        first = node.parts[0] if node.parts else None
        return isinstance(first, cst.FormattedStringText) and first.value.startswith(("cuda", "xpu"))
    if isinstance(node, cst.IfExp):
        return is_device_expr(node.body, qnames) and is_device_expr(node.orelse, qnames)
    return False


def device_if_target(node: cst.If, qnames) -> Optional[str]:
    """`if cuda: device = torch.device("cuda") elif ...: ... else: device = ...` -> "device"."""
    targets = set()
    branch: Optional[cst.CSTNode] = node
    while branch is not None:
        body = branch.body.body if isinstance(branch, (cst.If, cst.Else)) else ()
        if not body:
            return None
        for stmt in body:
            if not (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1):
                return None
            small = stmt.body[0]
            if not (isinstance(small, cst.Assign) and len(small.targets) == 1 and is_device_expr(small.value, qnames)):
                return None
            targets.add(dotted(small.targets[0].target))
        branch = branch.orelse if isinstance(branch, cst.If) else None
    if isinstance(node.orelse, type(None)) or len(targets) != 1 or None in targets:
        return None
    return targets.pop()


def unwrap_loader_iter(node: cst.BaseExpression) -> Optional[str]:
    """`enumerate(tqdm(train_loader))` -> "train_loader"."""
    while isinstance(node, cst.Call) and dotted(node.func) in LOADER_WRAPPERS and node.args:
        node = node.args[0].value
    return dotted(node)


def is_main_guard(node: cst.CSTNode) -> bool:
    return m.matches(
        node,
        m.If(test=m.Comparison(left=m.Name("__name__"), comparisons=[m.ComparisonTarget(m.Equal(), m.SimpleString())])),
    )


class _Collector(Visitor):
    METADATA_DEPENDENCIES = (QualifiedNameProvider,)

    def __init__(self, facts: Facts, local_functions: Set[str], external_fw: Set[str]):
        super().__init__()
        self.facts = facts
        self.local_functions = local_functions
        self.external_fw = external_fw
        self.func: Optional[str] = None  # current top-level function
        self.depth = 0  # function nesting
        self.class_depth = 0
        self.in_main_guard = False
        self.optimizer_scopes: List[str] = []
        self.loaders_by_scope: Dict[str, List[str]] = {}
        self.steps: Set[str] = set()
        self.has_backward = False
        self.fw_method_receivers: Set[str] = set()  # receivers of .backward / .setup / .prepare calls
        self.handed_over: List[tuple] = []  # (receiver, [argument names]) of .setup / .prepare calls
        self.aliases: Set[str] = set()  # names bound to another name or to an attribute of one
        self.wrapped: Set[str] = set()  # names wrapped in DDP / DataParallel or asked for .parameters(): models
        self.sampler_names: Set[str] = set()  # names a DistributedSampler is assigned to
        self.optimizer_sites: List[tuple] = []  # (name, scope node, constructor call) of each optimizer made
        self.loader_sites: List[tuple] = []  # (scope, targets, the DataLoader call) of `loader = DataLoader(...)`
        self.module_node: Optional[cst.Module] = None
        self.source = ""
        self.func_node: Optional[cst.FunctionDef] = None

    def qnames(self, node: cst.CSTNode) -> Set[str]:
        return qualified_names(self, node)

    def scope(self) -> str:
        if self.func:
            return self.func
        return MAIN_GUARD if self.in_main_guard else MODULE

    def info(self) -> Optional[FunctionInfo]:
        return self.facts.functions.get(self.func) if self.func else None

    # scopes
    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.class_depth += 1
        if self.class_depth == 1 and self.depth == 0:
            self.class_name = node.name.value

    def leave_ClassDef(self, node: cst.ClassDef) -> None:
        self.class_depth -= 1

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        if self.depth == 0 and self.class_depth == 0:
            self.func = node.name.value
            self.func_node = node
            params = [p.name.value for p in node.params.params]
            every = node.params.posonly_params + node.params.params + node.params.kwonly_params
            self.facts.functions[self.func] = FunctionInfo(self.func, params, all_params={p.name.value for p in every})
        self.depth += 1

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.depth -= 1
        if self.depth == 0 and self.class_depth == 0:
            self.func = None

    def visit_If(self, node: cst.If) -> None:
        if self.depth == 0 and self.class_depth == 0 and is_main_guard(node):
            self.in_main_guard = True
        if self.class_depth == 0:
            target = device_if_target(node, self.qnames)
            if target:
                self.facts.device_names.add(target)

    def leave_If(self, node: cst.If) -> None:
        if self.depth == 0 and is_main_guard(node):
            self.in_main_guard = False

    def visit_For(self, node: cst.For) -> None:
        if self.class_depth and not self.func:
            return
        it = unwrap_loader_iter(node.iter)
        info = self.info()
        targets = [n for n in assigned_names(node.target)]
        if it:
            key = info.loader_fors if info else self.facts.functions.setdefault(
                self.scope(), FunctionInfo(self.scope(), [])).loader_fors
            key.append((it, targets))
        if info and it in info.params and not info.evaluates and (
                m.findall(node.body, m.AugAssign())
                or m.findall(node.body, m.Call(func=m.Attribute(attr=m.Name("append") | m.Name("extend"))))):
            info.evaluates = True

    # statements
    def visit_Return(self, node: cst.Return) -> None:
        if self.func and self.depth == 1 and node.value is not None:
            values = node.value.elements if isinstance(node.value, cst.Tuple) else [cst.Element(node.value)]
            self.facts.functions[self.func].returns = [dotted(el.value) for el in values]
            loaders = self.loaders_by_scope.get(self.func, [])
            info = self.facts.functions[self.func]
            info.loader_returns = [(isinstance(el.value, cst.Call) and is_dataloader_ctor(self.qnames(el.value.func)))
                                   or dotted(el.value) in loaders for el in values]
            info.returns_loaders = info.returns_loaders or any(info.loader_returns)

    def visit_Subscript(self, node: cst.Subscript) -> None:
        info = self.info()
        if info and env_key(node) in RANK_ENV:
            info.reads_rank_env = True

    def _optimizer_by_name(self, func: cst.BaseExpression) -> bool:
        """`getattr(optim, args.optim)(model.parameters(), lr=lr)`: an optimizer class of torch.optim picked by
        name (TCN's scripts)."""
        return isinstance(func, cst.Call) and dotted(func.func) == "getattr" and len(func.args) >= 2 and \
            "torch.optim" in self.qnames(func.args[0].value)

    def visit_Assign(self, node: cst.Assign) -> None:
        if self.class_depth and not self.func:
            return
        value = node.value
        targets = [n for t in node.targets for n in assigned_names(t.target)]
        scope = self.scope()
        if isinstance(value, cst.Call):
            q = self.qnames(value.func)
            if q & FRAMEWORK_CTORS[self.facts.target] and len(targets) == 1:
                self.facts.fw_exists = True
                self.facts.fw = targets[0]
                if self.info():
                    self.info().binds_fw = targets[0]
            elif (is_optimizer_ctor(q) or self._optimizer_by_name(value.func)) and len(targets) == 1:
                self.facts.optimizers.setdefault(targets[0], []).extend(
                    mm for mm in _models_in(value) if mm not in self.facts.optimizers.get(targets[0], []))
                self.optimizer_scopes.append(scope)
                self.optimizer_sites.append((targets[0], self._scope_node(), value))
            elif len(targets) == 1 and _built_by_model(value) and self._builder(value) is not None:
                # `optimizer = model.configure_optimizers(...)` (nanoGPT): the model builds its own optimizer
                model_name = self._builder(value)
                self.facts.optimizers.setdefault(targets[0], [])
                if model_name not in self.facts.optimizers[targets[0]]:
                    self.facts.optimizers[targets[0]].append(model_name)
                self.optimizer_scopes.append(scope)
            elif dotted(value.func) in self.local_functions and self.class_depth == 0:
                self.facts.assign_calls.append((scope, dotted(value.func), targets))
            if q & DISTRIBUTED_SAMPLERS:
                self.sampler_names.update(targets)
            if is_dataloader_ctor(q):
                self.loader_sites.append((scope, targets, value))
            made = self.facts.functions.get(dotted(value.func)) if not is_dataloader_ctor(q) else None
            loader_targets = targets
            if made is not None and made.returns_loaders and len(made.loader_returns) == len(targets) > 1:
                # `loader, sampler = make_loader(...)`: only the positions the function returns a loader at
                loader_targets = [t for t, is_loader in zip(targets, made.loader_returns) if is_loader]
            if is_dataloader_ctor(q) or (made is not None and made.returns_loaders):
                self.loaders_by_scope.setdefault(scope, []).extend(loader_targets)
        elif isinstance(value, cst.IfExp) and any(isinstance(v, cst.Call) and self.qnames(v.func) & DISTRIBUTED_SAMPLERS
                                                  for v in (value.body, value.orelse)):
            self.sampler_names.update(targets)  # `DistributedSampler(ds) if distributed else None`
        if is_device_expr(value, self.qnames) and len(targets) == 1:
            self.facts.device_names.add(targets[0])
        if isinstance(value, (cst.IfExp, cst.Attribute)) or (isinstance(value, cst.Name) and len(targets) == 1):
            # `raw_model = model.module if ddp else model`: another name for a model; an optimizer it builds is
            # not a sign of which object trains (the loop calls `model`)
            self.aliases.update(targets)

    def _builder(self, value: cst.Call) -> Optional[str]:
        """The model that `value` (`X.configure_optimizers(...)`) builds an optimizer for: X, or, where X is the
        unwrapped view of a model (`raw_model = model.module if ddp else model`, migrator/param_sources.py), that
        model, the name the loop trains; None for another alias."""
        name = dotted(value.func.value)
        if name not in self.aliases:
            return name
        scope = self._scope_node()
        return param_sources.unwrapped_views(scope).get(name) if scope is not None and "module" in self.source else None

    def _scope_node(self) -> cst.CSTNode:
        return self.func_node if self.func else self.module_node

    def trained_by(self, optimizer: cst.Call, scope: Optional[cst.CSTNode], handed_over: Set[str]) -> List[str]:
        """The models an optimizer trains: `X.parameters()` in its arguments, or the models a parameter list
        passed by name was built from (migrator/param_sources.py); an unwrapped view (`model_without_ddp`) counts
        as the model it unwraps, the name the loop trains. Asked once the whole module is read: the names
        wrapped in DDP and those handed to setup / prepare anywhere count."""
        models = _models_in(optimizer)
        if scope is None:
            return models
        views = param_sources.unwrapped_views(scope, handed_over)
        first = [a.value for a in optimizer.args[:1] if a.keyword is None and not a.star] + \
                [a.value for a in optimizer.args if a.keyword and a.keyword.value == "params"]
        if not models and first:
            name = dotted(first[0])
            # `AdamW(param_groups, ...)` built before, or `AdamW(param_groups(model_without_ddp), ...)` right here
            models = (param_sources.owners(scope, name, self.wrapped | set(views)) if name
                      else param_sources.passed_models(first[0], self.wrapped | set(views)))
        out: List[str] = []
        for mm in models:
            mm = views.get(mm, mm)
            if mm not in out:
                out.append(mm)
        return out

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        info = self.info()
        if node.args and self.qnames(func) & DDP_WRAPPERS:
            self.wrapped.add(dotted(node.args[0].value) or "")
        elif isinstance(func, cst.Attribute) and func.attr.value in ("parameters", "named_parameters"):
            self.wrapped.add(dotted(func.value) or "")
        if self.facts.other_framework is None and self._other_framework(func):
            self.facts.other_framework = node
        if info and env_key(node) in RANK_ENV:
            info.reads_rank_env = True
        if info and not info.writes_output and _writes_output(node, self.qnames):
            info.writes_output = True
        if isinstance(func, cst.Attribute):
            recv = dotted(func.value)
            if func.attr.value in FW_METHODS and recv:
                self.fw_method_receivers.add(recv)
                if func.attr.value != "backward":
                    self.handed_over.append((recv, [dotted(a.value) for a in node.args if not a.star]))
            fw_names = (self.facts.fw, f"self.{self.facts.fw}")  # fabric.backward / self.fabric.backward: migrated
            if func.attr.value == "backward" and recv not in fw_names and "torch.autograd.backward" not in self.qnames(func):
                self.has_backward = True
                if info:
                    info.has_backward = True
                elif self.class_depth == 1 and self.depth >= 1 and recv != f"self.{self.facts.fw}":
                    self.facts.fw_classes.add(self.class_name)
            elif func.attr.value == "step":
                self.steps.add(recv or "")
        elif isinstance(func, cst.Name):
            name = func.value
            if name == "print" and info:
                info.has_print = True
            elif name == "len" and info and len(node.args) == 1 and m.matches(
                    node.args[0].value, m.Attribute(attr=m.Name("dataset"))):
                info.reads_dataset_len = True
            elif (name in self.local_functions or name in self.external_fw) and self.class_depth == 0:
                args = [dotted(a.value) for a in node.args if a.keyword is None and not a.star]
                kws = {a.keyword.value: dotted(a.value) for a in node.args if a.keyword is not None}
                caller = info if info else self.facts.functions.setdefault(scope_name := self.scope(), FunctionInfo(scope_name, []))
                caller.calls.append((name, args, kws))
            elif name in self.local_functions or name in self.external_fw:
                # a call from a class body or method: only a trainer class's methods (self.fabric) can pass the object
                top = self.class_name if self.class_depth == 1 and self.depth >= 1 and not self.func else None
                self.facts.class_calls.append((top, name))

    def _other_framework(self, func: cst.BaseExpression) -> bool:
        other = "accelerate" if self.facts.target == "fabric" else "fabric"
        if self.qnames(func) & FRAMEWORK_CTORS[other]:
            return True
        # accelerator.backward(loss) in a helper that is handed the object: not a tensor's backward
        return (isinstance(func, cst.Attribute) and func.attr.value == "backward"
                and (dotted(func.value) or "").rsplit(".", 1)[-1].lstrip("_") == DEFAULT_FW_NAME[other])


def _writes_output(call: cst.Call, qnames) -> bool:
    """`save_image(...)`, `open(p, "w")`, `SummaryWriter(...)`, `wandb.init(...)`: see migrator/side_effects.py."""
    from migrator import side_effects as se
    return bool(se.output_call(call, qnames) or se.open_mode(call, qnames) == "function"
                or se.writer_ctor(call, qnames) or se.is_wandb_init(call, qnames)
                or se.log_file_arg(call, qnames) is not None)


def _built_by_model(value: cst.Call) -> bool:
    """`model.configure_optimizers(...)`, `net.make_optimizer(...)`: a method of a plain name that builds an
    optimizer, by its name."""
    func = value.func
    return (isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name)
            and "optimizer" in func.attr.value.lower() and not func.attr.value.startswith("_"))


def _models_in(call: cst.Call) -> List[str]:
    """Roots of `X.parameters()` inside an optimizer's arguments: the models it trains."""
    found: List[str] = []

    class V(Visitor):
        def visit_Call(self, node: cst.Call) -> None:
            if m.matches(node.func, m.Attribute(attr=m.Name("parameters") | m.Name("named_parameters"))):
                base = node.func.value
                name = dotted(base)
                if name and name not in found:
                    # model.encoder.parameters() trains `model`; self.model.parameters() trains `self.model`
                    parts = name.split(".")
                    found.append(".".join(parts[:2]) if parts[0] == "self" else parts[0])

    for arg in list(call.args[:1]) + [a for a in call.args if a.keyword and a.keyword.value == "params"]:
        arg.value.visit(V())
    return found


def _local_function_names(module: cst.Module) -> Set[str]:
    """Functions defined at module level, including those under `if __name__ == "__main__":`, a loop or a `with`
    (an LBFGS closure defined in the training loop of the main block): the analysis and the rules take each
    as a scope of its own."""
    found: Set[str] = set()

    def walk(body) -> None:
        for s in body:
            if isinstance(s, cst.FunctionDef):
                found.add(s.name.value)
            elif isinstance(s, (cst.If, cst.For, cst.While, cst.With, cst.Try)):
                walk(s.body.body)
                for extra in (getattr(s, "orelse", None), getattr(s, "finalbody", None)):
                    if extra is not None and hasattr(extra, "body"):
                        walk(extra.body.body)
                for h in getattr(s, "handlers", ()):
                    walk(h.body.body)
    walk(module.body)
    return found


# what a print-only helper may call besides print: builtins that only compute, and str methods
_PURE_CALLS = {"len", "str", "repr", "int", "float", "round", "abs", "min", "max", "sum", "sorted", "enumerate",
               "range", "zip", "isinstance", "format", "list", "tuple", "dict", "map", "any", "all"}
_PURE_METHODS = {"join", "format", "ljust", "rjust", "center", "strip", "lstrip", "rstrip", "replace", "zfill",
                 "upper", "lower", "item", "items", "keys", "values"}


def _print_only(module: cst.Module, local: Set[str]) -> Set[str]:
    """Top-level functions whose only effect is printing: every call in them is `print`, a computing builtin or a
    string method (a table-row helper). Guarding a call of one on the main process changes nothing else."""
    found: Set[str] = set()
    for stmt in module.body:
        if not isinstance(stmt, cst.FunctionDef) or stmt.name.value not in local:
            continue
        calls = m.findall(stmt.body, m.Call())
        if not any(m.matches(c.func, m.Name("print")) for c in calls):
            continue
        if all((isinstance(c.func, cst.Name) and c.func.value in _PURE_CALLS | {"print"})
               or (isinstance(c.func, cst.Attribute) and c.func.attr.value in _PURE_METHODS) for c in calls) \
                and not m.findall(stmt.body, m.Global() | m.Nonlocal() | m.Yield()):
            found.add(stmt.name.value)
    return found


_PROCESS_STARTERS = {"spawn", "start_processes", "Process", "Pool", "submit", "apply_async"}


def _handed_to_processes(module: cst.Module, local: Set[str]) -> Set[str]:
    """Local functions handed to something that runs them in another process (`mp.spawn(fn)`,
    `Process(target=fn)`): a module-level framework object does not exist there."""
    found: Set[str] = set()

    class V(Visitor):
        def visit_Call(self, node: cst.Call) -> None:
            name = (dotted(node.func) or "").rsplit(".", 1)[-1]
            if name in _PROCESS_STARTERS:
                for a in node.args:
                    if isinstance(a.value, cst.Name) and a.value.value in local:
                        found.add(a.value.value)

    module.visit(V())
    return found


def _imported_external_fw(module: cst.Module, external: frozenset) -> Set[str]:
    """Local names bound by `from trainer import train_epoch` where trainer.train_epoch takes the framework."""
    found = set()
    for stmt in module.body:
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                if isinstance(small, cst.ImportFrom) and small.module is not None and not isinstance(small.names, cst.ImportStar):
                    mod = dotted(small.module)
                    for alias in small.names:
                        name = dotted(alias.name)
                        if f"{mod}.{name}" in external:
                            found.add(alias.asname.name.value if alias.asname else name)
    return found


def analyze(wrapper: MetadataWrapper, target: str, external_fw: frozenset = frozenset(),
            module_name: Optional[str] = None, source: Optional[str] = None, settle_only: bool = False) -> Facts:
    module = wrapper.module
    facts = Facts(target=target, fw=DEFAULT_FW_NAME[target])
    local = _local_function_names(module)
    ext = _imported_external_fw(module, external_fw)
    facts.external_fw = ext
    collector = _Collector(facts, local, ext)
    collector.module_node = module
    collector.source = source if source is not None else module.code
    with_import_names(collector, module, source).visit(collector)
    # it trains: an optimizer stepped, a sibling hands it the framework object, or a plain backward with a step
    # call or reached from a loop (migrator/trains.py); a utility's lone backward does not make it a script
    facts.is_training = (bool(set(facts.optimizers) & collector.steps) or bool(ext)
                         or any(module_name and f"{module_name}.{f}" in external_fw for f in local)
                         or (collector.has_backward and (bool(collector.steps) or backward_reached_from_loop(
                             source if source is not None else module.code, (facts.fw, f"self.{facts.fw}")))))
    if settle_only and (not facts.is_training or facts.other_framework is not None):
        return facts  # the engine stops here (not training, or on the other framework): the rest is for the rules
    _keep_samplers(facts, collector, module)
    text = collector.source.lower()
    facts.cpu_only_source = not any(word in text for word in ("cuda", "mps", "xpu", "gpu", "accelerator"))
    fw_receivers = {facts.fw, f"self.{facts.fw}"}
    facts.on_target = facts.fw_exists and bool(fw_receivers & collector.fw_method_receivers)
    facts.handed_over = {a for recv, args in collector.handed_over if recv in fw_receivers for a in args if a}
    _resolve_optimizers(facts, collector)
    if collector.optimizer_scopes:
        facts.setup_scope = collector.optimizer_scopes[0]
    elif ext:
        # The entry script of a project whose loop lives in a sibling module: set up where those are called.
        callers = [f.name for f in facts.functions.values() if any(c[0] in ext for c in f.calls)]
        facts.setup_scope = callers[0] if callers else None
    elif facts.is_training:
        # no optimizer: parameters updated by hand from their gradients; the model is set up alone
        from migrator.manual_updates import hand_trained
        found = hand_trained(module, is_main_guard)
        if found:
            facts.setup_scope, facts.bare_models = found
    _lift_factory(facts)
    facts.conditional_optimizers = _conditional_optimizers(module, facts)
    if facts.setup_scope:
        facts.loaders = collector.loaders_by_scope.get(facts.setup_scope, [])
        if facts.setup_scope == MAIN_GUARD:
            facts.loaders = facts.loaders + collector.loaders_by_scope.get(MODULE, [])
    # functions of this module that other modules of the project call with the framework object
    forced = {f for f in local if module_name and f"{module_name}.{f}" in external_fw}
    facts.print_only = _print_only(module, local)
    facts.class_candidates = set(facts.fw_classes)
    if not facts.setup_scope:
        # a trainer class takes the object in __init__ only where something hands it one: this module makes it,
        # or a sibling that makes it calls the class (migrator.project). Otherwise (an agent built by a config
        # system, as hydra's instantiate does) its callers are out of sight: the class keeps its signature
        facts.fw_classes = {c for c in facts.fw_classes if module_name and f"{module_name}.{c}" in external_fw}
    _propagate(facts, _uses_other_than_calls(module, local, wrapper), forced, _handed_to_processes(module, local))
    return facts


def _conditional_optimizers(module: cst.Module, facts: Facts) -> Set[str]:
    """The optimizers that may be unbound where PTM105 sets up (`if args.use_optimizer: opt = AdamW(...)`)."""
    if not facts.optimizers or not facts.setup_scope:
        return set()
    from migrator.bindings import maybe_unbound
    from migrator.rules._moves import _uses_for_training, setup_block, setup_point
    body = setup_block(module, facts)
    last = setup_point(body, facts) if body else None
    if last is None or (not isinstance(body[last], cst.SimpleStatementLine)
                        and _uses_for_training(body[last], set(facts.models), set(facts.optimizers))):
        return set()  # made inside a block that also trains: set up there, after it is made (PTM105 _descend)
    return maybe_unbound(body[: last + 1], facts.optimizers)


def _resolve_optimizers(facts: Facts, collector: "_Collector") -> None:
    """Each optimizer's models as `trained_by` tells them once the module is read: in place of the roots of the
    `X.parameters()` in its call, the models its parameter list was built from, through unwrapped views."""
    resolved: Dict[str, List[str]] = {}
    direct: Dict[str, Set[str]] = {}
    for name, scope, call in collector.optimizer_sites:
        direct.setdefault(name, set()).update(_models_in(call))
        found = resolved.setdefault(name, [])
        found.extend(mm for mm in collector.trained_by(call, scope, facts.handed_over) if mm not in found)
    for name, found in resolved.items():
        facts.optimizers[name] = found + [mm for mm in facts.optimizers.get(name, [])
                                          if mm not in found and mm not in direct[name]]


def _keep_samplers(facts: Facts, collector: "_Collector", module: cst.Module) -> None:
    """DistributedSamplers read for more than feeding their loader stay, and their loaders are not set up
    (migrator/samplers.py)."""
    reads = samplers.other_reads(module, collector.sampler_names)
    if not reads:
        return
    code = cst.Module([]).code_for_node
    short = lambda text: text if len(text) <= 70 else text[:67] + "..."  # noqa: E731
    facts.kept_samplers = {n: short(" ".join(code(node).split())) for n, node in reads.items()}
    tied = samplers.made_from(module, reads)
    facts.kept_loaders = {t for _, targets, call in collector.loader_sites if samplers.reads_any(call, tied)
                          for t in targets}
    for scope, names in collector.loaders_by_scope.items():
        collector.loaders_by_scope[scope] = [n for n in names if n not in facts.kept_loaders]


def _lift_factory(facts: Facts) -> None:
    """`model, optimizer = build(args)`: set up where the factory's results land, not inside the factory."""
    info = facts.functions.get(facts.setup_scope or "")
    if info is None or not info.returns:
        return
    sites = [(scope, targets) for scope, f, targets in facts.assign_calls if f == info.name]
    if len(sites) != 1 or len(sites[0][1]) != len(info.returns):
        return
    scope, targets = sites[0]
    mapping = {r: t for r, t in zip(info.returns, targets) if r}
    names = set(facts.optimizers) | {mm for ms in facts.optimizers.values() for mm in ms}
    if not names <= set(mapping):
        return
    facts.model_aliases = {mm for ms in facts.optimizers.values() for mm in ms}  # their names in the factory
    facts.optimizers = {mapping[o]: [mapping[mm] for mm in ms] for o, ms in facts.optimizers.items()}
    facts.setup_scope = scope


def _uses_other_than_calls(module: cst.Module, local: Set[str], wrapper: Optional[MetadataWrapper] = None) -> Set[str]:
    """Local functions referenced other than as `f(...)` (callbacks, mp.spawn targets). A name that a function
    binds itself (a parameter or local named like the function) is not a use of it; given `wrapper`, libcst's
    ScopeProvider tells those apart."""
    skip: Set[int] = set()
    seen: List[cst.Name] = []

    class V(Visitor):
        def visit_Call(self, node: cst.Call) -> None:
            skip.add(id(node.func))

        def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
            skip.add(id(node.name))

        def visit_Attribute(self, node: cst.Attribute) -> None:
            skip.add(id(node.attr))  # model.train() is not a use of a function named train

        def visit_Arg(self, node: cst.Arg) -> None:
            if node.keyword is not None:
                skip.add(id(node.keyword))

        def visit_Param(self, node: cst.Param) -> None:
            skip.add(id(node.name))

        def visit_ImportAlias(self, node: cst.ImportAlias) -> bool:
            return False

        def visit_Name(self, node: cst.Name) -> None:
            if node.value in local:
                seen.append(node)

    module.visit(V())
    found = [n for n in seen if id(n) not in skip]
    if found and wrapper is not None:
        found = [n for n in found if not _bound_locally(wrapper, n)]  # only then: the scope analysis costs time
    return {n.value for n in found}


def _bound_locally(wrapper: MetadataWrapper, name: cst.Name) -> bool:
    """Whether this use of a name reads a parameter or local of a function (`def test(model, train=False)`), not
    the module-level function of that name. libcst's ScopeProvider resolves it; a use it cannot resolve, or one
    that may reach the global, counts as a use of the function."""
    scope = wrapper.resolve(ScopeProvider).get(name)
    if scope is None:
        return False
    accesses = [a for a in scope.accesses[name.value] if a.node is name] if name.value in scope.accesses else []
    referents = {r for a in accesses for r in a.referents}
    return bool(referents) and not any(isinstance(r.scope, GlobalScope) for r in referents)


def _propagate(facts: Facts, not_only_called: Set[str], forced: Set[str] = frozenset(),
               other_process: Set[str] = frozenset()) -> None:
    """Which functions take the framework object, and which parameters carry set-up loaders.

    A signature changes only when every caller is a plain direct call that can pass the object along: a function
    handed over as a value (an LBFGS closure, a callback) keeps its parameters and, where the object is a module
    global (made at module level or under the main guard), uses that global; a function also called where the
    object does not exist yet (module-level code at import time, a class other than a trainer class that holds
    it) keeps its parameters too. Those are `facts.keeps_signature`; `facts.external_unreached` names the imported
    functions that take the object but are called where none exists (migrator.project: they keep theirs)."""
    funcs = facts.functions
    setup = facts.setup_scope
    roots = {setup} if setup else set()
    if setup in (MODULE, MAIN_GUARD):  # the main guard runs after the module-level code that made the object
        roots |= {MODULE, MAIN_GUARD}
    # functions reachable from the setup scope
    reach: Set[str] = set()
    todo = list(roots)
    while todo:
        f = todo.pop()
        for callee, _, _ in funcs.get(f, FunctionInfo(f, [])).calls:
            if callee in funcs and callee not in reach and callee not in roots:
                reach.add(callee)
                todo.append(callee)
    # a function that already takes the framework object (written for it by hand) or makes its own needs
    # nothing, nor do its callers on its account
    has = {n for n, f in funcs.items()
           if f.binds_fw or {facts.fw, DEFAULT_FW_NAME[facts.target]} & f.all_params}
    # of those, the ones where the rules may write `fabric.backward(...)` with the name they use
    facts.fw_own = {n for n in has if facts.fw in funcs[n].all_params or funcs[n].binds_fw == facts.fw}
    # a backward needs the framework wherever it is called from; a print, or a read of the rank from the
    # environment (a `setup_distributed()` helper), only on the training path
    # In a module that sets nothing up and that no sibling hands the object to (a library's helper with a
    # backward), a new parameter would break every caller: its backwards are reported instead.
    base = {n for n, f in funcs.items()
            if n not in roots and n not in has and n not in (MODULE, MAIN_GUARD)
            and ((f.has_backward and (setup or forced))
                 or ((f.has_print or f.reads_rank_env or f.reads_dataset_len or f.writes_output
                      or (f.evaluates and facts.target == "accelerate")) and n in reach)
                 or n in forced)}
    global_fw = setup in (MODULE, MAIN_GUARD)
    value_used = {n for n in base if n in not_only_called}
    facts.fw_globals = {n for n in value_used if global_fw and n not in other_process}
    # handed over as a value with no global to use: a backward is reported (TODO); a print stays a plain print
    facts.unthreadable = {n for n in value_used - facts.fw_globals if funcs[n].has_backward}
    callers_of: Dict[str, Set[str]] = {}
    for caller, cf in funcs.items():
        for c, _, _ in cf.calls:
            callers_of.setdefault(c, set()).add(caller)
    # a call from a class other than a trainer class's method (a Dataset's __init__ calling a printing helper) has
    # no object to pass: the callee keeps its parameters
    in_classes = {c for cls, c in facts.class_calls if cls is None or cls not in facts.fw_classes}
    for c in in_classes:
        callers_of.setdefault(c, set()).add(CLASS_BODY)
    blocked: Set[str] = set(value_used)
    while True:
        needs = set(base) - blocked
        changed = True
        while changed:
            changed = False
            for n, f in funcs.items():
                if n in needs or n in roots or n in has or n in blocked or n in (MODULE, MAIN_GUARD):
                    continue
                if any(c in needs or c in facts.external_fw for c, _, _ in f.calls):
                    needs.add(n)
                    changed = True
        # module-level code outside the setup scope runs before the object exists (or where it never does)
        unreached = ({MODULE, MAIN_GUARD} - ({MODULE, MAIN_GUARD} if setup == MODULE else {setup})) | {CLASS_BODY}
        # a caller that keeps its parameters has no object to pass on either (unless it uses the module's global)
        no_object = unreached | (blocked - facts.fw_globals)
        out_of_reach = {n for n in needs if callers_of.get(n, set()) & no_object}
        if not out_of_reach:
            break
        blocked |= out_of_reach
        facts.unthreadable |= {n for n in out_of_reach if funcs[n].has_backward}
    facts.fw_functions = needs
    facts.keeps_signature = set(blocked)
    # an imported function that takes the object, called where none can be passed: its module must keep its
    # parameters too (migrator.project drops it from the functions that take the object)
    facts.external_unreached = ({c for n in no_object for c, _, _ in funcs.get(n, FunctionInfo(n, [])).calls
                                 if c in facts.external_fw} | (in_classes & facts.external_fw))
    # a helper that only formats and prints, kept plain because it is also called out of reach: where it is called
    # in reach, the call runs on the main process only (PTM110), as `fabric.print` would
    facts.print_only_calls = {n for n in blocked - facts.fw_globals - facts.unthreadable
                              if n in facts.print_only and not funcs[n].has_backward}
    # loader parameters: a parameter is a loader if every call passes a set-up loader to it
    loaders_in: Dict[str, Set[str]] = {s: set(facts.loaders) for s in roots}
    changed = True
    while changed:
        changed = False
        for n, f in funcs.items():
            if n in roots or n in (MODULE, MAIN_GUARD):
                continue
            callers = [(caller, args, kws) for caller, cf in funcs.items() for (c, args, kws) in cf.calls if c == n]
            if not callers:
                continue
            found = set()
            for i, p in enumerate(f.params):
                ok = True
                for caller, args, kws in callers:
                    arg = args[i] if i < len(args) else kws.get(p)
                    if arg is None or arg not in loaders_in.get(caller, set()):
                        ok = False
                        break
                if ok:
                    found.add(p)
            if found != loaders_in.get(n, set()):
                loaders_in[n] = found
                changed = True
    facts.loader_params = {k: v for k, v in loaders_in.items() if v}


def batch_names(facts: Facts, scope: str) -> Set[str]:
    """Names bound by `for ... in <set-up loader>` in a scope."""
    info = facts.functions.get(scope)
    if not info:
        return set()
    loaders = facts.loader_params.get(scope, set())
    if scope == facts.setup_scope or (facts.setup_scope == MAIN_GUARD and scope == MODULE):
        loaders = loaders | set(facts.loaders)
    out: Set[str] = set()
    for it, targets in info.loader_fors:
        if it in loaders:
            out.update(t for t in targets if "." not in t)
    return out
