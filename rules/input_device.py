"""PTM114 input-device: tensors a script makes by hand go to the framework's device with the model.

What it does: in a script that never places anything on a device (no `.cuda()`, no `.to(device)`, no `device=`),
it follows, inside the file, every tensor that reaches a set-up model's call, or meets a device tensor (a set-up
loader's batch, the model's output) in arithmetic, a torch function or a loss, back to where it is made
(rules/_device_flow.py), and puts it on `fabric.device` / `accelerator.device`:

- a factory (`torch.randn`, `rand`, `randint`, `zeros`, `ones`, `full`, `empty`, `arange`, `linspace`, `eye`, ...)
  gets `device=fabric.device`; one that takes a `generator=` gets `.to(fabric.device)` after it (a CPU generator
  cannot make CUDA tensors);
- `torch.tensor`, `torch.from_numpy`, legacy constructors (`torch.FloatTensor(...)`) and the return of a helper of
  the file, or of a method of a class of the file that returns tensors it makes (a replay buffer's `sample()`), get
  `.to(fabric.device)` where they are made or called; `a, b = make_batch()` is followed by
  `a = a.to(fabric.device)` and `b = b.to(fabric.device)`;
- a module that is not set up (a target network) and gets such inputs is moved where it is made;
- `.numpy()` on a tensor that is now on the device gets `.cpu()` before it.

Tensors that only feed a Dataset / TensorDataset / DataLoader stay on the CPU (the set-up loader moves the
batches). A tensor that is also used as numpy, by non-torch code or by a Dataset, or that is made at import time
(above the main guard) or out of reach of the framework object, is moved where the model gets it instead.

Where a model input cannot be followed (it comes from another module, an object's method whose return cannot be
told, a parameter whose callers are out of sight, a loader that is not set up), or a module of the file makes
tensors on the CPU in its forward (`torch.zeros(n)` without `device=`, `.numpy()`), or a trainer class makes them
in its methods (class bodies are not followed), nothing is guessed: the framework object is created for
CPU processes (`accelerator="cpu"` / `cpu=True`), which is where the original trained, and a TODO names the input
and says how to move it to train on GPUs. This holds with an explicit `--accelerator cuda` too (a warning says it was
not applied): on a GPU the first step would fail with "Expected all tensors to be on the same device".
The same holds across files: a trainer class of a sibling module (`trainer.py`) that the entry script hands the
object and that makes a tensor on the CPU in its methods gets the TODO at that line, and the entry script, found
through the folder's facts (migrator/project.py), creates the object for CPU processes with a warning at the call.
So does a class or function of a sibling module that the script creating the object imports and calls, and that
makes a tensor on the CPU beside a model it was given (minRF's `RF(model)` whose `forward` draws `torch.randn`, an
nn.Module of models.py, a loss helper that calls the model it receives): that module stays as it is (it gets neither
the object nor a TODO), and the warning at the call says what to change there.

Why: the framework puts the set-up model on the GPU and moves the set-up loaders' batches; a tensor made by hand
stays on the CPU, and the first step on a GPU fails with "Expected all tensors to be on the same device". A CPU
run never shows it, since there everything is on the CPU.

Example: `t = torch.randint(0, 10, (n, 1))` in the loop -> `t = torch.randint(0, 10, (n, 1), device=fabric.device)`.

Fabric form: `device=fabric.device`, `.to(fabric.device)`; CPU processes: `Fabric(accelerator="cpu", ...)`.
Accelerate form: `device=accelerator.device`, `.to(accelerator.device)`; CPU processes: `Accelerator(cpu=True)`.

Fix safety: safe. On the CPU the factories draw the same random numbers and the moves do nothing, so the losses
on one CPU process are the original's. Scripts that place tensors themselves are left to PTM101-PTM104.
"""
from __future__ import annotations

from typing import Dict, FrozenSet, List, Optional, Set, Tuple

import libcst as cst

from migrator import matching as m
from migrator.imports import ImportTable
from migrator.names import dotted
from migrator.rules._accelerator_args import add_keywords
from migrator.rules._device_flow import CONFIG_NAMES, FACTORIES, INIT_METHODS, MAKERS, Kw, Res, Tracer, Wrap, code_of
from migrator.rules._moves import DEVICEISH
from migrator.rules.base import WARNING, Context, Example, Rule, RuleTransformer

