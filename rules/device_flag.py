"""PTM115 device-flag: the framework's device follows the script's own CUDA flag, and moves do not hide behind it.

What it does: scripts choose the device with a flag of their own (`use_cuda = not args.no_cuda and
torch.cuda.is_available()`, `args.cuda = ...`, `--cuda`) and move tensors under it (`if args.cuda: x = x.cuda()`).
The migration points the moves at `fabric.device` / `accelerator.device` (PTM101, PTM104) while the framework
chooses the device itself, so with `--no-cuda` on a GPU machine the model went to the GPU and the data stayed
on the CPU. Where one flag chose the device (in a device expression PTM101 replaced, or as the condition of
moves) and it is bound before the framework object is created, the object follows it:
`Fabric(accelerator="cuda" if args.cuda else "cpu", ...)` / `Accelerator(cpu=not args.cuda)`, and the moves
under `if args.cuda:` stay as they are, consistent with it. In a function or under the main guard the object is
created right after the flag's binding when nothing above it uses the object (it is created at the top
otherwise). A flag that does not check `torch.cuda.is_available()` itself (an argparse `--cuda`) gives
`"auto" if flag else "cpu"` / `cpu=not flag or (...)`, so a CPU-only machine still runs.

Where the object cannot follow the flag (the flag is bound later, `--accelerator` was given, two flags disagree,
or the condition is `torch.cuda.is_available()` itself, which the framework's own choice does not mirror on
other accelerators), moves to the framework's device under such a condition are taken out of the `if`: they are
right whatever the device (a move to the CPU does nothing). A block that does more than move is left with a TODO.

Why: the framework's device and the script's flag must agree, or a user's `--no-cuda` crashes the run with
"Expected all tensors to be on the same device"; and `--no-cuda` must still mean CPU.

Example: `args.cuda = not args.no_cuda and torch.cuda.is_available()` above the object's creation ->
`fabric = Fabric(accelerator="cuda" if args.cuda else "cpu", ...)`.

Fabric form: `Fabric(accelerator="cuda" if FLAG else "cpu", ...)`.
Accelerate form: `Accelerator(cpu=not FLAG)`.

Fix safety: safe. A script already on the framework, or given `--accelerator`, keeps its choice.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Set, Tuple

import libcst as cst

from migrator import matching as m
from migrator.analysis import MAIN_GUARD, MODULE, is_main_guard
from migrator.names import assigned_names, dotted
from migrator.rules.base import Context, Example, Rule, RuleTransformer

CUDA_CHECK = "torch.cuda.is_available"


def flag_of(value: cst.BaseExpression) -> Optional[str]:
    """The flag a device expression picks with: `torch.device("cuda" if use_cuda else "cpu")` -> "use_cuda";
    `"cpu" if args.no_cuda else "cuda"` -> "not args.no_cuda". None when it picks by CUDA's presence alone."""
    for node in m.findall(value, m.IfExp()):
        body, orelse = _kind(node.body), _kind(node.orelse)
        if {body, orelse} != {"cuda", "cpu"}:
            continue
        code = _code(node.test)
        if not _script_names(node.test):
            return None
        return code if body == "cuda" else f"not {_atom(node.test)}"
    return None


def flag_of_if(node: cst.If) -> Optional[str]:
    """`if use_cuda: device = torch.device("cuda")` / `else: device = torch.device("cpu")` -> "use_cuda"."""
    if not isinstance(node.orelse, cst.Else) or not _script_names(node.test):
        return None
    kinds = []
    for block in (node.body, node.orelse.body):
        values = [s.body[0].value for s in block.body if isinstance(s, cst.SimpleStatementLine)
                  and len(s.body) == 1 and isinstance(s.body[0], cst.Assign)]
        kinds.append(_kind(values[0]) if len(values) == 1 else None)
    if kinds == ["cuda", "cpu"]:
        return _code(node.test)
    if kinds == ["cpu", "cuda"]:
        return f"not {_atom(node.test)}"
    return None


def _kind(node: cst.BaseExpression) -> Optional[str]:
    if isinstance(node, cst.Call) and node.args:  # torch.device("cuda")
        node = node.args[0].value
    if isinstance(node, cst.SimpleString) and isinstance(node.evaluated_value, str):
        v = node.evaluated_value
        return "cuda" if v.startswith("cuda") else "cpu" if v == "cpu" else None
    if isinstance(node, cst.FormattedString) and node.parts and isinstance(node.parts[0], cst.FormattedStringText):
        return "cuda" if node.parts[0].value.startswith("cuda") else None
    return None


