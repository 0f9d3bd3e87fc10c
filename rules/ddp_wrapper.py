"""PTM131 ddp-wrapper: hand-written DistributedDataParallel / DataParallel wrappers go.

What it does: `model = DDP(model, device_ids=[rank])` is deleted and `model = DDP(Net().to(rank))` becomes
`model = Net()` (PTM102 drops the move); the same for `nn.DataParallel`. For Accelerate, `model.module`
becomes `accelerator.unwrap_model(model)` and attributes or methods of the user's class read off a set-up
model (`model.init_hidden(...)`, `model.config`) go through `accelerator.unwrap_model(model)`. For Fabric,
`model.module` stays (it is the original module) and methods other than `forward` that the script calls on
a set-up model are marked with `model.mark_forward_method("name")` right after setup (PTM105): only names that the
module's classes define as methods (a submodule called directly, `model.encoder(x)`, or a staticmethod is not one,
and marking it makes setup raise); where the model's class is imported, a TODO says what to mark.

A wrapper goes only where the framework wraps the model in its place: the model is set up (an optimizer of the
file trains it, its parameter groups included, or the script hands it to setup / prepare), or the wrapper is in a
method of a trainer class, whose caller hands it set-up models. A wrapped model that nothing sets up (a teacher
that follows the student by EMA) keeps its wrapper, with a TODO. On Fabric, `model.module` read before the setup
(`model_without_ddp = model.module` right after the wrapper) becomes `model`: the model is not wrapped there.

Why: `fabric.setup` / `accelerator.prepare` wrap the model themselves; a second wrapper breaks. Accelerate
returns a plain DDP module on several processes, which has no custom attributes; Fabric's wrapper passes
attributes through but refuses to run submodules outside `forward` unless told.

The wrapper's options go to the framework object that PTM100 creates (rules/_ddp_options.py): `device_ids`,
`output_device` and a default `process_group` are the framework's own and go; `find_unused_parameters`,
`broadcast_buffers`, `static_graph`, `gradient_as_bucket_view`, `bucket_cap_mb` (any other that is not at its
default) are passed to the framework's DDP. A value that is not a literal is written as the same expression when
its names are bound, once, before the object (a module constant, a parameter of the function); otherwise, and for
wrappers with different options, positional or `**` options, options the framework cannot take at its creation
(`process_group=group`, `device_mesh`) or Accelerate does not have (`init_sync`, ...), a TODO above the object
names them. Where the migration creates no object in the file (it exists already, or the wrapper is in a module
of its own), a TODO at the wrapper names the options.

Example: `model = DDP(model, device_ids=[local_rank])` is deleted;
`model = DDP(model, device_ids=[gpu], find_unused_parameters=True)` is deleted and the object gets the option.

Fabric form: no wrapper; `model.mark_forward_method("generate")` after setup; options as
`Fabric(..., strategy=DDPStrategy(find_unused_parameters=True))` (DDPStrategy passes extra keyword arguments to
DistributedDataParallel; `--strategy ddp_spawn` / `ddp_fork` become its `start_method`, another strategy or
`--launcher fabric-run` gets a TODO).
Accelerate form: no wrapper; `accelerator.unwrap_model(model).generate(...)`; options as
`Accelerator(..., kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])` (its fields are
passed to DistributedDataParallel).

In a script already on the framework (it calls its `setup` / `prepare` itself), a wrapper around a model that it
does not hand to them (a reference model) is deliberate: it stays, with a note.

Fix safety: safe. On Accelerate, a custom method that computes the training loss (`loss = model.training_loss(x)`,
whose result a backward in the loop around it takes) would bypass DDP's gradient hooks through `unwrap_model`: it
runs through the prepared model instead, with the module's `forward` pointed at the method for that call
(`accelerator.unwrap_model(model).forward = accelerator.unwrap_model(model).training_loss`, `loss = model(x)`,
`del accelerator.unwrap_model(model).forward`: what Fabric's `mark_forward_method` does); a method that calls the
model's own forward (`self(x)`) gets a redirection that removes itself before the call
(`... .forward = lambda *args, **kwargs: delattr(..., "forward") or ... .training_loss(*args, **kwargs)`), else it
would call itself forever. A call in another shape
(not a one-statement assignment on a model name) keeps a TODO: the gradients would not sync.
"""
from __future__ import annotations

from typing import Optional

