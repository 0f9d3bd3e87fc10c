"""What every rule is: a code, docs in one fixed shape, examples, and one pass over the module."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar, List, Optional, Tuple

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider, QualifiedNameProvider

from migrator.analysis import MAIN_GUARD, MODULE, Facts
from migrator.add_imports import ImportRequests
from migrator.imports import ImportQualifiedNames, ImportTable
from migrator.prescan import without_comments
from migrator.positions import start_positions
from migrator.diagnostics import INFO, WARNING, Diagnostic
from migrator.options import Options

SAFE, UNSAFE, REPORT_ONLY = "safe", "unsafe", "report-only"
TODO_PREFIX = "# TODO(pt-migrate)"


@dataclass(frozen=True)
class Example:
    """A short input and what each target makes of it (None: must stay unchanged)."""
    before: str
    fabric: Optional[str]
    accelerate: Optional[str]


@dataclass
class Context:
    target: str
    options: Options
    facts: Facts
    diagnostics: List[Diagnostic] = field(default_factory=list)

    imports: ImportRequests = field(default_factory=ImportRequests)  # added once, after the last rule
    text: Optional[str] = None  # the code the current pass reads, when the engine has it
    statement_texts: object = None  # (module, [(id(top-level statement), its code, lower case)]): a cache

    @property
    def fw(self) -> str:
        return self.facts.fw

    def precision_code(self) -> Optional[str]:
        """The precision argument as Python code: --precision wins, else what the script's AMP code used."""
        o = self.options
        given = o.fabric_precision() if self.target == "fabric" else o.accelerate_precision()
        if given:
            return f'"{given}"'
        found = getattr(self.facts, "precision", None)
        return found.code(self.target) if found else None


class Rule:
    """Base class. Subclasses set the class attributes and implement `transformer`."""
    code: ClassVar[str]
    name: ClassVar[str]
    targets: ClassVar[Tuple[str, ...]] = ("fabric", "accelerate")
    fix_safety: ClassVar[str] = SAFE
    examples: ClassVar[List[Example]] = []
    # Words (lower case) without which the rule has nothing to do: when none is in the code, the engine skips the
    # pass. Empty: the rule always runs. A superset is fine; a missing word is a silent skip, so list them all.
    triggers: ClassVar[Tuple[str, ...]] = ()
    # True: the rule acts only inside statements that spell a trigger word (or an import alias of a name that
    # has one), so the pass does not enter the module's other top-level statements. Only for rules whose every
    # rewrite is decided by the statement itself, never by names bound elsewhere (a scaler variable, a sampler).
    skips_other_statements: ClassVar[bool] = False

    def wanted(self, lowered_code: str, ctx: Context) -> bool:
        return not self.triggers or any(t in lowered_code for t in self.triggers)

    def transformer(self, ctx: Context) -> "RuleTransformer":
        raise NotImplementedError

    # True: the engine may run this rule in one traversal with its fusable neighbours in the registry
    # (migrator/fusion.py). Only for rules that never remove a node or change its type, whose hooks act on
    # disjoint nodes, and whose `apply` is this one.
    fusable: ClassVar[bool] = False
    # True: the rule does not run on a script already on the target framework (analysis `on_target`). For the
    # core migration (framework object, setup, moves, backward, print, seed): such a script did that its own way,
    # and a plain backward or an unprepared model there may be deliberate (a reference model next to the
    # prepared one). The other rules still run: they undo what is left of hand-written DDP and AMP.
    plain_scripts_only: ClassVar[bool] = False

    def prepared(self, wrapper: MetadataWrapper, ctx: Context) -> "RuleTransformer":
        """The rule's transformer, ready to visit `wrapper.module`."""
        transformer = self.transformer(ctx)
        # metadata on demand: most passes report nothing and never ask for a qualified name, and positions and
        # scopes cost more than the pass itself. The wrapper caches what it computed for the next pass.
        transformer.metadata = _LazyMetadata(wrapper, ctx.text)
        if self.skips_other_statements and self.triggers and ctx.text is not None:
            transformer.skip = _statements_without(wrapper.module, self.triggers, ctx)
        return transformer

    def apply(self, wrapper: MetadataWrapper, ctx: Context) -> cst.Module:
        transformer = self.prepared(wrapper, ctx)
        updated = wrapper.module.visit(transformer)
        transformer.place_reports(wrapper.module)
        # the very tree it was given when no hook replaced a node: the engine then skips printing the code
        return updated if transformer.changed else wrapper.module