def _script_names(test: cst.BaseExpression) -> List[str]:
    """The script's own names in a condition (`args.cuda`, `use_cuda`), not torch's: whole `a.b.c` chains."""
    out: List[str] = []

    def walk(node: cst.CSTNode) -> None:
        name = dotted(node) if isinstance(node, (cst.Name, cst.Attribute)) else None
        if name is not None:
            if name.split(".")[0] not in ("torch", "th") and name not in out:
                out.append(name)
            return
        if isinstance(node, cst.Call):
            walk(node.func)
            for a in node.args:
                walk(a.value)
            return
        for child in node.children:
            walk(child)

    walk(test)
    return out


def _atom(node: cst.BaseExpression) -> str:
    code = _code(node)
    return code if isinstance(node, (cst.Name, cst.Attribute, cst.Call)) else f"({code})"


def _code(node: cst.CSTNode) -> str:
    return cst.Module(body=[]).code_for_node(node)


def is_device_condition(test: cst.BaseExpression) -> bool:
    """`args.cuda`, `use_cuda and not args.cpu`, `torch.cuda.is_available()`: a condition made of CUDA checks and
    names that say cuda / gpu."""
    allowed = (cst.Name, cst.Attribute, cst.UnaryOperation, cst.BooleanOperation, cst.Call, cst.Not, cst.And,
               cst.Or, cst.LeftParen, cst.RightParen)
    for node in m.findall(test, m.Call()):
        if not (dotted(node.func) or "").endswith("cuda.is_available"):
            return False
    if isinstance(test, cst.Call):
        return (dotted(test.func) or "").endswith("cuda.is_available")
    if not isinstance(test, allowed):
        return False
    names = _script_names(test)
    return all(("cuda" in n.rsplit(".", 1)[-1].lower() or "gpu" in n.rsplit(".", 1)[-1].lower())
               and n.rsplit(".", 1)[-1].lower() not in ("gpu", "gpus", "gpu_id", "cuda_device") for n in names)


def binding_index(body: Sequence[cst.BaseStatement], name: str) -> Optional[int]:
    """Index of the last top-level statement of a block that binds `name` (`args.cuda = ...`, `args = ...`),
    nested binds included; None when none does."""
    found = None
    for i, stmt in enumerate(body):
        for a in m.findall(stmt, m.Assign() | m.AnnAssign() | m.AugAssign()):
            targets = [t.target for t in a.targets] if isinstance(a, cst.Assign) else [a.target]
            if any(name in assigned_names(t) for t in targets):
                found = i
    return found


def creation_block(module: cst.Module, facts) -> Tuple[Optional[list], bool]:
    """(statements of the block where PTM100 creates the object, whether it is the module's own body)."""
    scope = facts.setup_scope
    if scope == MODULE:
        return list(module.body), True
    for stmt in module.body:
        if scope == MAIN_GUARD and isinstance(stmt, cst.If) and is_main_guard(stmt):
            return list(stmt.body.body), False
        if isinstance(stmt, cst.FunctionDef) and stmt.name.value == scope:
            return list(stmt.body.body), False
    return None, False


def _module_names_before(module: cst.Module, facts) -> Set[str]:
    """Names bound at module level before the setup block runs (the guard, or the setup function's call)."""
    names: Set[str] = set()
    for stmt in module.body:
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)) or (isinstance(stmt, cst.If) and is_main_guard(stmt)):
            continue
        for a in m.findall(stmt, m.Assign()):
            for t in a.targets:
                names.update(assigned_names(t.target))
    return names


