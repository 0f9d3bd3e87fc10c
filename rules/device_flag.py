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

The switches it knows (rules/device_flag.switch_of): `"cuda"` / `"mps"` / `"xpu"` strings, `torch.device(...)`
of them, `torch.accelerator.current_accelerator()` (also inside `torch.device(...)`), conditional expressions and
if/elif/else statements that pick an accelerator or the CPU (`use_cuda or use_mps` when the CPU comes last,
`not args.cpu` when it comes first), and a device option (`torch.device(args.device)` -> `str(args.device) !=
"cpu"`). For an accelerator that is not (only) CUDA, or a flag without a CUDA check, Fabric gets
`accelerator="auto" if FLAG else "cpu"`; a flag that checks `torch.accelerator.is_available()` (or MPS's, XPU's)
gives Accelerate `cpu=not FLAG`. Where the script's names chose the device in a way no flag can say (a helper
`pick_device(args)`, `"mps" if args.mps else "cuda"`), the replaced device line gets a warning and a TODO: the
switch no longer chooses the device. An index (`f"cuda:{args.gpu}"`, `torch.device(rank)`) is no switch.

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

import builtins
from dataclasses import dataclass
from typing import List, Optional, Sequence, Set, Tuple

import libcst as cst

from migrator import matching as m
from migrator.analysis import MAIN_GUARD, MODULE, is_main_guard
from migrator.names import assigned_names, dotted
from migrator.rules.base import Context, Example, Rule, RuleTransformer

CUDA_CHECK = "torch.cuda.is_available"
# checks of an accelerator's presence: a flag that makes one is false on a machine without it
AVAILABILITY = ("cuda.is_available", "accelerator.is_available", "mps.is_available", "xpu.is_available")
CPU, CUDA, ACCEL = "cpu", "cuda", "accel"  # the kinds of device an expression picks; ACCEL: not (only) CUDA
_NON_CUDA = ("mps", "xpu", "hpu", "npu")


@dataclass(frozen=True)
class Switch:
    """A device choice that a name of the script decides (`"cuda" if use_cuda else "cpu"`, `torch.device(args.device)`).

    flag: code that is true exactly when the choice is an accelerator, or None when it cannot be said (then the
    framework object cannot follow it); cuda: that accelerator is CUDA itself; names: the script's names it reads.
    """
    flag: Optional[str]
    cuda: bool
    names: Tuple[str, ...]
    target: str = ""  # the name the device was bound to (PTM101 fills it in)


def switch_of(value: cst.BaseExpression) -> Optional[Switch]:
    """The switch of a device expression, None when no name of the script chooses the device.

    `torch.device("cuda" if use_cuda else "cpu")` -> Switch("use_cuda", cuda=True);
    `torch.accelerator.current_accelerator() if use_accel else torch.device("cpu")` -> Switch("use_accel", False);
    `"cpu" if args.no_cuda else "cuda"` -> "not args.no_cuda"; `torch.device(args.device)` ->
    `str(args.device) != "cpu"`; `"cuda" if a else "mps"` -> Switch(None, ...): the script's names choose, but not
    between an accelerator and the CPU. An index (`f"cuda:{args.gpu}"`, `torch.device(rank)`) chooses no kind.
    """
    while isinstance(value, cst.Call) and _is_device_call(value.func) and len(value.args) == 1:
        value = value.args[0].value  # torch.device(<choice>)
    if isinstance(value, cst.IfExp):
        branches, final = [], value
        while isinstance(final, cst.IfExp):  # "cuda" if a else "mps" if b else "cpu"
            branches.append((final.test, _kind(final.body), _value_names(final.body)))
            final = final.orelse
        return _chain([(t, k) for t, k, _ in branches], _kind(final),
                      [n for t, _, ns in branches for n in _script_names(t) + ns] + _value_names(final))
    names = _value_names(value)
    if len(names) == 1 and _says_device(names[0]):
        return Switch(f'str({names[0]}) != "cpu"', False, tuple(names))
    if not names or all(says_index(n) for n in names):
        return None  # `torch.device(rank)`: which device of its kind, the framework's business now
    return Switch(None, False, tuple(names))