DTYPES = {"float", "float16", "float32", "float64", "half", "double", "bfloat16", "long", "int", "int8", "int16",
          "int32", "int64", "uint8", "bool", "short", "complex64", "complex128", "cfloat", "cdouble"}


def places_devices(module: cst.Module, table: ImportTable, fw: str) -> bool:
    """The script puts something on a device itself: `.cuda()`, `.to(<device>)`, `device=<device>`,
    `torch.device(...)`, `torch.cuda.<Type>Tensor`; the framework's device counts too (the move rules before this
    one point the script's moves at it, and a second run finds this rule's own). A device read off a tensor
    (`device=x.device`) and a dtype (`.to(torch.float16)`) do not count."""
    for call in m.findall(module, m.Call()):
        func = call.func
        if isinstance(func, cst.Attribute) and func.attr.value == "cuda":
            return True
        names = table.names(func)
        if names & {"torch.device", "torch.set_default_device", "torch.set_default_tensor_type"} \
                or any(q.startswith("torch.cuda.") and q.endswith("Tensor") for q in names):
            return True
        if isinstance(func, cst.Attribute) and func.attr.value == "to" and call.args:
            first = call.args[0]
            if first.keyword is None and not first.star and _absolute(first.value, table, fw):
                return True
        for a in call.args:
            if a.keyword is not None and a.keyword.value == "device" and _absolute(a.value, table, fw):
                return True
    return False


def _absolute(value: cst.BaseExpression, table: ImportTable, fw: str) -> bool:
    name = dotted(value)
    if name is not None:
        parts = name.split(".")
        if name in (f"{fw}.device", f"self.{fw}.device"):
            return True
        if parts[-1] in DTYPES and parts[0] in ("torch", "th"):
            return False
        if parts[-1].endswith("dtype"):
            return False
        last = parts[-1].lower()
        if len(parts) > 1 and last == "device":  # `args.device`, `config.DEVICE`: the script's choice
            return parts[-2].lower() in CONFIG_NAMES or parts[-2].isupper()  # `x.device` follows x
        return last in DEVICEISH or last.endswith("_device") or "cuda" in last
    if isinstance(value, (cst.SimpleString, cst.FormattedString, cst.ConcatenatedString, cst.IfExp, cst.Integer)):
        return True
    if isinstance(value, cst.Call):
        return bool(table.names(value.func) & {"torch.device"}) or dotted(value.func) in ("device", "get_device")
    return False


class Plan:
    """What the rule changes: fixes from the tracer, `.cpu()` before `.numpy()`, and TODOs by statement."""

    def __init__(self):
        self.kw: Dict[int, cst.Call] = {}
        self.wrap: Dict[int, cst.CSTNode] = {}
        self.after: Dict[int, List[str]] = {}
        self.numpy: Set[int] = set()
        self.todos: Dict[int, List[str]] = {}
        self.reports: List[Tuple[cst.CSTNode, str]] = []
        self.overridden: Optional[Tuple[Optional[cst.CSTNode], str]] = None  # an explicit --accelerator not applied
        self.cpu_only: List[str] = []  # what keeps the training on CPU processes
        # the part of it that siblings make: (file with the TODO or "", note, call here, how to train on GPUs)
        self.sibling_notes: List[Tuple[str, str, cst.CSTNode, str]] = []

    def __bool__(self) -> bool:
        return bool(self.kw or self.wrap or self.after or self.numpy or self.todos)