import libcst as cst
from migrator import matching as m
from libcst.metadata import ParentNodeProvider, QualifiedNameProvider

from migrator.names import dotted, qualified_names
from migrator.rules._captures import plain_objects
from migrator.rules._ddp_options import read_wrapper
from migrator.rules.base import TODO_PREFIX, Context, Example, Rule, RuleTransformer

WRAPPERS = {"torch.nn.parallel.DistributedDataParallel", "torch.nn.parallel.distributed.DistributedDataParallel",
            "torch.nn.DataParallel", "torch.nn.parallel.DataParallel", "torch.nn.parallel.data_parallel.DataParallel"}
DDP_NAMES = {"torch.nn.parallel.DistributedDataParallel", "torch.nn.parallel.distributed.DistributedDataParallel"}
# nn.Module's own API: these pass through any wrapper.
MODULE_API = {
    "train", "eval", "parameters", "named_parameters", "buffers", "named_buffers", "state_dict", "load_state_dict",
    "zero_grad", "to", "cuda", "cpu", "modules", "named_modules", "children", "named_children", "apply",
    "requires_grad_", "half", "float", "double", "bfloat16", "register_buffer", "register_forward_hook",
    "register_forward_pre_hook", "register_full_backward_hook", "forward", "extra_repr", "get_submodule",
    "get_parameter", "type", "share_memory", "mark_forward_method", "no_sync", "module", "training",
    "register_module", "add_module", "__class__", "__dict__",
}


def class_members(module: cst.Module):
    """(methods, other names) of the module's classes: `def name` bound as a method (not a staticmethod or a
    property) and names bound otherwise (`self.encoder = nn.Linear(...)`, class attributes, properties)."""
    methods, other = set(), set()
    for cls in m.findall(module, m.ClassDef()):
        for stmt in cls.body.body:
            if isinstance(stmt, cst.FunctionDef):
                plain = not any(dotted(d.decorator) in ("staticmethod", "property") or
                                (dotted(d.decorator) or "").endswith(".setter") for d in stmt.decorators)
                (methods if plain else other).add(stmt.name.value)
        for a in m.findall(cls, m.Assign()):
            for t in a.targets:
                name = dotted(t.target) or ""
                if name.startswith("self.") and name.count(".") == 1:
                    other.add(name[5:])
                elif name and "." not in name:
                    other.add(name)
    return methods, other


def calls_own_forward(module: Optional[cst.Module], method: str) -> bool:
    """A method of the module's classes named `method` calls `self(...)` or `self.forward(...)`: pointing the
    module's forward at it (Accelerate's route for a loss method) would make it call itself forever."""
    if module is None:
        return False
    own = m.Call(func=m.Name("self")) | m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("forward")))
    return any(isinstance(s, cst.FunctionDef) and s.name.value == method and m.findall(s.body, own)
               for cls in m.findall(module, m.ClassDef()) for s in cls.body.body)


def forward_methods_to_mark(module: cst.Module, model: str):
    """(names to mark, names unsure): of non_forward_methods, those the module's classes define as methods (and
    bind to nothing else) are marked; a submodule or attribute (`model.encoder(x)`) is not (Fabric's
    mark_forward_method raises AttributeError on what is not a method); a name the module does not define (the
    class is imported) is unsure."""
    methods, other = class_members(module)
    mark, unsure = [], []
    for name in non_forward_methods(module, model):
        if name in methods and name not in other:
            mark.append(name)
        elif name not in methods and name not in other:
            unsure.append(name)
    return mark, unsure


def non_forward_methods(module: cst.Module, model: str):
    """Methods outside nn.Module's API called as `model.name(...)` in the module, outside class bodies: inside a
    class, `model` is some method's own local (a tensor named model in an attention layer's forward), and marking
    a method the model does not have makes setup fail."""
    found = []
    in_classes = {id(c) for cls in m.findall(module, m.ClassDef())
                  for c in m.findall(cls, m.Call(func=m.Attribute(value=m.Name(model))))}
    for call in m.findall(module, m.Call(func=m.Attribute(value=m.Name(model)))):
        if id(call) in in_classes:
            continue
        name = call.func.attr.value
        if name not in MODULE_API and not name.startswith("_") and name not in found:
            found.append(name)
    return found


