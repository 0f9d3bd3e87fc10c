"""The engine: a pure function from source text to a MigrationResult. It never raises and never imports torch."""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import List, Optional

import libcst as cst
from libcst.codemod import CodemodContext
from libcst.codemod.visitors import AddImportsVisitor, RemoveImportsVisitor
from libcst.metadata import MetadataWrapper

from migrator.analysis import analyze
from migrator.diagnostics import ERROR, Diagnostic
from migrator.linemap import back_map
from migrator import skip
from migrator.options import TARGETS, Options
from migrator.precision import script_precision
from migrator.prescan import may_be_training_script

PARSE_ERROR = "PTM001"
RULE_CRASH = "PTM002"
BAD_OPTION = "PTM003"


@dataclass
class MigrationResult:
    code: str
    changed: bool
    diagnostics: List[Diagnostic] = field(default_factory=list)
    error: Optional[str] = None  # set when the file could not be migrated; `code` is then the input
    is_training_script: bool = False

    @property
    def needs_attention(self) -> List[Diagnostic]:
        return [d for d in self.diagnostics if d.needs_attention]


def _failure(source: str, code: str, line: int, col: int, message: str) -> MigrationResult:
    return MigrationResult(source, False, [Diagnostic(code, line, col, ERROR, message, False)], error=message)


def migrate(source: str, target: str, options: Optional[Options] = None) -> MigrationResult:
    """Migrate one module's source to `target` ("fabric" or "accelerate")."""
    options = options or Options()
    if target not in TARGETS:
        return _failure(source, BAD_OPTION, 1, 1, f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    if skip.skips_file(source):  # `# pt-migrate: skip-file`
        return MigrationResult(source, False)
    if not may_be_training_script(source, options):
        return MigrationResult(source, False)
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as e:
        line, col, reason = _python_syntax_error(source) or (e.raw_line, e.raw_column + 1, e.message)
        return _failure(source, PARSE_ERROR, line, col, f"cannot parse: {reason}")
    except Exception as e:  # libcst raises a few other errors on odd input (e.g. bad indentation)
        return _failure(source, PARSE_ERROR, 1, 1, f"cannot parse: {e}")
    try:
        result = _run_rules(source, module, target, options)
    except RuleCrash as crash:
        return _failure(source, RULE_CRASH, 1, 1, str(crash))
    if result.changed and skip.has_skip_lines(source):  # `# pt-migrate: skip` statements stay as written
        result = skip.protect(source, result)
    return result


def _python_syntax_error(source: str):
    """CPython's own account of a syntax error (line, column, reason): clearer than the CST parser's."""
    import ast
    try:
        ast.parse(source)
    except SyntaxError as e:
        return e.lineno or 1, e.offset or 1, e.msg
    except Exception:
        return None
    return None


class RuleCrash(Exception):
    pass


def _run_rules(source: str, module: cst.Module, target: str, options: Options) -> MigrationResult:
    from migrator.rules import REGISTRY, Context

    try:
        wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
        facts = analyze(wrapper, target, options.external_fw_functions, options.module_name)
        facts.precision = script_precision(wrapper) if "amp" in source or "autocast" in source else None
    except Exception:
        raise RuleCrash(f"internal error in the analysis; the file was left unchanged. "
                        f"Please report it with this trace:\n{traceback.format_exc(limit=-3)}")
    if not facts.is_training:
        return MigrationResult(source, False)
    ctx = Context(target=target, options=options, facts=facts)
    diagnostics: List[Diagnostic] = []
    maps: List[List[int]] = []  # line maps of each pass that changed the text, oldest first
    current, text = module, source
    for rule in REGISTRY:
        if target not in rule.targets or not _selected(rule.code, options):
            continue
        ctx.diagnostics = []
        try:
            codemod_ctx = CodemodContext()
            ctx.codemod = codemod_ctx
            updated = rule.apply(MetadataWrapper(current), ctx)
            updated = _apply_scheduled_imports(updated, codemod_ctx)
        except Exception:
            raise RuleCrash(f"internal error in rule {rule.code} ({rule.name}); the file was left unchanged. "
                            f"Please report it with this trace:\n{traceback.format_exc(limit=-3)}")
        diagnostics.extend(_to_input_lines(ctx.diagnostics, maps))
        if not updated.deep_equals(current):
            new_text = updated.code
            if new_text != text:
                maps.append(back_map(text, new_text))
            current, text = updated, new_text
    diagnostics.sort(key=lambda d: (d.line, d.column, d.code))
    return MigrationResult(text, text != source, _dedupe(diagnostics), is_training_script=True)


def _apply_scheduled_imports(module: cst.Module, codemod_ctx: CodemodContext) -> cst.Module:
    if AddImportsVisitor.CONTEXT_KEY in codemod_ctx.scratch and codemod_ctx.scratch[AddImportsVisitor.CONTEXT_KEY]:
        module = AddImportsVisitor(codemod_ctx).transform_module(module)
    if RemoveImportsVisitor.CONTEXT_KEY in codemod_ctx.scratch and codemod_ctx.scratch[RemoveImportsVisitor.CONTEXT_KEY]:
        module = RemoveImportsVisitor(codemod_ctx).transform_module(module)
    return module


def _selected(code: str, options: Options) -> bool:
    if options.select and not any(code.startswith(s) for s in options.select):
        return False
    return not any(code.startswith(s) for s in options.ignore)


def _to_input_lines(diags: List[Diagnostic], maps: List[List[int]]) -> List[Diagnostic]:
    out = []
    for d in diags:
        line = d.line
        for mp in reversed(maps):
            line = mp[min(max(line - 1, 0), len(mp) - 1)]
        out.append(Diagnostic(d.code, line, d.column, d.severity, d.message, d.fixed))
    return out


def _dedupe(diags: List[Diagnostic]) -> List[Diagnostic]:
    seen, out = set(), []
    for d in diags:
        key = (d.code, d.line, d.message)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out