def make_plan(module: cst.Module, ctx: Context) -> Optional[Plan]:
    """The changes for one module, or None when the rule does not apply (the script places tensors itself)."""
    facts = ctx.facts
    source = ctx.text if ctx.text is not None else module.code
    if not facts.setup_scope:
        return _receiver_plan(module, ctx, source)
    if ".cuda(" in source or f"{facts.fw}.device" in source:
        return None  # a quick look first: most scripts place tensors themselves
    table = ImportTable(source)
    if places_devices(module, table, facts.fw):
        return None
    tracer = Tracer(module, facts, source)
    w = tracer.w
    fixes: Set = set()
    unknown: List[Tuple[cst.CSTNode, str, str]] = []  # (statement, what cannot be followed, what it reaches)
    for call in w.sinks:
        res = Res()
        for a in call.args:
            res = res | tracer.classify(a.value)
        fixes |= res.fixes
        unknown.extend((w.statement(call), reason, code_of(call.func)) for reason in res.unknown)
    for node in w.mixes:
        ops = _operands(node, tracer)
        results = [tracer.classify(o) for o in ops]
        if any(r.dev for r in results):
            for op, r in zip(ops, results):
                fixes |= r.fixes
                if r.what == "module" and r.unknown:  # a module that stays on the CPU gets device inputs
                    unknown.extend((w.statement(node), reason, code_of(op)) for reason in r.unknown)
    p = Plan()
    fw = facts.fw
    for fix in sorted(fixes, key=lambda f: (w.order_of(tracer.fix_node(f)), getattr(f, "index", 0))):
        node = tracer.fix_node(fix)
        if not tracer.reachable(node):
            unknown.append((w.statement(node), f"`{code_of(node)}`, made out of reach of `{fw}`", ""))
        elif isinstance(fix, Kw):
            p.kw[id(fix.call)] = fix.call
            p.reports.append((fix.call, f"`{code_of(fix.call.func)}(...)` is made on `{fw}.device`: it reaches the "
                                        f"model or its inputs"))
        elif isinstance(fix, Wrap):
            p.wrap[id(fix.node)] = fix.node
            p.reports.append((fix.node, f"`{code_of(fix.node)}` is moved to `{fw}.device`: it reaches the model or "
                                        f"its inputs"))
        else:
            p.after.setdefault(id(fix.stmt), []).append(fix.name)  # in the order of the targets (sorted above)
            p.reports.append((fix.stmt, f"`{fix.name}` is moved to `{fw}.device` after it is made: it reaches "
                                        f"the model or its inputs"))
    for call in w.numpy:
        recv = tracer.classify(call.func.value)
        if recv.tensor and tracer.reachable(call) and (recv.dev or (recv.fixes and all(
                _applied(f, p) for f in recv.fixes))):
            p.numpy.add(id(call))
            p.reports.append((call, "`.cpu()` before `.numpy()`: the tensor is on the device now"))
    cpu_arg = 'accelerator="cpu"' if ctx.target == "fabric" else "cpu=True"
    # an explicit --accelerator does not win here: on a GPU the first step would fail with "Expected all tensors to
    # be on the same device", a crash the original (which trained on the CPU) did not have; a warning says so
    falls_back = not (ctx.target == "fabric" and ctx.options.launcher == "fabric-run")
    where = (f"`{fw}` is created for CPU processes ({cpu_arg}), where the original trained; to train on GPUs, "
             if falls_back else "on a GPU it stays on the CPU: ")
    seen: Set[Tuple[int, str]] = set()
    for stmt, reason, reaches in unknown:
        if stmt is None or (id(stmt), reason) in seen:
            continue
        seen.add((id(stmt), reason))
        target = f"reaches `{reaches}`" if reaches else "meets tensors on the device"
        p.todos.setdefault(id(stmt), []).append(
            f"{reason} {target}, and pt-migrate cannot follow it to where it is made; {where}put it on "
            f"`{fw}.device` (`.to({fw}.device)` where it is made)" + (f" and remove {cpu_arg}" if falls_back else ""))
        p.cpu_only.append(reason)
    for stmt, what, method in _cpu_in_modules(module, tracer):
        device = "the input's device (`device=x.device`)" if method.split(".")[0] in tracer.nn_classes else \
            f"`self.{fw}.device`"
        if what.endswith(".numpy()`"):
            text = f"`{method}` calls {what}, which needs a CPU tensor; {where}add `.cpu()` before `.numpy()`"
        else:
            text = f"`{method}` makes {what} on the CPU; {where}make it on {device}"
        p.todos.setdefault(id(stmt), []).append(text + (f" and remove {cpu_arg}" if falls_back else ""))
        p.cpu_only.append(f"{what} in `{method}`")
    siblings = _sibling_cpu_inputs(module, ctx)
    if siblings and falls_back:  # the sibling's TODO says how to move it; the object is created here
        p.cpu_only.extend(text for _, text, _, _ in siblings)
        p.sibling_notes = siblings
    if p.cpu_only and falls_back:
        explicit = ctx.options.accelerator
        if explicit and explicit != "cpu":
            first = next(stmt for stmt, _, _ in unknown if stmt is not None) if any(
                stmt is not None for stmt, _, _ in unknown) else None
            p.overridden = (first, f"--accelerator {explicit} is not applied: tensors made on the CPU reach the "
                                   f"model (the TODO(pt-migrate) PTM114 comments), so `{fw}` is created for CPU "
                                   f"processes ({cpu_arg}), where the original trained; move them to "
                                   f"`{fw}.device`, then set the accelerator")
        facts.device_choice = "cpu"
        files = sorted({file for file, _, _, _ in p.sibling_notes if file})
        refs = [f"see the TODO(pt-migrate) PTM114 comments{' in ' + ', '.join(files) if files else ''}"] \
            if p.todos or files else []
        refs += sorted({note.split(" makes ")[0] for file, note, _, _ in p.sibling_notes if not file})
        facts.device_comment = f"# {cpu_arg}: tensors made on the CPU reach the model ({'; '.join(refs)})"
    return p