class _Transformer(RuleTransformer):
    METADATA_DEPENDENCIES = RuleTransformer.METADATA_DEPENDENCIES + (QualifiedNameProvider, ParentNodeProvider)

    def _wrapper_inner(self, node):
        if isinstance(node, cst.Call) and qualified_names(self, node.func) & WRAPPERS and node.args:
            return node.args[0].value
        return None

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call):
        inner = self._wrapper_inner(original_node)
        if inner is not None and self.ctx.facts.on_target and not self._handed_over(original_node, inner):
            # a script on the framework already: a wrapper it keeps around a model it never sets up is deliberate
            self.note(original_node, "kept a DDP/DataParallel wrapper: the framework does not set up this model")
            return updated_node
        if inner is not None and not self.ctx.facts.on_target and not self._set_up_later(inner):
            names = " / ".join(f"`{n}`" for n in sorted(self._wrapped_names(inner)))
            self.todo(original_node, f"kept the DDP/DataParallel wrapper: {names} is not set up through "
                                     f"`{self.facts.fw}` here (no optimizer of this file trains it), so nothing "
                                     f"would wrap it in its place; set it up with the framework, then remove the "
                                     f"wrapper")
            self.facts.kept_ddp = self.facts.kept_ddp or bool(qualified_names(self, original_node.func) & DDP_NAMES)
            return updated_node
        if inner is not None:
            self.report(original_node, "removed the DDP/DataParallel wrapper: setup/prepare wraps the model", True)
            self._unwrapped.update(self._wrapped_names(inner))
            self._keep_options(original_node)
            return updated_node.args[0].value
        return updated_node

    def _keep_options(self, call: cst.Call) -> None:
        """The wrapper's options (find_unused_parameters=True, ...) go to the object PTM100 creates in this file
        (rules/_ddp_options.py); where no object is created here, a TODO names them."""
        if not qualified_names(self, call.func) & DDP_NAMES:
            return  # DataParallel's device_ids / output_device / dim are the framework's business
        function = next((s for s in reversed(self._stmts) if isinstance(s, cst.FunctionDef)), None)
        nested = sum(isinstance(s, cst.FunctionDef) for s in self._stmts) > 1
        found = read_wrapper(call, self.scope, function, nested)
        if not found:
            return
        from migrator.engine import _selected
        if self.facts.setup_scope and not self.facts.fw_exists and _selected("PTM100", self.ctx.options):
            self.facts.ddp_wrappers.append(found)
            return
        given = ", ".join([f"{k}={v}" for k, v in found.options.items()] + found.unreadable)
        where = ("`strategy=DDPStrategy(...)`" if self.ctx.target == "fabric"
                 else "`kwargs_handlers=[DistributedDataParallelKwargs(...)]`")
        self.todo(call, f"the removed DistributedDataParallel wrapper had {given}: the migration does not "
                        f"create the framework object in this file; give its DDP these options by hand ({where})")

    def _wrapped_names(self, inner: cst.BaseExpression) -> set:
        """The wrapped model and the names the wrapper is assigned to (`model = DDP(model).to(device)`)."""
        names = {dotted(inner)} - {None}
        stmt = self._stmts[-1] if self._stmts else None
        if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 and isinstance(stmt.body[0], cst.Assign):
            names |= {dotted(t.target) for t in stmt.body[0].targets} - {None}
        return names

    def _set_up_later(self, inner: cst.BaseExpression) -> bool:
        """The wrapper goes only where the framework wraps the model in its place: the model is one the migration
        sets up (an optimizer of this file trains it, or the script hands it to setup / prepare), or the wrapper is
        in a method of a trainer class, which is handed set-up models by the file that makes the object."""
        if self.in_fw_class_method():
            return True
        facts = self.facts
        set_up = set(facts.models) | facts.model_aliases | facts.handed_over
        return facts.setup_scope is not None and bool(self._wrapped_names(inner) & set_up)

    def visit_Module(self, node: cst.Module):
        """On Fabric, `model.module` read before the setup (`model_without_ddp = model.module` right after the
        removed wrapper) names the plain model: it becomes `model`. After the setup it is Fabric's original module
        and stays."""
        self._before_setup: set = set()
        self._module = node
        # names bound only to instances of the file's plain classes (`flow = Flow(Net())`): no nn.Module, so never
        # wrapped; PTM105 sets up the model they hold (`flow.model`), and `flow.model` must stay as written
        self._plain_objects = plain_objects(node)
        if self.ctx.target != "fabric" or ".module" not in (self.ctx.text or ".module"):
            return True
        from migrator.rules._moves import _uses_for_training, setup_block, setup_point
        body = setup_block(node, self.facts) or []
        last = setup_point(body, self.facts) if body else None
        if last is not None:
            # the setup goes inside a loop / `if` that creates the optimizer and trains: only what comes before it
            inside = not isinstance(body[last], cst.SimpleStatementLine) and _uses_for_training(
                body[last], set(self.facts.models), set(self.facts.optimizers))
            self._before_setup = {id(s) for s in body[: last if inside else last + 1]}
        return True

    def __init__(self, rule, ctx):
        super().__init__(rule, ctx)
        self._routes: dict = {}  # id(statement) -> (model, method) to call through the prepared model's forward
        self._unwrapped: set = set()  # names whose wrapper this pass removed
        self._before_setup: set = set()  # ids of the setup block's statements that run before the setup (Fabric)

    def _feeds_backward(self) -> bool:
        """The statement assigns a name that a loop around it passes to backward (the training path)."""
        stmt = self._stmts[-1] if self._stmts else None
        small = stmt.body[0] if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 else None
        if not isinstance(small, cst.Assign) or len(small.targets) != 1 or \
                not isinstance(small.targets[0].target, cst.Name):
            return False
        loss = small.targets[0].target.value
        for loop in self._stmts:
            if isinstance(loop, (cst.For, cst.While)):
                for call in m.findall(loop.body, m.Call(func=m.Attribute(attr=m.Name("backward")))):
                    if loss in {n.value for n in m.findall(call, m.Name())}:
                        return True
        return False

    def _handed_over(self, call: cst.Call, inner: cst.BaseExpression) -> bool:
        parent = self.get_metadata(ParentNodeProvider, call, None)
        names = {dotted(inner)}
        if isinstance(parent, cst.Assign):
            names |= {dotted(t.target) for t in parent.targets}
        return bool(names & self.ctx.facts.handed_over)

    def leave_SimpleStatementLine(self, original_node, updated_node):
        route = self._routes.pop(id(original_node), None) if self._routes else None
        if route is not None:
            base, attr, once = route

            class _Direct(cst.CSTTransformer):  # model.attr(...) -> model(...)
                def leave_Call(self, o, u):
                    f = u.func
                    if isinstance(f, cst.Attribute) and f.attr.value == attr and isinstance(f.value, cst.Name) and \
                            f.value.value == base:
                        return u.with_changes(func=cst.Name(base))
                    return u

            inner = f"{self.fw}.unwrap_model({base})"
            call = updated_node.visit(_Direct()).with_changes(leading_lines=[])
            if once:  # the method calls the model's own forward: the redirection removes itself first, as Fabric's does
                first = cst.parse_statement(
                    f'{inner}.forward = lambda *args, **kwargs: delattr({inner}, "forward") or '
                    f'{inner}.{attr}(*args, **kwargs)').with_changes(
                    leading_lines=list(updated_node.leading_lines) + [cst.EmptyLine(comment=cst.Comment(
                        f"# `{attr}` runs through the prepared model's forward (Accelerate has no "
                        f"mark_forward_method), so DDP averages its gradients; it calls the model's forward itself, "
                        f"so the redirection removes itself before the call"))])
                return cst.FlattenSentinel([first, call])
            first = cst.parse_statement(f"{inner}.forward = {inner}.{attr}").with_changes(
                leading_lines=list(updated_node.leading_lines) + [cst.EmptyLine(comment=cst.Comment(
                    f"# `{attr}` runs through the prepared model's forward (Accelerate has no mark_forward_method), "
                    f"so DDP averages its gradients"))])
            return cst.FlattenSentinel([first, call, cst.parse_statement(f"del {inner}.forward")])
        small = updated_node.body[0] if len(updated_node.body) == 1 else None
        if isinstance(small, cst.Assign) and len(small.targets) == 1 and \
                self._wrapper_inner(original_node.body[0].value) is not None and \
                dotted(small.targets[0].target) is not None and dotted(small.targets[0].target) == dotted(small.value):
            for code, message in self._todos.pop(id(original_node), ()):  # they go with the statement that follows
                self._pending_comments = self._pending_comments + [cst.EmptyLine(comment=cst.Comment(
                    f"{TODO_PREFIX} {code}: {message}"))]
            return self.remove(original_node)
        return updated_node

    def leave_Attribute(self, original_node: cst.Attribute, updated_node: cst.Attribute):
        if self.ctx.target == "fabric" and original_node.attr.value == "module" and self._before_setup and \
                dotted(original_node.value) in self._unwrapped and \
                any(id(s) in self._before_setup for s in self._stmts):
            base = dotted(original_node.value)
            self.report(original_node, f"`{base}.module` -> `{base}`: before the setup the model is no longer "
                                       f"wrapped", True)
            return updated_node.value
        if self.ctx.target != "accelerate" or not self.in_fw_scope():
            return updated_node
        base = dotted(original_node.value)
        attr = original_node.attr.value
        if base is None:
            return updated_node
        # `self.model.module` in a trainer class: the attribute that held the hand-made DDP wrapper
        held = base.startswith("self.") and any(k in base.rsplit(".", 1)[-1] for k in ("model", "net"))
        if (base not in self.facts.models and not (held and attr == "module")) or base in self._plain_objects:
            return updated_node
        parent = self.get_metadata(ParentNodeProvider, original_node, None)
        if isinstance(parent, cst.AssignTarget) or (isinstance(parent, cst.Attribute) and attr == "module"):
            if attr == "module":  # model.module.x -> accelerator.unwrap_model(model).x
                self.report(original_node, f"`{base}.module` -> `{self.fw}.unwrap_model({base})`", True)
                return cst.parse_expression(f"{self.fw}.unwrap_model({base})")
            return updated_node
        if attr == "module":
            return cst.parse_expression(f"{self.fw}.unwrap_model({base})")
        if attr in MODULE_API or attr.startswith("__"):
            return updated_node
        if isinstance(parent, cst.Call) and parent.func is original_node and self._feeds_backward():
            # unwrap_model(model).name(...) would bypass DDP's forward: its gradients would not be averaged. The call
            # goes through the prepared model's forward with the module's forward pointed at the method for that
            # call: what Fabric's mark_forward_method does
            if isinstance(original_node.value, cst.Name) and len(self._stmts) and \
                    isinstance(self._stmts[-1], cst.SimpleStatementLine) and len(self._stmts[-1].body) == 1:
                self._routes[id(self._stmts[-1])] = (base, attr,
                                                     calls_own_forward(getattr(self, "_module", None), attr))
                self.report(original_node, f"`{base}.{attr}(...)` computes the training loss outside `forward`: it "
                                           f"now runs through the prepared model's forward (the module's `forward` "
                                           f"is `{attr}` for that call), so DDP averages its gradients", True)
                return updated_node
            self.todo(original_node, f"`{base}.{attr}(...)` computes the training loss outside `forward`: Accelerate "
                                     f"has no mark_forward_method, and through `{self.fw}.unwrap_model({base})` the "
                                     f"gradients would not sync across processes (on several processes the prepared "
                                     f"DDP model has no `{attr}`); compute the loss from `{base}(...)` (forward)")
            return updated_node
        self.report(original_node, f"`{base}.{attr}` -> `{self.fw}.unwrap_model({base}).{attr}`: the prepared model "
                                   f"is plain DDP on several processes", True)
        return updated_node.with_changes(value=cst.parse_expression(f"{self.fw}.unwrap_model({base})"))


class DdpWrapper(Rule):
    code = "PTM131"
    name = "ddp-wrapper"

    def wanted(self, lowered_code: str, ctx: Context) -> bool:
        # Accelerate also unwraps `model.x` of any set-up model; Fabric has only wrappers to remove
        return ctx.target == "accelerate" or "dataparallel" in lowered_code
    examples = [
        Example(
            before='import torch\nfrom torch.nn.parallel import DistributedDataParallel as DDP\n\n\ndef main(rank):\n    model = DDP(torch.nn.Linear(4, 1).to(rank), device_ids=[rank])\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n    print(model.module.weight.shape)\n',
            fabric='import torch\n\n\ndef main(rank):\n    model = torch.nn.Linear(4, 1).to(rank)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n    print(model.module.weight.shape)\n',
            accelerate='import torch\n\n\ndef main(rank):\n    model = torch.nn.Linear(4, 1).to(rank)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n    print(accelerator.unwrap_model(model).weight.shape)\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
