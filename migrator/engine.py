"""The engine: a pure function from source text to a MigrationResult. It never raises and never imports torch."""
from __future__ import annotations

import ast
import copy
import re
import sys
import traceback
import warnings
from typing import List, Optional

import libcst as cst

from migrator.add_imports import add_imports
from migrator.fusion import apply_together
from migrator.remove_imports import remove_unused
from libcst.metadata import MetadataWrapper

from migrator.analysis import analyze
from migrator.diagnostics import ERROR, INFO, WARNING, Diagnostic
from migrator.result import MigrationResult
from migrator.linemap import back_map
from migrator import skip
from migrator.options import TARGETS, Options
from migrator.precision import script_precision
from migrator.prescan import may_be_training_script, without_comments

PARSE_ERROR = "PTM001"
RULE_CRASH = "PTM002"
BAD_OPTION = "PTM003"
OTHER_FRAMEWORK = "PTM005"
# tests set this to run every rule on scripts already on the target framework: the rules' own idempotence
_MIGRATE_ON_TARGET = False


def _failure(source: str, code: str, line: int, col: int, message: str, trace: Optional[str] = None) -> MigrationResult:
    return MigrationResult(source, False, [Diagnostic(code, line, col, ERROR, message, False)], error=message,
                           trace=trace)


def migrate(source: str, target: str, options: Optional[Options] = None) -> MigrationResult:
    """Migrate one module's source to `target` ("fabric" or "accelerate"). Never raises: a file that cannot be
    parsed gives PTM001, an internal error gives PTM002 (the trace is in `.trace`); `code` is then `source`."""
    limit = sys.getrecursionlimit()
    try:
        if limit < _RECURSION_LIMIT:  # libcst's visitors recurse once per nesting level: long `a + b + ...` chains
            sys.setrecursionlimit(_RECURSION_LIMIT)
        return _migrate(source, target, options)
    except RuleCrash as crash:
        if crash.too_deep:
            return _failure(source, PARSE_ERROR, 1, 1, "cannot migrate: the code is nested too deeply for "
                            "pt-migrate (e.g. a chain of thousands of `+`); the file was left unchanged", crash.trace)
        return _failure(source, RULE_CRASH, 1, 1, crash.message, crash.trace)
    except Exception as e:  # anything else is a bug of ours: report it, leave the file alone
        return _failure(source, RULE_CRASH, 1, 1, f"internal error ({type(e).__name__}: {_one_line(e)}); the file "
                        f"was left unchanged. Please report it (--debug shows the trace)", traceback.format_exc())
    finally:
        if sys.getrecursionlimit() != limit:
            sys.setrecursionlimit(limit)


_RECURSION_LIMIT = 4000