# How a sibling module's CPU-made inputs reach the entry script's run: entries of `Options.external_fw_functions`
# (migrator.project), which is only ever tested for membership of "module.function" names: an entry with this
# prefix and spaces in it matches none of them
CPU_INPUT = "PTM114 cpu input "


def receiver_cpu_inputs(module: cst.Module, facts, source: str) -> List[Tuple[cst.CSTNode, str, str]]:
    """(statement, what, method) for each tensor a module that receives the framework object from a sibling (a
    trainer class of `trainer.py` that the entry script hands `fabric`) makes on the CPU in its trainer classes'
    methods, as `_cpu_in_modules` finds them; [] when the module creates the object itself, places tensors itself
    (the script's own moves, PTM101-PTM104), or receives nothing. Class bodies are not followed, so the entry
    script that creates the object must create it for CPU processes (`cpu_input_entries`)."""
    if facts.fw_exists or facts.setup_scope or not facts.fw_classes:
        return []
    if ".cuda(" in source or f"{facts.fw}.device" in source:
        return []
    if places_devices(module, ImportTable(source), facts.fw):
        return []
    tracer = Tracer(module, facts, source)
    return [(stmt, what, method) for stmt, what, method in _cpu_in_modules(module, tracer)
            if method.split(".")[0] in facts.fw_classes]


def cpu_input_entries(module_name: str, module: cst.Module, facts, source: str,
                      constructed: FrozenSet[str] = frozenset()) -> List[str]:
    """The `CPU_INPUT` entries for one module of a folder (migrator.project): "<prefix><module>.<Class> <method>:
    <what>" for each of `receiver_cpu_inputs`, and of `constructed_cpu_inputs` for the classes and functions
    `constructed` that the script creating the object imports from this module and calls."""
    found = receiver_cpu_inputs(module, facts, source)
    if constructed:
        found = found + constructed_cpu_inputs(module, facts, source, set(constructed))
    return [f"{CPU_INPUT}{module_name}.{method.split('.')[0]} {method}: {what}" for _, what, method in found]


def _sibling_cpu_inputs(module: cst.Module, ctx: Context) -> List[Tuple[str, str, cst.CSTNode, str]]:
    """What siblings of this module that it imports (their classes it hands the object, or calls) make on the CPU:
    the `CPU_INPUT` entries of `ctx.options.external_fw_functions`, as (file, "`method` (file) makes what", the call
    of the sibling's class here), the file empty where the sibling gets no TODO (it does not receive the object,
    and stays as it is: the note says what to change there)."""
    from migrator.analysis import _imported_external_fw
    out = []
    cpu_arg = 'accelerator="cpu"' if ctx.target == "fabric" else "cpu=True"
    for entry in sorted(ctx.options.external_fw_functions):
        if not entry.startswith(CPU_INPUT):
            continue
        qual, rest = entry[len(CPU_INPUT):].split(" ", 1)
        method, what = rest.split(": ", 1)
        local = _imported_external_fw(module, frozenset({qual}))
        if qual.split(".")[0] != ctx.options.module_name and local:
            file = f"{qual.split('.')[0]}.py"
            call = next((c for c in m.findall(module, m.Call()) if dotted(c.func) in local), module)
            how = ("the TODO(pt-migrate) PTM114 there says how to train on GPUs"
                   if qual in ctx.options.external_fw_functions else
                   f"to train on GPUs, make it on the device of the tensors it meets there (`device=x.device`) and "
                   f"remove {cpu_arg}")
            out.append((file if qual in ctx.options.external_fw_functions else "",
                        f"`{method}` ({file}) makes {what} on the CPU", call, how))
    return out