def switch_of_if(node: cst.If) -> Optional[Switch]:
    """`if use_cuda: device = torch.device("cuda")` / `elif use_mps: device = "mps"` / `else: device = "cpu"`
    -> Switch("use_cuda or use_mps", cuda=False); None when no name of the script chooses."""
    branches, names, branch = [], [], node
    while isinstance(branch, cst.If):
        kind = _block_kind(branch.body)
        branches.append((branch.test, kind))
        names += _script_names(branch.test)
        branch = branch.orelse
    final = _block_kind(branch.body) if isinstance(branch, cst.Else) else None
    return _chain(branches, final, names)


def _block_kind(block: cst.BaseSuite) -> Optional[str]:
    values = [s.body[0].value for s in block.body if isinstance(s, cst.SimpleStatementLine)
              and len(s.body) == 1 and isinstance(s.body[0], cst.Assign)]
    return _kind(values[0]) if len(values) == 1 else None


def _chain(branches, final: Optional[str], names: List[str]) -> Optional[Switch]:
    """`if t1: k1 elif t2: k2 else: final` as a switch: the CPU last (`t1 or t2`), or first (`not t1`)."""
    names = list(dict.fromkeys(n for n in names))
    if not names:
        return None  # chosen by availability checks alone: the framework's own choice does the same
    kinds = [k for _, k in branches]
    if final == CPU and kinds and all(k in (CUDA, ACCEL) for k in kinds):
        tests = [t for t, _ in branches]
        flag = _code(tests[0]) if len(tests) == 1 else " or ".join(_atom(t) for t in tests)
        return Switch(flag, all(k == CUDA for k in kinds), tuple(names))
    if kinds and kinds[0] == CPU and all(k in (CUDA, ACCEL) for k in kinds[1:] + [final]):
        return Switch(f"not {_atom(branches[0][0])}", all(k == CUDA for k in kinds[1:] + [final]), tuple(names))
    return Switch(None, False, tuple(names))


def flag_of(value: cst.BaseExpression) -> Optional[str]:
    """The flag a device expression picks with (`Switch.flag`), None when there is none."""
    found = switch_of(value)
    return found.flag if found else None


def flag_of_if(node: cst.If) -> Optional[str]:
    """The flag an if/elif/else device choice picks with (`Switch.flag`), None when there is none."""
    found = switch_of_if(node)
    return found.flag if found else None


def _is_device_call(func: cst.BaseExpression) -> bool:
    return dotted(func) in ("torch.device", "device", "th.device")


def _kind(node: cst.BaseExpression) -> Optional[str]:
    """CPU, CUDA or ACCEL for an expression that names a fixed kind of device; None otherwise."""
    if isinstance(node, cst.Attribute) and node.attr.value == "type":  # current_accelerator().type
        node = node.value
    if isinstance(node, cst.Call):
        name = dotted(node.func) or ""
        if name.endswith("accelerator.current_accelerator"):
            return ACCEL
        if not (_is_device_call(node.func) and node.args):
            return None
        return _kind(node.args[0].value)  # torch.device("cuda", rank), torch.device(current_accelerator())
    if isinstance(node, cst.IfExp):
        body, orelse = _kind(node.body), _kind(node.orelse)
        return body if body == orelse else None
    text = None
    if isinstance(node, cst.SimpleString) and isinstance(node.evaluated_value, str):
        text = node.evaluated_value
    elif isinstance(node, cst.FormattedString) and node.parts and isinstance(node.parts[0], cst.FormattedStringText):
        text = node.parts[0].value  # f"cuda:{rank}"
    elif isinstance(node, cst.BinaryOperation) and isinstance(node.left, cst.SimpleString):
        text = node.left.evaluated_value if isinstance(node.left.evaluated_value, str) else None  # "cuda:%d" % r
    if text is None:
        return None
    if text.startswith("cuda"):
        return CUDA
    if text.startswith(_NON_CUDA):
        return ACCEL
    return CPU if text in ("cpu", "cpu:0") else None


