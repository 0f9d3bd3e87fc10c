"""Opt-outs written in the source: `# pt-migrate: skip-file` and `# pt-migrate: skip`.

- `# pt-migrate: skip-file` on a line of its own, anywhere in the file: the file is returned unchanged.
- `# pt-migrate: skip` at the end of a statement: no rule changes that statement (all its physical lines, for a
  statement spread over several). The rules run as usual; then every changed region of the output that touches a
  protected statement is put back as it was written, and a PTM004 diagnostic says so. Insertions next to the
  statement (a setup line after a protected optimizer) stay. When putting a region back would not give valid
  code, or the statement was only re-indented (moved under a `__main__` guard), the whole file is left unchanged
  with a PTM004 warning naming the line that blocked it.
"""
from __future__ import annotations

import difflib
import io
import re
import tokenize
from dataclasses import replace
from typing import List, Set, Tuple

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from migrator.diagnostics import INFO, WARNING, Diagnostic
from migrator.matching import Visitor

SKIPPED = "PTM004"
SKIP_FILE = re.compile(r"^[ \t\f]*#[ \t]*pt-migrate:[ \t]*skip-file\b", re.M)
_SKIP = re.compile(r"#[ \t]*pt-migrate:[ \t]*skip(?![-\w])")


def skips_file(source: str) -> bool:
    return "pt-migrate:" in source and SKIP_FILE.search(source) is not None


def has_skip_lines(source: str) -> bool:
    return "pt-migrate:" in source and _SKIP.search(source) is not None


def _comment_lines(source: str) -> Set[int]:
    try:
        return {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT and _SKIP.match(tok.string)}
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return {i for i, line in enumerate(source.split("\n"), 1) if _SKIP.search(line)}


class _Statements(Visitor):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, marked: Set[int]):
        self.marked = marked
        self.protected: Set[int] = set(marked)

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> bool:
        pos = self.get_metadata(PositionProvider, node)
        if any(pos.start.line <= m <= pos.end.line for m in self.marked):
            self.protected.update(range(pos.start.line, pos.end.line + 1))
        return False


def protected_lines(source: str) -> Set[int]:
    """1-based lines that no rule may change: each statement that carries the skip comment."""
    marked = _comment_lines(source)
    if not marked:
        return set()
    try:
        visitor = _Statements(marked)
        MetadataWrapper(cst.parse_module(source)).visit(visitor)
        return visitor.protected
    except Exception:
        return marked


def _split(text: str) -> List[str]:
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def protect(source: str, result):
    """`result` (a changed MigrationResult of `source`) with every protected statement as written."""
    protected = protected_lines(source)
    if not protected:
        return result
    a, b = _split(source), _split(result.code)
    out: List[str] = []
    restored: List[Tuple[int, int]] = []  # 1-based inclusive line ranges of the input put back
    blocked = None
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        hit = sorted(n for n in protected if i1 < n <= i2)
        if tag == "equal" or not hit:
            out.extend(a[i1:i2] if tag == "equal" else b[j1:j2])
            continue
        new_stripped = {line.strip() for line in b[j1:j2]}
        if any(a[n - 1].strip() in new_stripped for n in hit):
            blocked = (hit[0], "it would only be re-indented (moved into a block), which cannot be undone alone")
            break
        out.extend(a[i1:i2])
        restored.append((i1 + 1, i2))
    code = "".join(out)
    if blocked is None:
        try:
            cst.parse_module(code)
        except Exception:
            blocked = (min(protected), "keeping it as written would not give valid code")
    if blocked is not None:
        line, why = blocked
        return replace(result, code=source, changed=False, diagnostics=[Diagnostic(
            SKIPPED, line, 1, WARNING, f"file left unchanged: line {line} is marked `# pt-migrate: skip` and {why}; "
            f"remove the comment or migrate that part by hand", False)])

    def inside(line: int) -> bool:
        return any(lo <= line <= hi for lo, hi in restored)

    diagnostics = [d for d in result.diagnostics if not (d.fixed and inside(d.line))]
    for lo, hi in restored:
        diagnostics.append(Diagnostic(SKIPPED, lo, 1, INFO, f"kept line(s) {lo}-{hi} as written (`# pt-migrate: skip`)"
                                      if hi > lo else "kept as written (`# pt-migrate: skip`)", False))
    diagnostics.sort(key=lambda d: (d.line, d.column, d.code))
    return replace(result, code=code, changed=code != source, diagnostics=diagnostics)