def _receiver_plan(module: cst.Module, ctx: Context, source: str) -> Plan:
    """A module that receives the object from the entry script: a TODO at each CPU-made tensor of its trainer
    classes (`receiver_cpu_inputs`); the entry script creates the object for CPU processes (`_sibling_cpu_inputs`)."""
    p = Plan()
    fw = ctx.facts.fw
    cpu_arg = 'accelerator="cpu"' if ctx.target == "fabric" else "cpu=True"
    falls_back = not (ctx.target == "fabric" and ctx.options.launcher == "fabric-run")
    for stmt, what, method in receiver_cpu_inputs(module, ctx.facts, source):
        where = (f"the script that creates `{fw}` creates it for CPU processes ({cpu_arg}), where the original "
                 f"trained; to train on GPUs, make it on `self.{fw}.device` and remove {cpu_arg} there"
                 if falls_back else f"on a GPU it stays on the CPU: make it on `self.{fw}.device`")
        if what.endswith(".numpy()`"):
            text = f"`{method}` calls {what}, which needs a CPU tensor: add `.cpu()` before `.numpy()` when it moves"
        else:
            text = f"`{method}` makes {what} on the CPU"
        p.todos.setdefault(id(stmt), []).append(f"{text}; {where}")
        p.cpu_only.append(f"{what} in `{method}`")
    return p


def _applied(fix, p: Plan) -> bool:
    node = fix.call if isinstance(fix, Kw) else fix.node if isinstance(fix, Wrap) else fix.stmt
    return id(node) in p.kw or id(node) in p.wrap or id(node) in p.after


def _operands(node: cst.CSTNode, tracer: Tracer) -> List[cst.BaseExpression]:
    """What meets in arithmetic, a comparison, a torch function, a tensor method or a module's call."""
    if isinstance(node, cst.BinaryOperation):
        return [node.left, node.right]
    if isinstance(node, cst.Comparison):
        return [node.left] + [c.comparator for c in node.comparisons]
    if isinstance(node, cst.AugAssign):
        return [node.target, node.value]
    if not isinstance(node, cst.Call):
        return []
    args = [a.value for a in node.args
            if a.keyword is None or a.keyword.value not in ("dim", "dtype", "keepdim", "device", "out")]
    q = tracer.torch_name(node.func)
    if q is not None:
        last = q.rsplit(".", 1)[-1]
        if last in FACTORIES | MAKERS or last[:1].isupper() or q.startswith(("torch.utils.", "torch.save")):
            return []
        return args
    if tracer.not_torch(node.func) or tracer.imported(node.func):
        return []
    if isinstance(node.func, cst.Attribute):
        recv = tracer.classify(node.func.value)
        if recv.tensor:
            return [node.func.value] + args
        if recv.what == "module" and not recv.set_up:
            return [node.func.value] + args
        return []
    callee = tracer.classify(node.func)
    if callee.what == "module" and not callee.set_up:
        return [node.func] + args
    return []


def _cpu_in_modules(module: cst.Module, tracer: Tracer, names: Optional[Set[str]] = None):
    """(statement, what, method) for each tensor a class of the file makes on the CPU outside `__init__`: a module
    class (a factory or a constructor without `device=`, or `.numpy()`), or a trainer class (one whose methods call
    backward; class bodies are not followed, so what it makes by hand cannot be put on the device). `names`: these
    classes instead (`constructed_cpu_inputs`)."""
    found = []
    trainers = tracer.facts.fw_classes | tracer.facts.class_candidates
    if names is None:
        names = tracer.nn_classes | (trainers & set(tracer.w.classes))
    for name in sorted(names):
        cls = tracer.w.classes[name]
        for item in cls.body.body:
            if isinstance(item, cst.FunctionDef) and item.name.value not in INIT_METHODS:
                found.extend(_cpu_calls(item, tracer, f"{name}.{item.name.value}"))
    return found


