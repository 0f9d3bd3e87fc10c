"""Shared helpers: recognising device moves (`.to(device)`, `.cuda()`) and device arguments."""
from __future__ import annotations

from typing import Dict, Optional, Set

import libcst as cst

from migrator.analysis import DEVICE_STRING, Facts
from migrator.names import dotted

# Names that hold a device (or a GPU index) in the scripts people write.
DEVICEISH = {"device", "dev", "local_rank", "rank", "gpu", "gpu_id", "device_id"}


def is_device_arg(node: cst.BaseExpression, facts: Facts) -> bool:
    name = dotted(node)
    if name is not None:
        last = name.rsplit(".", 1)[-1]
        return (name in facts.device_names or last in DEVICEISH or last.endswith("_device")
                or name in (f"{facts.fw}.device", f"self.{facts.fw}.device"))
    if isinstance(node, cst.SimpleString):
        v = node.evaluated_value
        return isinstance(v, str) and bool(DEVICE_STRING.match(v))
    if isinstance(node, cst.Call):
        return dotted(node.func) in ("torch.device", "th.device", "device")
    if isinstance(node, cst.FormattedString):
        parts = list(node.parts)
        first = parts[0] if parts else None
        if isinstance(first, cst.FormattedStringText):
            return first.value.startswith("cuda")
        # f"{device}:{rank}": a device type and an index
        return (isinstance(first, cst.FormattedStringExpression) and len(parts) > 1
                and isinstance(parts[1], cst.FormattedStringText) and parts[1].value.startswith(":")
                and is_device_arg(first.expression, facts))
    return False


def is_move(call: cst.Call, facts: Facts) -> bool:
    """`x.to(device[, ...])`, `x.to(device=...)` or `x.cuda(...)`."""
    if not isinstance(call.func, cst.Attribute):
        return False
    attr = call.func.attr.value
    if attr == "cuda":
        return True
    if attr != "to" or not call.args:
        return False
    first = call.args[0]
    if first.keyword is None and first.star == "":
        return is_device_arg(first.value, facts)
    return any(a.keyword is not None and a.keyword.value == "device" and is_device_arg(a.value, facts)
               for a in call.args)