class _Guards(RuleTransformer):
    """Takes moves out of `if <device condition>:` blocks that the object does not follow, and marks where a flag
    that chose the device is bound when the object cannot follow it."""

    def __init__(self, rule, ctx, followed: Optional[str], lost: Sequence[str] = ()):
        super().__init__(rule, ctx)
        self.followed = followed
        self.lost = {name: flag for flag in lost for name in _script_names(cst.parse_expression(flag))}
        self.marked: Set[str] = set()

    def visit_Module(self, node: cst.Module) -> None:
        # the flag's own line (`args.cuda = ...`) when there is one, else the line that binds its root (`args = ...`)
        bound = {n for a in m.findall(node, m.Assign()) for t in a.targets for n in assigned_names(t.target)}
        self.exact = bool(self.followed) and all(n in bound for n in _script_names(cst.parse_expression(self.followed)))
        self.bound = bound

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        if self.followed and not self.marked and self._binds(
                node, _script_names(cst.parse_expression(self.followed)), self.exact):
            self.marked.add(self.followed)
            self.report(node, f"`{self.fw}` is created to follow `{self.followed}`, as the script's device did: "
                              f"the moves under it stay consistent with the framework's device", True)
        if not self.lost or not self.in_fw_scope():
            return
        for a in m.findall(node, m.Assign()):
            for name in [n for t in a.targets for n in assigned_names(t.target)]:
                bound = [n for n in self.lost if n == name or (n not in self.bound and n.split(".")[0] == name)]
                for n in bound:
                    flag = self.lost[n]
                    if flag in self.marked:
                        continue
                    self.marked.add(flag)
                    arg = (f'accelerator="cuda" if {flag} else "cpu"' if self.ctx.target == "fabric"
                           else f"cpu=not {_atom(cst.parse_expression(flag))}")
                    self.todo(node, f"the device no longer follows `{flag}`: `{self.fw}` picks it (a GPU when there "
                                    f"is one), and the moves it guarded run always; to keep `{flag}` in charge, create "
                                    f"`{self.fw}` after this line with {arg}")

    def leave_If(self, original_node: cst.If, updated_node: cst.If):
        updated_node = super().leave_If(original_node, updated_node)
        if not self.in_fw_scope() or original_node.orelse is not None or not _moves_to_fw(original_node.body, self.fw):
            return updated_node  # with an `else`, the script says where to go in both cases
        if not is_device_condition(original_node.test):
            return updated_node
        test = _code(original_node.test)
        if self.followed is not None and test == self.followed:
            return updated_node  # consistent: the object follows the same flag
        if all(_only_moves(s, self.fw) for s in updated_node.body.body):
            self.report(original_node, f"moves out of `if {test}:`: `{self.fw}` picks the device itself, and a move "
                                       f"to its device is right on any device", True)
            body = list(updated_node.body.body)
            body[0] = body[0].with_changes(leading_lines=list(updated_node.leading_lines) + list(body[0].leading_lines))
            return cst.FlattenSentinel(body)
        self.todo(original_node, f"the moves here run only when `{test}`, but `{self.fw}` picks the device itself: "
                                 f"move them out of the `if` (a move to `{self.fw}.device` is right on any device)")
        return updated_node


    @staticmethod
    def _binds(node: cst.SimpleStatementLine, names: List[str], exact: bool) -> bool:
        bound = {n for a in m.findall(node, m.Assign()) for t in a.targets for n in assigned_names(t.target)}
        return any(n in bound or (not exact and n.split(".")[0] in bound) for n in names)


def _moves_to_fw(block, fw: str) -> bool:
    return any(_is_fw_move(c, fw) for c in m.findall(block, m.Call()))


def _is_fw_move(call: cst.Call, fw: str) -> bool:
    return (isinstance(call.func, cst.Attribute) and call.func.attr.value == "to" and bool(call.args)
            and dotted(call.args[0].value) in (f"{fw}.device", f"self.{fw}.device"))


def _only_moves(stmt: cst.BaseStatement, fw: str) -> bool:
    """`x = x.to(fabric.device)`, `a, b = a.to(...), b.to(...)`, `x.to(...)`, `pass`."""
    if not isinstance(stmt, cst.SimpleStatementLine):
        return False
    for small in stmt.body:
        if isinstance(small, cst.Pass):
            continue
        value = small.value if isinstance(small, (cst.Assign, cst.Expr)) else None
        parts = value.elements if isinstance(value, cst.Tuple) else [cst.Element(value)] if value is not None else []
        if not parts or not all(isinstance(p.value, cst.Call) and _is_fw_move(p.value, fw) for p in parts):
            return False
    return True


