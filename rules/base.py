"""What every rule is: a code, docs in one fixed shape, examples, and one pass over the module."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, List, Optional, Tuple

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from migrator.analysis import MAIN_GUARD, MODULE, Facts
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

    codemod: object = None  # libcst CodemodContext of the current pass, for scheduling imports

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

    def transformer(self, ctx: Context) -> "RuleTransformer":
        raise NotImplementedError

    def apply(self, wrapper: MetadataWrapper, ctx: Context) -> cst.Module:
        return wrapper.visit(self.transformer(ctx))


class RuleTransformer(cst.CSTTransformer):
    """A transformer that knows which scope it is in and can report diagnostics for its rule."""
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, rule: Rule, ctx: Context):
        super().__init__()
        self.rule = rule
        self.ctx = ctx
        self.facts = ctx.facts
        self._func: List[str] = []
        self._class_depth = 0
        self._classes: List[str] = []
        self._main_guard = 0

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
        if isinstance(node, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
            self._stmts = getattr(self, "_stmts", []) + [node]
            pending = getattr(self, "_pending_comments", [])
            if pending:  # comments of a statement removed just before land on this one
                self._receivers = {**getattr(self, "_receivers", {}), id(node): pending}
                self._pending_comments = []
        return super().on_visit(node)

    def remove(self, original_node: cst.BaseStatement) -> cst.RemovalSentinel:
        """Delete a statement but keep its comment lines, on the statement that follows it."""
        comments = [l for l in original_node.leading_lines if l.comment is not None]
        if comments:
            self._pending_comments = getattr(self, "_pending_comments", []) + comments
        return cst.RemoveFromParent()

    def on_leave(self, original_node, updated_node):
        result = super().on_leave(original_node, updated_node)
        if isinstance(original_node, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
            self._stmts = self._stmts[:-1]
            carried = getattr(self, "_receivers", {}).pop(id(original_node), None)
            if carried and isinstance(result, cst.BaseStatement):
                result = result.with_changes(leading_lines=list(carried) + list(result.leading_lines))
            for code, message in getattr(self, "_todos", {}).pop(id(original_node), []):
                if isinstance(result, cst.BaseStatement):
                    result = with_todo(result, code, message)
        return result

    def todo(self, node: cst.CSTNode, message: str, severity: str = WARNING) -> None:
        """Report that a person must act here, and mark the enclosing statement with a TODO comment."""
        stmts = getattr(self, "_stmts", [])
        if stmts and has_todo(stmts[-1], self.rule.code):
            return  # marked by an earlier run: the marker is the record, a rerun reports nothing new
        self.report(node, message, fixed=False, severity=severity)
        if stmts:
            todos = getattr(self, "_todos", {})
            todos.setdefault(id(stmts[-1]), []).append((self.rule.code, message))
            self._todos = todos

    # -- reporting
    def report(self, node: cst.CSTNode, message: str, fixed: bool, severity: str = INFO) -> None:
        try:
            pos = self.get_metadata(PositionProvider, node).start
            line, col = pos.line, pos.column + 1
        except KeyError:
            line, col = 1, 1
        sev = severity if fixed else (WARNING if severity == INFO else severity)
        self.ctx.diagnostics.append(Diagnostic(self.rule.code, line, col, sev, message, fixed))


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