def _migrate(source: str, target: str, options: Optional[Options]) -> MigrationResult:
    options = options or Options()
    if target not in TARGETS:
        return _failure(source, BAD_OPTION, 1, 1, f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    if not isinstance(source, str):
        return _failure(str(source), BAD_OPTION, 1, 1, f"source must be str, not {type(source).__name__}")
    if skip.skips_file(source):  # `# pt-migrate: skip-file` (see migrator/skip.py)
        return MigrationResult(source, False)
    if not may_be_training_script(source, options):
        return MigrationResult(source, False)
    module = _parse(source)
    if isinstance(module, MigrationResult):
        return module
    declined = _hogwild(source) or _foreign_engine(source)
    if declined is not None:
        return declined
    result = _run_rules(source, _majority_newline(source, module), target, options)
    if result.changed and skip.has_skip_lines(source):  # `# pt-migrate: skip` statements stay as written
        result = skip.protect(source, result)
    if result.changed:
        result = _self_check(source, result, target, not _selected("PTM100", options))
    return result


def _self_check(source: str, result: MigrationResult, target: str, partial: bool = False) -> MigrationResult:
    """A migration whose output would break the script (migrator/selfcheck.py) is not written: the file stays as
    it was, with an error-level PTM006 diagnostic per problem, naming the input line and the broken name."""
    from migrator import selfcheck
    try:
        problems = selfcheck.check(source, result.code, target, partial)
    except Exception:
        raise RuleCrash("the self-check")
    if not problems:
        return result
    diags = [Diagnostic(selfcheck.SELF_CHECK, line, 1, ERROR,
                        f"self-check: {message}; the file was left unchanged (not migrated)", False)
             for line, message in selfcheck.problems_at_input_lines(source, result.code, problems)]
    return MigrationResult(source, False, _dedupe(diags), is_training_script=True)


def _hogwild(source: str) -> Optional[MigrationResult]:
    """A Hogwild script (migrator/hogwild.py) is not data parallel: unchanged but for one TODO that says why."""
    from migrator.hogwild import MESSAGE, NOT_DATA_PARALLEL, hogwild_line, with_todo
    if "share_memory" not in source:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        line = hogwild_line(ast.parse(source))
    if line is None:
        return None
    code = with_todo(source, line)
    return MigrationResult(code, code != source, [Diagnostic(NOT_DATA_PARALLEL, line, 1, WARNING, MESSAGE, False)],
                           is_training_script=True)


def _foreign_engine(source: str) -> Optional[MigrationResult]:
    """Model and optimizer taken over by another library (migrator/foreign_engine.py): unchanged but for one
    TODO that says why."""
    from migrator.foreign_engine import FOREIGN_ENGINE, MESSAGE, engine_call, with_todo
    if "parameters" not in source:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = engine_call(ast.parse(source))
    if found is None:
        return None
    line, callee = found
    message = MESSAGE.format(call=callee)
    code = with_todo(source, line, message)
    return MigrationResult(code, code != source, [Diagnostic(FOREIGN_ENGINE, line, 1, WARNING, message, False)],
                           is_training_script=True)


def _majority_newline(source: str, module: cst.Module) -> cst.Module:
    """libcst gives inserted lines the first line's ending; a file with mixed endings gets its most common one."""
    crlf = source.count("\r\n")
    counts = {"\r\n": crlf, "\n": source.count("\n") - crlf, "\r": source.count("\r") - crlf}
    best = max(counts, key=lambda k: counts[k])
    old = module.default_newline
    if counts[best] and counts[best] > counts.get(old, 0):
        # a Newline node without a value means "the default": pin the existing ones first, so that only the
        # lines the rules insert take the new default
        return module.visit(_PinNewlines(old)).with_changes(default_newline=best)
    return module


class _PinNewlines(cst.CSTTransformer):
    def __init__(self, value: str):
        super().__init__()
        self.value = value

    def leave_Newline(self, original_node: cst.Newline, updated_node: cst.Newline) -> cst.Newline:
        return updated_node.with_changes(value=self.value) if updated_node.value is None else updated_node


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else ""


# CPython's own parser refuses these before it runs out of stack; libcst's native parser may crash the process
# (stack overflow) or take minutes on them, so such files never reach libcst.
_TOO_DEEP = ("too many nested", "nested too deeply", "too many statically nested", "too many indentation levels")


def _bracket_depth(source: str) -> int:
    """The deepest nesting of brackets, counting those in strings too (an over-estimate is safe here)."""
    depth = deepest = 0
    for ch in source:
        if ch in "([{":
            depth += 1
            if depth > deepest:
                deepest = depth
        elif ch in ")]}" and depth:
            depth -= 1
    return deepest


def _parse(source: str):
    """A libcst Module, or a PTM001 MigrationResult naming the line and the reason. Nothing is executed: `ast.parse`
    only compiles to a syntax tree, and it gives better messages and positions than libcst."""
    py_error = None
    try:
        with warnings.catch_warnings():  # `"\d"`, `1()`: the user's code, not ours to warn about
            warnings.simplefilter("ignore")
            ast.parse(source)
    except SyntaxError as e:
        if any(s in (e.msg or "") for s in _TOO_DEEP):
            return _failure(source, PARSE_ERROR, e.lineno or 1, e.offset or 1, f"cannot parse: {e.msg}")
        py_error = e  # maybe syntax newer than this Python: libcst decides, unless it could choke on it
        if _bracket_depth(source) > 150:
            return _failure(source, PARSE_ERROR, e.lineno or 1, max(e.offset or 1, 1), f"cannot parse: {e.msg}")
    except (RecursionError, MemoryError):
        return _failure(source, PARSE_ERROR, 1, 1, "cannot parse: the code is nested too deeply")
    except (ValueError, OverflowError) as e:  # NUL bytes and the like
        return _failure(source, PARSE_ERROR, 1, 1, f"cannot parse: {_one_line(e)}")
    try:
        return cst.parse_module(source)
    except Exception as e:  # ParserSyntaxError, and a few others on odd input
        if py_error is not None:
            return _failure(source, PARSE_ERROR, py_error.lineno or 1, max(py_error.offset or 1, 1),
                            f"cannot parse: {py_error.msg}")
        if isinstance(e, cst.ParserSyntaxError):
            m = re.search(r"error at (\d+):(\d+)", e.message)
            line, col = (int(m.group(1)), int(m.group(2)) + 1) if m else (e.raw_line, e.raw_column + 1)
            return _failure(source, PARSE_ERROR, line, col, f"cannot parse: {_one_line(e.message)}")
        return _failure(source, PARSE_ERROR, 1, 1, f"cannot parse: {_one_line(e) or type(e).__name__}")


class RuleCrash(Exception):
    def __init__(self, where: str):
        exc = traceback.format_exc()
        etype, value = sys.exc_info()[:2]
        what = f"{etype.__name__}: {_one_line(value)}" if etype else "unknown error"
        self.message = (f"internal error in {where} ({what}); the file was left unchanged. "
                        f"Please report it (--debug shows the trace)")
        self.trace = exc
        self.too_deep = etype is RecursionError
        super().__init__(self.message)


def _run_rules(source: str, module: cst.Module, target: str, options: Options) -> MigrationResult:
    from migrator.rules import Context

    try:
        wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
        facts = analyze(wrapper, target, options.external_fw_functions, options.module_name, source, settle_only=True)
        facts.precision = (script_precision(wrapper, source) if facts.is_training and facts.other_framework is None
                           and ("autocast" in source or "GradScaler" in source) else None)
    except Exception:
        raise RuleCrash("the analysis")
    if not facts.is_training:
        return MigrationResult(source, False)
    if facts.other_framework is not None:
        return _uses_other_framework(source, module, facts, target)
    unreplaced = _no_object(source, facts, options)
    if unreplaced is not None:
        return unreplaced
    # Already on the target framework (the tool's own output, or code written for it): the core rules leave it
    # alone (Rule.plain_scripts_only)
    on_target = facts.on_target and not _MIGRATE_ON_TARGET
    ctx = Context(target=target, options=options, facts=facts)
    # one wrapper per distinct tree: its metadata (positions, scopes) is computed on demand and kept while
    # passes leave the tree unchanged, which most do. The imports the rules ask for (ctx.imports) are added
    # once, after the last rule.
    run = _Run(module, source, wrapper)
    for step in _steps(target, options, on_target):
        wanted = [r for r in step if r.wanted(run.lowered, ctx)]
        if len(wanted) > 1:  # fusable neighbours: one traversal (migrator/fusion.py)
            imports = copy.deepcopy(ctx.imports)
            updated = _apply(lambda: apply_together(wanted, run.wrapper, ctx),
                             "rules " + ", ".join(f"{r.code} ({r.name})" for r in wanted), run, ctx)
            if updated is not None:
                run.advance(updated, ctx)
                continue
            ctx.imports = imports  # they could not share it: one by one, as if never tried
        for rule in wanted:
            if rule.wanted(run.lowered, ctx):
                run.advance(_apply(lambda: rule.apply(run.wrapper, ctx), f"rule {rule.code} ({rule.name})", run, ctx),
                            ctx)
    diagnostics, current, text = run.diagnostics, run.current, run.text
    if text != source:
        # last, once every rule is done: the imports the rules need, and those of constructs they removed
        # (torch.distributed, DDP, ...) that nothing uses any more
        text = _finish_imports(current, ctx).code
    diagnostics.sort(key=lambda d: (d.line, d.column, d.code))
    return MigrationResult(text, text != source, _dedupe(diagnostics), is_training_script=True)


def _uses_other_framework(source: str, module: cst.Module, facts, target: str) -> MigrationResult:
    """A script on the other framework already is left as it is: rewriting `accelerator.backward(loss)` as if it
    were a tensor's backward, or running two frameworks in one process, would be wrong."""
    from migrator.positions import start_positions
    line, column = start_positions(module, [facts.other_framework])[id(facts.other_framework)]
    used = "Accelerate" if target == "fabric" else "Lightning Fabric"
    wanted = "Fabric" if target == "fabric" else "Accelerate"
    message = (f"this script already uses {used}: pt-migrate migrates plain PyTorch scripts, not one framework to "
               f"another, so it is left unchanged (not migrated to {wanted})")
    return MigrationResult(source, False, [Diagnostic(OTHER_FRAMEWORK, line, column + 1, INFO, message, False)],
                           is_training_script=True)


def _no_object(source: str, facts, options: Options) -> Optional[MigrationResult]:
    """Hand-written DDP machinery in a training module that no framework object would reach (migrator/no_object.py):
    unchanged but for TODOs that say why. Not when the user left out the object's creation (PTM100) or every rule
    that removes the machinery (PTM130-PTM132): then what they selected runs."""
    from migrator import no_object
    if not _selected("PTM100", options) or not any(_selected(c, options) for c in ("PTM130", "PTM131", "PTM132")):
        return None
    reason = no_object.why_no_object(facts)
    if reason is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        todos = no_object.marks(reason, no_object.constructs(source, ast.parse(source)))
    if not todos:
        return None
    code = no_object.with_todos(source, todos)
    return MigrationResult(code, code != source, [Diagnostic(no_object.NO_OBJECT, line, 1, WARNING, text, False)
                                                  for line, text in todos], is_training_script=True)


class _Run:
    """Where the rules have got to: the tree, its text, its wrapper, and the diagnostics on input lines."""

    def __init__(self, module: cst.Module, source: str, wrapper: MetadataWrapper):
        self.current, self.text, self.wrapper = module, source, wrapper
        self.lowered = without_comments(source).lower()
        self.maps: List[List[int]] = []  # line maps of each pass that changed the text, oldest first
        self.diagnostics: List[Diagnostic] = []

    def advance(self, updated: cst.Module, ctx) -> None:
        self.diagnostics.extend(_to_input_lines(ctx.diagnostics, self.maps))
        if updated is self.current:
            return
        new_text = updated.code  # cheaper than deep_equals, and needed anyway when the pass changed something
        if new_text != self.text:
            self.maps.append(back_map(self.text, new_text))
            self.current, self.text, self.lowered = updated, new_text, without_comments(new_text).lower()
            self.wrapper = MetadataWrapper(updated, unsafe_skip_copy=True)


def _steps(target: str, options: Options, on_target: bool = False):
    """The registry in order, fusable neighbours grouped."""
    from migrator.rules import REGISTRY
    steps: List[list] = []
    for rule in REGISTRY:
        if target not in rule.targets or not _selected(rule.code, options):
            continue
        if on_target and rule.plain_scripts_only:
            continue
        if rule.fusable and steps and steps[-1][-1].fusable:
            steps[-1].append(rule)
        else:
            steps.append([rule])
    return steps


def _apply(call, where: str, run: _Run, ctx):
    ctx.diagnostics = []
    ctx.text = run.text
    try:
        return call()
    except Exception:
        raise RuleCrash(where)


def _finish_imports(module: cst.Module, ctx) -> cst.Module:
    from migrator.rules.unused_device import unused_import_candidates
    try:
        module = add_imports(module, ctx.imports)
        candidates = unused_import_candidates(module)
        slim = remove_unused(module, candidates, module.code) if candidates else module
        if slim is not None:
            return slim
        if candidates:  # a shape remove_unused leaves to libcst (a parenthesized import, `a; b` on one line)
            from libcst.codemod import CodemodContext
            from libcst.codemod.visitors import RemoveImportsVisitor
            codemod_ctx = CodemodContext()
            for mod, obj, asname in candidates:
                RemoveImportsVisitor.remove_unused_import(codemod_ctx, mod, obj, asname=asname)
            module = RemoveImportsVisitor(codemod_ctx).transform_module(module)
        return module
    except Exception:
        raise RuleCrash("the final import cleanup")


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