def _statements_without(module: cst.Module, triggers: Tuple[str, ...], ctx: "Context") -> set:
    """ids of the module's top-level statements whose code (comments aside) has none of the words, counting the
    local names that imports give to things whose qualified name has one (`clip_grad_norm_ as clip`)."""
    words = set(triggers)
    for alias, qualified in ImportTable(ctx.text).aliases.items():
        if any(t in q.lower() for q in qualified for t in triggers):
            words.add(alias.lower())
    if ctx.statement_texts is None or ctx.statement_texts[0] is not module:
        # one code generation per tree, shared by the rules that read the same tree
        ctx.statement_texts = (module, [(id(stmt), without_comments(module.code_for_node(stmt)).lower())
                                        for stmt in module.body])
    return {key for key, code in ctx.statement_texts[1] if not any(w in code for w in words)}


class _LazyMetadata(dict):
    """`transformer.metadata`, filled on first use from a MetadataWrapper built without copying the tree."""

    def __init__(self, wrapper: MetadataWrapper, text: Optional[str]):
        super().__init__()
        self._wrapper = wrapper
        self._text = text

    def __contains__(self, provider) -> bool:  # libcst asks before it reads
        return True

    def __missing__(self, provider):
        if provider is QualifiedNameProvider and self._text is not None:
            value = self[provider] = ImportQualifiedNames(self._text)  # see migrator/imports.py for why
            return value
        value = self[provider] = self._wrapper.resolve(provider)
        return value


_STATEMENTS = (cst.SimpleStatementLine, cst.BaseCompoundStatement)
# the concrete classes: a set lookup per node instead of an isinstance check against an abstract class
_STATEMENT_TYPES = frozenset(c for c in vars(cst).values() if isinstance(c, type) and issubclass(c, _STATEMENTS))


_HOOKS: dict = {}


def _hook(cls: type, prefix: str, node_type: type):
    """`cls`'s `visit_<Node>` / `leave_<Node>` function for a node type, or None: libcst's CSTTransformer looks
    it up by name (an f-string and a getattr) at every node of every pass; the answer depends on the classes only.
    A transformer with hooks set on the instance when its walk starts keeps libcst's lookup."""
    key = (cls, prefix, node_type)
    try:
        return _HOOKS[key]
    except KeyError:
        hook = _HOOKS[key] = getattr(cls, prefix + node_type.__name__, None)
        return hook