def _cpu_calls(fn: cst.FunctionDef, tracer: Tracer, label: str):
    """(statement, what, label) for each factory or constructor without `device=`, and each `.numpy()`, in `fn`."""
    found = []
    for stmt, call in _calls_by_statement(fn):
        q = tracer.torch_name(call.func) or ""
        last = q.rsplit(".", 1)[-1]
        kws = {a.keyword.value for a in call.args if a.keyword is not None}
        if q.count(".") == 1 and last in FACTORIES | MAKERS and "device" not in kws:
            found.append((stmt, f"`{code_of(call)}`", label))
        elif isinstance(call.func, cst.Attribute) and call.func.attr.value == "numpy" and not call.args \
                and not _on_cpu(call.func.value):
            found.append((stmt, f"`{code_of(call)}`", label))
    return found


def _calls_a_given_callable(fn: cst.FunctionDef, self_attrs: Set[str]) -> bool:
    """`fn` calls one of its parameters (`model(x)`) or an attribute its class was given (`self.model(x)`)."""
    params = {p.name.value for p in fn.params.params + fn.params.kwonly_params}
    for call in m.findall(fn.body, m.Call()):
        f = call.func
        if isinstance(f, cst.Name) and f.value in params:
            return True
        if m.matches(f, m.Attribute(value=m.Name("self"))) and f.attr.value in self_attrs:
            return True
    return False


def _given_attrs(cls: cst.ClassDef) -> Set[str]:
    """Attributes that `__init__` binds straight from a parameter (`self.model = model`)."""
    init = next((i for i in cls.body.body if isinstance(i, cst.FunctionDef) and i.name.value == "__init__"), None)
    if init is None:
        return set()
    params = {p.name.value for p in init.params.params + init.params.kwonly_params}
    out = set()
    for a in m.findall(init.body, m.Assign()):
        if isinstance(a.value, cst.Name) and a.value.value in params:
            out |= {t.target.attr.value for t in a.targets if m.matches(t.target, m.Attribute(value=m.Name("self")))}
    return out


def constructed_cpu_inputs(module: cst.Module, facts, source: str, names: Set[str]):
    """(statement, what, method) for each tensor that the classes and functions `names` of a sibling module, which
    the script that creates the object imports and calls, make on the CPU where a model meets it: the methods of an
    nn.Module subclass, or of a class that calls a callable it was given (`RF(model)`, whose `forward` calls
    `self.model(x)` beside `torch.randn(...)`), and a function that calls one of its parameters. The module stays as
    it is (it gets neither the object nor a TODO), so the entry script creates the object for CPU processes.
    [] when the module places tensors itself, creates or receives the object."""
    if facts.fw_exists or facts.setup_scope or facts.fw_classes or facts.fw_functions:
        return []
    table = ImportTable(source)
    if ".cuda(" in source or places_devices(module, table, facts.fw):
        return []
    tracer = Tracer(module, facts, source)
    classes = {n for n in names & set(tracer.w.classes)
               if n in tracer.nn_classes or any(isinstance(i, cst.FunctionDef) and _calls_a_given_callable(
                   i, _given_attrs(tracer.w.classes[n])) for i in tracer.w.classes[n].body.body)}
    found = _cpu_in_modules(module, tracer, classes)
    for fn in module.body:
        if isinstance(fn, cst.FunctionDef) and fn.name.value in names and _calls_a_given_callable(fn, set()):
            found.extend(_cpu_calls(fn, tracer, fn.name.value))
    return found


def _on_cpu(node: cst.BaseExpression) -> bool:
    """`x.cpu()`, `x.detach().cpu()`, `x.to("cpu")`: a tensor that is on the CPU whatever the device of x."""
    if not (isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute)):
        return False
    if node.func.attr.value == "cpu":
        return True
    return node.func.attr.value == "to" and len(node.args) == 1 and \
        isinstance(node.args[0].value, cst.SimpleString) and node.args[0].value.evaluated_value == "cpu"