class DeviceFlag(Rule):
    code = "PTM115"
    plain_scripts_only = True  # the core migration: a framework script has done it its own way
    name = "device-flag"
    triggers = ("cuda", "gpu")  # a CUDA check or a flag named for it
    examples = [
        Example(
            before='import torch\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    x = torch.randn(8, 4)\n    if torch.cuda.is_available():\n        x = x.to(fabric.device)\n    model(x).sum().backward()\n    optimizer.step()\n',
            fabric='import torch\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    x = torch.randn(8, 4)\n    x = x.to(fabric.device)\n    model(x).sum().backward()\n    optimizer.step()\n',
            accelerate=None,
        ),
        Example(
            before='import torch\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    x = torch.randn(8, 4)\n    if torch.cuda.is_available():\n        x = x.to(accelerator.device)\n    model(x).sum().backward()\n    optimizer.step()\n',
            fabric=None,
            accelerate='import torch\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    x = torch.randn(8, 4)\n    x = x.to(accelerator.device)\n    model(x).sum().backward()\n    optimizer.step()\n',
        ),
    ]

    _state: tuple = (None, ())  # (followed, lost), set by `apply` for its transformer (one migration at a time)

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Guards(self, ctx, *self._state)

    def apply(self, wrapper, ctx):
        facts = ctx.facts
        if facts.fw_exists or not facts.setup_scope or facts.device_choice is not None:
            return wrapper.module
        flags = self._flags(wrapper.module, ctx)
        followed = self._follow(wrapper.module, ctx, flags)
        # with --accelerator (or `fabric run`) the user chose the device: the flags are not marked
        chosen = ctx.options.accelerator is not None or (ctx.target == "fabric" and ctx.options.launcher == "fabric-run")
        self._state = (followed, [] if followed or chosen else flags)
        try:
            return super().apply(wrapper, ctx)
        finally:
            self._state = (None, ())

    def _flags(self, module: cst.Module, ctx: Context) -> List[str]:
        """The script's flags that chose the device: in a device expression (PTM101 recorded them) or as the
        condition of moves."""
        flags = list(dict.fromkeys(ctx.facts.device_flags))
        for node in m.findall(module, m.If()):
            if node.orelse is None and is_device_condition(node.test) and _script_names(node.test) \
                    and _moves_to_fw(node.body, ctx.facts.fw):
                code = _code(node.test)
                if code not in flags:
                    flags.append(code)
        return flags

    def _follow(self, module: cst.Module, ctx: Context, flags: List[str]) -> Optional[str]:
        """The flag the object follows (its code), after asking PTM100 for it; None when it cannot."""
        facts = ctx.facts
        if len(flags) != 1 or ctx.options.accelerator is not None or (
                ctx.target == "fabric" and ctx.options.launcher == "fabric-run"):
            return None
        flag = flags[0]
        block, module_level = creation_block(module, facts)
        if block is None:
            return None
        from migrator.rules.framework_object import first_use_index, insertion_index
        index = insertion_index(block, module_level)
        if module_level:
            index = max(index, first_use_index(block, facts.fw, index))
        names = _script_names(cst.parse_expression(flag))
        outer = _module_names_before(module, facts) if not module_level else set()
        after = None
        for name in names:
            if name in outer or name.split(".")[0] in outer:
                continue
            bound = name if binding_index(block, name) is not None else name.split(".")[0]
            where = binding_index(block, bound)
            if where is None:
                return None
            if where >= index:
                # created later, right after the flag: only where nothing above can come to use the object
                if module_level or not all(_before_object_ok(s, facts.fw) for s in block[:where + 1]):
                    return None
                if after is None or where > after[0]:
                    after = (where, bound)
        checks = CUDA_CHECK in flag or any(CUDA_CHECK in _code(a.value) for name in names
                                           for a in _assignments(module, name))
        facts.device_choice = (flag, checks)
        facts.device_comment = f"# the device follows `{flag}`, as in the original script"
        facts.create_after = after[1] if after else None
        return flag


def _assignments(module: cst.Module, name: str) -> List[cst.Assign]:
    return [a for a in m.findall(module, m.Assign()) if any(name in assigned_names(t.target) for t in a.targets)]


# what later rules (rank guards, checkpoints, collectives) rewrite into uses of the object
_LATER_USES = ("rank", "world", "dist.", "distributed", "save(", "load(", "environ", "print(", "barrier",
               "all_reduce", "backward", "setup", "prepare")


def _before_object_ok(stmt: cst.BaseStatement, fw: str) -> bool:
    """A statement that may run before the object exists: it does not use it, and no later rule will make it."""
    if m.findall(stmt, m.Name(fw)):
        return False
    code = _code(stmt).lower()
    return not any(word in code for word in _LATER_USES)