class RuleTransformer(cst.CSTTransformer):
    """A transformer that knows which scope it is in and can report diagnostics for its rule."""
    METADATA_DEPENDENCIES = (PositionProvider,)
    _own_hooks: Optional[bool] = None  # whether the instance has visit_/leave_ attributes of its own

    def __init__(self, rule: Rule, ctx: Context):
        super().__init__()
        self.rule = rule
        self.ctx = ctx
        self.facts = ctx.facts
        self._func: List[str] = []
        self._class_depth = 0
        self._classes: List[str] = []
        self._main_guard = 0
        self._unplaced: List[Tuple[int, cst.CSTNode]] = []  # (index in ctx.diagnostics, node) awaiting a position
        self._stmts: List[cst.CSTNode] = []  # the statements the visit is inside, innermost last
        self._pending_comments: list = []  # comments of a removed statement, for the next one
        self._receivers: dict = {}  # id(statement) -> comments it takes over
        self._todos: dict = {}  # id(statement) -> [(code, message)] to mark it with
        self.changed = False  # some leave hook returned another node than the one it was given
        self.skip: set = set()  # ids of top-level statements the pass does not enter (Rule.skips_other_statements)

    # -- where are we
    def visit_ClassDef(self, node: cst.ClassDef) -> Optional[bool]:
        self._class_depth += 1
        self._classes.append(node.name.value)
        return True

    def leave_ClassDef(self, original_node, updated_node):
        self._class_depth -= 1
        self._classes.pop()
        return updated_node

    def in_fw_class_method(self) -> bool:
        """Inside a method of a class that receives the framework object in __init__ (a trainer class)."""
        return (self._class_depth == 1 and bool(self._func) and self._classes[0] in self.facts.fw_classes)

    @property
    def fw(self) -> str:
        """How code here names the framework object: `fabric`, or `self.fabric` in a trainer class."""
        return f"self.{self.facts.fw}" if self.in_fw_class_method() else self.facts.fw

    def fw_expr(self) -> cst.BaseExpression:
        return cst.parse_expression(self.fw)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> Optional[bool]:
        self._func.append(node.name.value if not self._func and not self._class_depth else "")
        return True

    def leave_FunctionDef(self, original_node, updated_node):
        self._func.pop()
        return updated_node

    def visit_If(self, node: cst.If) -> Optional[bool]:
        from migrator.analysis import is_main_guard
        if not self._func and not self._class_depth and is_main_guard(node):
            self._main_guard += 1
        return True

    def leave_If(self, original_node, updated_node):
        from migrator.analysis import is_main_guard
        if not self._func and not self._class_depth and is_main_guard(original_node):
            self._main_guard -= 1
        return updated_node

    @property
    def scope(self) -> Optional[str]:
        """Top-level function name, MODULE, MAIN_GUARD, or None inside classes."""
        if self._class_depth:
            return None
        if self._func:
            return self._func[0]
        return MAIN_GUARD if self._main_guard else MODULE

    def in_fw_scope(self) -> bool:
        """True where the framework object is in reach (setup scope, or a function given it)."""
        if self.in_fw_class_method():
            return True
        scope = self.scope
        return scope is not None and scope in self.facts.fw_scopes()

    # -- statements, so a report on an expression can put its TODO above the right line
    def on_visit(self, node: cst.CSTNode) -> bool:
        if type(node) in _STATEMENT_TYPES:
            self._stmts.append(node)
            if self._pending_comments:  # comments of a statement removed just before land on this one
                self._receivers[id(node)] = self._pending_comments
                self._pending_comments = []
        if self._own_hooks is None:  # hooks set on the instance (tests do): libcst's lookup by name
            self._own_hooks = any(k.startswith(("visit_", "leave_")) for k in vars(self))
        if self._own_hooks:
            descend = super().on_visit(node)
        else:
            hook = _hook(type(self), "visit_", type(node))
            descend = hook is None or hook(self, node) is not False  # as CSTTransformer.on_visit
        return descend and not (self.skip and id(node) in self.skip)  # its leave hooks still run

    # No rule has `visit_<Node>_<attribute>` hooks: skip libcst's lookup of one per attribute of every node.
    def on_visit_attribute(self, original_node: cst.CSTNode, attribute: str) -> None:
        pass

    def on_leave_attribute(self, original_node: cst.CSTNode, attribute: str) -> None:
        pass

    def enclosing_if(self) -> Optional[cst.If]:
        """The `if` statement right around the statement being left, if any (a guard added by an earlier run)."""
        outer = self._stmts[-2] if len(self._stmts) > 1 else None
        return outer if isinstance(outer, cst.If) else None

    def remove(self, original_node: cst.BaseStatement) -> cst.RemovalSentinel:
        """Delete a statement but keep its comment lines, on the statement that follows it."""
        comments = [l for l in original_node.leading_lines if l.comment is not None]
        if comments:
            self._pending_comments = self._pending_comments + comments
        return cst.RemoveFromParent()

    def on_leave(self, original_node, updated_node):
        if self._own_hooks:
            result = super().on_leave(original_node, updated_node)
        else:
            hook = _hook(type(self), "leave_", type(original_node))  # as CSTTransformer.on_leave
            result = updated_node if hook is None else hook(self, original_node, updated_node)
        if type(original_node) in _STATEMENT_TYPES:
            self._stmts.pop()
            carried = self._receivers.pop(id(original_node), None) if self._receivers else None
            if carried and isinstance(result, cst.BaseStatement):
                result = result.with_changes(leading_lines=list(carried) + list(result.leading_lines))
            for code, message in (self._todos.pop(id(original_node), ()) if self._todos else ()):
                if isinstance(result, cst.BaseStatement):
                    result = with_todo(result, code, message)
        if result is not updated_node:
            self.changed = True
        return result

    def todo(self, node: cst.CSTNode, message: str, severity: str = WARNING) -> None:
        """Report that a person must act here, and mark the enclosing statement with a TODO comment."""
        stmts = self._stmts
        if stmts and has_todo(stmts[-1], self.rule.code):
            return  # marked by an earlier run: the marker is the record, a rerun reports nothing new
        self.report(node, message, fixed=False, severity=severity)
        if stmts:
            self._todos.setdefault(id(stmts[-1]), []).append((self.rule.code, message))

    # -- reporting
    def report(self, node: cst.CSTNode, message: str, fixed: bool, severity: str = INFO) -> None:
        sev = severity if fixed else (WARNING if severity == INFO else severity)
        self.ctx.diagnostics.append(Diagnostic(self.rule.code, 1, 1, sev, message, fixed))
        self._unplaced.append((len(self.ctx.diagnostics) - 1, node))  # placed after the pass: see place_reports

    def note(self, node: cst.CSTNode, message: str) -> None:
        """Left as written because it is correct, only worth knowing: info, no TODO, needs no attention."""
        self.ctx.diagnostics.append(Diagnostic(self.rule.code, 1, 1, INFO, message, False))
        self._unplaced.append((len(self.ctx.diagnostics) - 1, node))

    def place_reports(self, module: cst.Module) -> None:
        """Give the pass's diagnostics the positions of their nodes in `module`, the tree the pass read, all at
        once: one code generation instead of positions for every node of the tree (migrator/positions.py)."""
        if not self._unplaced:
            return
        found = start_positions(module, [node for _, node in self._unplaced])
        for i, node in self._unplaced:
            if id(node) in found:  # a node the pass built itself has no position: it keeps 1:1
                line, column = found[id(node)]
                self.ctx.diagnostics[i] = dataclasses.replace(self.ctx.diagnostics[i], line=line, column=column + 1)
        self._unplaced = []


def guarded(stmt: cst.BaseStatement, test: cst.BaseExpression) -> cst.If:
    """`stmt` under `if test:`, the blank lines and comments above it kept above the `if`."""
    return cst.If(test=test, body=cst.IndentedBlock(body=[stmt.with_changes(leading_lines=[])]),
                  leading_lines=stmt.leading_lines)


def with_todo(stmt: cst.BaseStatement, code: str, message: str) -> cst.BaseStatement:
    """Add `# TODO(pt-migrate) CODE: message` above a statement, once."""
    marker = f"{TODO_PREFIX} {code}:"
    lines = list(stmt.leading_lines)
    if any(l.comment is not None and l.comment.value.startswith(marker) for l in lines):
        return stmt
    lines.append(cst.EmptyLine(comment=cst.Comment(f"{marker} {message}")))
    return stmt.with_changes(leading_lines=lines)


def has_todo(stmt: cst.BaseStatement, code: str) -> bool:
    marker = f"{TODO_PREFIX} {code}:"
    return any(l.comment is not None and l.comment.value.startswith(marker) for l in stmt.leading_lines)