def _calls_by_statement(fn: cst.FunctionDef):
    out = []

    class V(cst.CSTVisitor):
        def __init__(self):
            super().__init__()
            self.stmts: List[cst.CSTNode] = []

        def on_visit(self, node) -> bool:
            if isinstance(node, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
                self.stmts.append(node)
            if isinstance(node, cst.Call) and self.stmts:
                out.append((self.stmts[-1], node))
            return True

        def on_leave(self, node) -> None:
            if isinstance(node, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
                self.stmts.pop()

    fn.body.visit(V())
    return out


def _moved(node: cst.BaseExpression, fw: str) -> cst.Call:
    if not isinstance(node, (cst.Name, cst.Attribute, cst.Call, cst.Subscript)) and not node.lpar:
        node = node.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    return cst.Call(func=cst.Attribute(value=node, attr=cst.Name("to")),
                    args=[cst.Arg(cst.parse_expression(f"{fw}.device"))])


class _Transformer(RuleTransformer):
    def visit_Module(self, node: cst.Module) -> bool:
        plan = make_plan(node, self.ctx)
        self.plan = plan if plan is not None else Plan()  # an empty plan still carries the siblings' notes
        for where, message in self.plan.reports:
            self.report(where, message, True)
        cpu_arg = 'accelerator="cpu"' if self.ctx.target == "fabric" else "cpu=True"
        for _, note, call, how in self.plan.sibling_notes:
            self.report(call, f"{note}: `{self.facts.fw}` is created for CPU processes "
                              f"({cpu_arg}), where the original trained ({how})", False, WARNING)
        if self.plan.overridden is not None:
            where, message = self.plan.overridden
            self.report(where if where is not None else node, message, False, WARNING)
        return bool(self.plan)

    def on_visit(self, node: cst.CSTNode) -> bool:
        descend = super().on_visit(node)
        for message in self.plan.todos.get(id(node), ()) if hasattr(self, "plan") else ():
            self.todo(node, message, WARNING)
        return descend

    def on_leave(self, original_node, updated_node):
        key = id(original_node)
        plan = self.plan
        if key in plan.kw:
            updated_node = add_keywords(updated_node, {"device": f"{self.facts.fw}.device"})
        if key in plan.numpy:
            func = updated_node.func
            updated_node = updated_node.with_changes(func=func.with_changes(value=cst.Call(
                func=cst.Attribute(value=func.value, attr=cst.Name("cpu")))))
        if key in plan.wrap:
            updated_node = _moved(updated_node, self.facts.fw)
        if key in plan.kw or key in plan.numpy or key in plan.wrap:
            self.changed = True
        result = super().on_leave(original_node, updated_node)
        if key in plan.after and isinstance(result, cst.SimpleStatementLine):
            fw = self.facts.fw
            moves = [cst.parse_statement(f"{n} = {n}.to({fw}.device)") for n in plan.after[key]]
            self.changed = True
            return cst.FlattenSentinel([result] + moves)
        return result


class InputDevice(Rule):
    code = "PTM114"
    plain_scripts_only = True  # the core migration: a framework script has done it its own way
    name = "input-device"
    examples = [
        Example(
            before='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main():\n    model = torch.nn.Linear(5, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loader = DataLoader(TensorDataset(torch.randn(32, 4)), batch_size=8)\n    for (x,) in loader:\n        t = torch.rand(x.size(0), 1)\n        loss = model(torch.cat([x * t, t], dim=1)).mean()\n        loss.backward()\n        optimizer.step()\n',
            fabric='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main():\n    model = torch.nn.Linear(5, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loader = DataLoader(TensorDataset(torch.randn(32, 4)), batch_size=8)\n    for (x,) in loader:\n        t = torch.rand(x.size(0), 1, device=fabric.device)\n        loss = model(torch.cat([x * t, t], dim=1)).mean()\n        loss.backward()\n        optimizer.step()\n',
            accelerate='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\ndef main():\n    model = torch.nn.Linear(5, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loader = DataLoader(TensorDataset(torch.randn(32, 4)), batch_size=8)\n    for (x,) in loader:\n        t = torch.rand(x.size(0), 1, device=accelerator.device)\n        loss = model(torch.cat([x * t, t], dim=1)).mean()\n        loss.backward()\n        optimizer.step()\n',
        ),
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)

    def apply(self, wrapper, ctx):
        if ctx.facts.fw_exists or not (ctx.facts.setup_scope or ctx.facts.fw_classes):
            return wrapper.module  # a trainer class that a sibling hands the object: _receiver_plan
        return super().apply(wrapper, ctx)