def _value_names(value: cst.BaseExpression) -> List[str]:
    """The script's names a device value reads to choose its kind: `args.device`, `torch.device(args.device)`,
    `get_device(args)` (a called function's own name is not one); none for a value of a fixed kind
    (`f"cuda:{args.gpu}"` reads an index)."""
    while isinstance(value, cst.Call) and _is_device_call(value.func) and len(value.args) == 1:
        value = value.args[0].value
    if _kind(value) is not None:
        return []
    out: List[str] = []

    def walk(node: cst.CSTNode) -> None:
        if isinstance(node, cst.Call):
            for a in node.args:
                walk(a.value)
            if isinstance(node.func, cst.Attribute):  # `args.device.lower()`: the receiver is read
                walk(node.func.value)
            return
        if isinstance(node, (cst.Name, cst.Attribute)):
            out.extend(n for n in _script_names(node) if n not in out)
            return
        for child in node.children:
            walk(child)

    walk(value)
    return out


def says_index(name: str) -> bool:
    """`rank`, `args.local_rank`, `args.gpu`, `gpu_id`: which device, not which kind."""
    last = name.rsplit(".", 1)[-1].lower()
    return any(w in last for w in ("rank", "gpu", "idx", "index", "_id", "local")) or last in ("i", "id", "n")


def _says_device(name: str) -> bool:
    """`args.device`, `cfg.train_device`, `dev`: a name for a device, not an index (`rank`, `args.gpu`)."""
    last = name.rsplit(".", 1)[-1].lower()
    return last in ("device", "dev", "accelerator", "accel") or last.endswith("_device")