def strip_move(call: cst.Call, facts: Facts) -> Optional[cst.BaseExpression]:
    """What is left of a move without its device: the receiver, or `x.to(dtype)` when a dtype stays."""
    if not is_move(call, facts):
        return None
    receiver = call.func.value
    if call.func.attr.value == "cuda":
        return receiver
    rest = []
    for i, a in enumerate(call.args):
        if i == 0 and a.keyword is None:
            continue  # the device
        if a.keyword is not None and a.keyword.value in ("device", "non_blocking"):
            continue
        rest.append(a)
    if not rest:
        return receiver
    rest[-1] = rest[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
    return call.with_changes(args=rest)


def retarget_move(call: cst.Call, facts: Facts, fw: Optional[str] = None) -> Optional[cst.Call]:
    """`x.cuda()` / `x.to("cuda")` / `x.to(rank)` -> `x.to(fw.device)`; None when it already is right. `fw` is how
    the code there names the object (`self.fabric` in a trainer class's methods; default: the module's name)."""
    if not is_move(call, facts):
        return None
    fw = fw or facts.fw
    fw_device = cst.parse_expression(f"{fw}.device")
    if call.func.attr.value == "cuda":
        kws = [a for a in call.args if a.keyword is not None and a.keyword.value == "non_blocking"]
        args = [cst.Arg(fw_device)] + [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in kws]
        if len(args) > 1:
            args[0] = args[0].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        return call.with_changes(func=call.func.with_changes(attr=cst.Name("to")), args=args)
    first = call.args[0]
    name = dotted(first.value)
    keep_names = facts.device_names | {"device"}
    if name is not None and (name in keep_names or name in (f"{facts.fw}.device", f"{fw}.device")
                             or name.endswith(".device")):
        return None  # a device variable: it is rebound to the framework's device
    if first.keyword is None:
        return call.with_changes(args=[first.with_changes(value=fw_device)] + list(call.args[1:]))
    return None


def rooted_in(node: cst.BaseExpression, names: Set[str]) -> bool:
    """`batch["x"][0]`, `batch.x`, `batch.items()` hang off a name in `names`."""
    while True:
        if isinstance(node, cst.Name):
            return node.value in names
        if isinstance(node, (cst.Attribute, cst.Subscript)):
            node = node.value
        elif isinstance(node, cst.Call):
            node = node.func
        else:
            return False


def setup_block(module: cst.Module, facts: Facts) -> Optional[list]:
    """The statements of the setup scope: the module's, the main guard's or the setup function's body."""
    from migrator.analysis import MAIN_GUARD, MODULE, is_main_guard
    scope = facts.setup_scope
    if scope is None:
        return None
    if scope == MODULE:
        return list(module.body)
    for stmt in module.body:
        if scope == MAIN_GUARD and isinstance(stmt, cst.If) and is_main_guard(stmt):
            return list(stmt.body.body)
        if isinstance(stmt, cst.FunctionDef) and stmt.name.value == scope:
            return list(stmt.body.body)
    return None


def _assigned(stmt: cst.CSTNode, names) -> Set[str]:
    from migrator import matching as m
    from migrator.names import assigned_names
    found: Set[str] = set()
    for a in m.findall(stmt, m.Assign()):
        found |= {n for t in a.targets for n in assigned_names(t.target) if n in names}
    return found


def _uses_for_training(stmt: cst.CSTNode, models: Set[str], optimizers: Set[str]) -> bool:
    """A statement after which a model reassignment is no longer part of the setup: a loop, a compound statement
    other than an `if` / `with` made of such statements, or a call that is handed a model or an optimizer without
    rebinding that model (`fit(model, opt)`, `losses = fit(model, opt)`; `model = torch.compile(model)` and
    `print(model)` are fine)."""
    from migrator import matching as m
    if isinstance(stmt, (cst.If, cst.With)) and not m.findall(stmt, m.For() | m.While() | m.FunctionDef()):
        # `if compile_model: model = torch.compile(model)`: look inside
        blocks = [stmt.body] + ([stmt.orelse.body] if isinstance(stmt, cst.If) and stmt.orelse is not None
                                and isinstance(stmt.orelse, cst.Else) else [])
        if isinstance(stmt, cst.If) and isinstance(stmt.orelse, cst.If):
            return True
        return any(not isinstance(b, cst.IndentedBlock) or any(_uses_for_training(s, models, optimizers)
                                                                for s in b.body) for b in blocks)
    if not isinstance(stmt, cst.SimpleStatementLine):
        return True
    rebinds = _assigned(stmt, models)
    for small in stmt.body:
        if isinstance(small, cst.Expr):
            value = small.value
        elif isinstance(small, (cst.Assign, cst.AnnAssign)):
            value = small.value
        else:
            return True
        for call in m.findall(value, m.Call()) if value is not None else ():
            func = dotted(call.func) or ""
            if func == "print" or func.endswith(".print") or func.startswith(("logging.", "logger.", "log.")):
                continue  # printing the model is no use of it
            if _is_load(func):
                continue  # a checkpoint load into it (see _loads_into)
            for arg in call.args:
                name = dotted(arg.value)
                if name in optimizers or (name in models and name not in rebinds):
                    return True
    return False


def setup_point(body, facts: Facts) -> Optional[int]:
    """Index of the statement of the setup block after which PTM105 inserts the setup: the last optimizer's
    creation, or a reassignment of a model after it (torch.compile, a wrapper) before the model is first used
    for training (a loop, a call that is handed the model)."""
    models, optimizers = set(facts.models), set(facts.optimizers)
    last = max((i for i, s in enumerate(body) if _assigned(s, optimizers)), default=None)
    if not optimizers and facts.bare_models:  # no optimizer: from the model's first assignment
        last = min((i for i, s in enumerate(body) if _assigned(s, set(facts.bare_models))), default=None)
    if last is None:
        return None
    for i in range(last + 1, len(body)):
        if _uses_for_training(body[i], models, optimizers):
            break
        if _assigned(body[i], models) or _loads_into(body[i], models):
            last = i
    return last


def _is_load(func: str) -> bool:
    leaf = func.split(".")[-1].lower()
    return "load" in leaf or "restore" in leaf or "resume" in leaf


def _loads_into(stmt: cst.CSTNode, models: Set[str]) -> bool:
    """A checkpoint load into a model before training: `model.load_state_dict(...)`, `load_checkpoint(path,
    model, opt)`. The setup comes after it: Accelerate's prepared model is a DDP wrapper on several processes,
    whose state_dict keys start with `module.`, so a plain checkpoint no longer loads into it."""
    from migrator import matching as m
    for call in m.findall(stmt, m.Call()):
        func = dotted(call.func) or ""
        if not _is_load(func):
            continue
        if func.rsplit(".", 1)[0] in models or any(dotted(a.value) in models for a in call.args):
            return True
    return False


def plain_after_setup(module: cst.Module, facts: Facts) -> Dict[int, Set[str]]:
    """id(top-level statement of the setup block) -> set-up models that are a new, plain instance there.

    A model is set up right after the last optimizer is created (or after its reassignment before the first
    loop: PTM105). `model = Net().to(device)` again after that point (a second instance for inference) is never
    set up: from that statement on, `model` names a plain module that keeps its move and its own state_dict."""
    body = setup_block(module, facts)
    models = set(facts.models)
    if not body or not models:
        return {}
    last = setup_point(body, facts)
    if last is None:
        return {}
    out: Dict[int, Set[str]] = {}
    plain: Set[str] = set()
    for i, stmt in enumerate(body):
        if i > last and isinstance(stmt, cst.SimpleStatementLine):
            plain = plain | _assigned(stmt, models)
        if plain:
            out[id(stmt)] = set(plain)
    return out


def plain_models_here(transformer, plain: Dict[int, Set[str]]) -> Set[str]:
    """The set-up models that name a plain instance at the statement the transformer is in."""
    if not plain:
        return set()
    found: Set[str] = set()
    for stmt in transformer._stmts:
        found |= plain.get(id(stmt), set())
    return found