def negation(flag: str) -> str:
    """Code for `not flag`: `x != "cpu"` -> `x == "cpu"`, `not x` -> `x`; otherwise `not flag`, parenthesized as
    needed."""
    expr = cst.parse_expression(flag)
    if isinstance(expr, cst.Comparison) and len(expr.comparisons) == 1 \
            and isinstance(expr.comparisons[0].operator, cst.NotEqual) and not expr.lpar:
        return _code(expr.with_changes(comparisons=[expr.comparisons[0].with_changes(
            operator=cst.Equal(whitespace_before=cst.SimpleWhitespace(" "), whitespace_after=cst.SimpleWhitespace(" ")))]))
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Not) and not expr.lpar:
        return _code(expr.expression.with_changes(lpar=[], rpar=[]))  # `not (a or b)` -> `a or b`
    return f"not {_atom(expr)}"


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

    def __init__(self, rule, ctx, followed: Optional[str], lost: Sequence[str] = (), uncarried: Sequence[Switch] = ()):
        super().__init__(rule, ctx)
        self.followed = followed
        self.lost = {name: flag for flag in lost for name in flag_names(flag)}
        self.uncarried = {s.target: s for s in uncarried}  # first switch per target
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
                    cuda = all(s.cuda for s in self.facts.device_flags if s.flag == flag)
                    arg = (f'accelerator="{"cuda" if cuda else "auto"}" if {flag} else "cpu"'
                           if self.ctx.target == "fabric" else f"cpu={negation(flag)}")
                    self.todo(node, f"the device no longer follows `{flag}`: `{self.fw}` picks it (a GPU when there "
                                    f"is one), and the moves it guarded run always; to keep `{flag}` in charge, create "
                                    f"`{self.fw}` after this line with {arg}")

    def visit_Assign(self, node: cst.Assign) -> None:
        """The safety net: a device that the script's names chose, and the object cannot follow them."""
        if not self.uncarried or len(node.targets) != 1 or not self.in_fw_scope():
            return
        target = dotted(node.targets[0].target)
        switch = self.uncarried.get(target)
        value = node.value.args[0].value if isinstance(node.value, cst.Call) and dotted(node.value.func) == "str" \
            and node.value.args else node.value
        if switch is None or target in self.marked or dotted(value) not in (
                f"{self.fw}.device", f"{self.fw}.device.type"):
            return
        self.marked.add(target)
        names = ", ".join(f"`{n}`" for n in switch.names)
        self.todo(node, f"{names} no longer chooses the device: `{target}` is `{self.fw}`'s device now (an "
                        f"accelerator when there is one); to keep {names} in charge, create `{self.fw}` with "
                        + ('accelerator="cpu" where it chose the CPU' if self.ctx.target == "fabric"
                           else "cpu=True where it chose the CPU"))

    def leave_If(self, original_node: cst.If, updated_node: cst.If):
        updated_node = super().leave_If(original_node, updated_node)
        if not self.in_fw_scope() or original_node.orelse is not None or not _moves_to_fw(original_node.body, self.fw):
            return updated_node  # with an `else`, the script says where to go in both cases
        if not is_device_condition(original_node.test):
            return updated_node
        test = _code(original_node.test)
        if self.followed is not None and test == self.followed:
            return updated_node  # consistent: the object follows the same flag
        stmts = list(updated_node.body.body)
        if isinstance(updated_node.body, cst.SimpleStatementSuite):  # `if args.cuda: x, y = x.cuda(), y.cuda()`
            stmts = [cst.SimpleStatementLine(body=stmts)]
        if all(_only_moves(s, self.fw) for s in stmts):
            self.report(original_node, f"moves out of `if {test}:`: `{self.fw}` picks the device itself, and a move "
                                       f"to its device is right on any device", True)
            body = stmts
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

    _state: tuple = (None, (), ())  # (followed, lost, uncarried): set by `apply` for its transformer

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
        uncarried = [] if chosen else [s for s in facts.device_flags if s.flag is None]
        self._state = (followed, [] if followed or chosen else flags, uncarried)
        try:
            return super().apply(wrapper, ctx)
        finally:
            self._state = (None, (), ())

    def wanted(self, lowered_code: str, ctx: Context) -> bool:
        return bool(ctx.facts.device_flags) or super().wanted(lowered_code, ctx)

    def _flags(self, module: cst.Module, ctx: Context) -> List[str]:
        """The script's flags that chose the device: in a device expression (PTM101 recorded them) or as the
        condition of moves."""
        flags = list(dict.fromkeys(s.flag for s in ctx.facts.device_flags if s.flag is not None))
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
        names = flag_names(flag)
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
        sources = [flag] + [_code(a.value) for name in names for a in _assignments(module, name)]
        checks = any(check in code for code in sources for check in AVAILABILITY)
        # Fabric's "cuda" only for a CUDA device behind a CUDA check; "auto" picks MPS / XPU, or CUDA where it is
        cuda = all(s.cuda for s in facts.device_flags if s.flag == flag) and any(CUDA_CHECK in c for c in sources)
        facts.device_choice = (flag, checks, "cuda" if cuda else "auto")
        facts.device_comment = f"# the device follows `{flag}`, as in the original script"
        facts.create_after = after[1] if after else None
        return flag


def flag_names(flag: str) -> List[str]:
    """The script's names a flag's code reads (builtins such as `str` left out)."""
    return [n for n in _script_names(cst.parse_expression(flag)) if n not in _BUILTINS]


_BUILTINS = frozenset(dir(builtins))


def _assignments(module: cst.Module, name: str) -> List[cst.Assign]:
    return [a for a in m.findall(module, m.Assign()) if any(name in assigned_names(t.target) for t in a.targets)]


# what later rules (rank guards, checkpoints, collectives) rewrite into uses of the object
_LATER_USES = ("rank", "world", "dist.", "distributed", "save(", "load(", "environ", "print(", "barrier",
               "all_reduce", "backward", "setup", "prepare")


def _before_object_ok(stmt: cst.BaseStatement, fw: str) -> bool:
    """A statement that may run before the object exists: it does not use it, and no later rule will make it."""
    attrs = {id(a.attr) for a in m.findall(stmt, m.Attribute())}  # `torch.accelerator` is not the object
    if any(id(n) not in attrs for n in m.findall(stmt, m.Name(fw))):
        return False
    code = _code(stmt).lower()
    return not any(word in code for word in _LATER_USES)
