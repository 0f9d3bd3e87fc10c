"""Rendering outcomes: unified diffs that `git apply` accepts, GitHub annotations, JSON and Markdown reports.

The JSON report (`--format json`) is a stable schema; `version` changes only when a field is removed or its
meaning changes (new fields may be added):

    {"version": 1, "tool": "pt-migrate", "tool_version": "0.1.0", "target": "fabric", "mode": "write|diff|check",
     "files": [{"path": str, "changed": bool, "error": str|null, "diff": str,
                "diagnostics": [{"code": str, "line": int, "column": int, "severity": "error|warning|info",
                                 "message": str, "fixed": bool, "needs_attention": bool}]}],
     "summary": {"files": int, "changed": int, "errors": int, "fixed": int, "needs_attention": int}}

`errors` counts every error-level diagnostic (parse errors, crashes, self-check refusals) and failed writes; the
text summary line gives the same number.
"""
from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path
from typing import List, Optional

from migrator import __version__
from migrator.diagnostics import ERROR, INFO, WARNING, Diagnostic

JSON_VERSION = 1


def display_path(path: str) -> str:
    """A path as shown in reports and diffs: relative to the working directory when under it, with '/'."""
    if path == "-":
        return path
    p = Path(path)
    if p.is_absolute():
        try:
            p = p.relative_to(Path.cwd())
        except ValueError:
            return p.as_posix()
    return Path(os.path.normpath(p)).as_posix()


def _lines(text: str) -> List[str]:
    # split on "\n" only: git and patch know no other line terminator ("\r" stays part of a CRLF line)
    parts = text.split("\n")
    out = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


def unified_diff(path: str, old: str, new: str) -> str:
    """A diff of one file that `git apply` (and `patch -p1`) applies to give exactly `new`."""
    if old == new:
        return ""
    a, b = _lines(old), _lines(new)
    name = display_path(path).lstrip("/")  # an absolute path outside the working directory: a/abs/path, as git
    out = []
    for line in difflib.unified_diff(a, b, f"a/{name}", f"b/{name}"):
        if not line.endswith("\n"):
            line += "\n\\ No newline at end of file\n"
        out.append(line)
    return "".join(out)


def outcome_diagnostics(o) -> List[Diagnostic]:
    """Every diagnostic of an outcome; a file that could not be read gets one error diagnostic."""
    if o.result is not None and o.result.diagnostics:
        return list(o.result.diagnostics)
    if o.error:
        m = re.match(r"(\d+):(\d+): (.*)", o.error, re.S)
        if m:
            return [Diagnostic("PTM001", int(m.group(1)), int(m.group(2)), ERROR, m.group(3), False)]
        return [Diagnostic("PTM000", 1, 1, ERROR, o.error, False)]
    return []


def error_count(o) -> int:
    """Errors of an outcome: its error-level diagnostics (a parse error, a crash, each PTM006 problem of a migration
    that the self-check refused), and a failure no diagnostic carries (a write that failed after the migration)."""
    n = sum(1 for d in outcome_diagnostics(o) if d.severity == ERROR)
    if o.error and o.result is not None and o.result.diagnostics and not o.result.error:
        n += 1
    return n


# -- GitHub workflow commands

def _gh_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_prop(s: str) -> str:
    return _gh_data(s).replace(":", "%3A").replace(",", "%2C")


GH_LEVEL = {ERROR: "error", WARNING: "warning", INFO: "notice"}


def github_annotations(outcomes) -> str:
    """`::warning file=...,line=...,col=...,title=CODE::message` per diagnostic (error severity -> ::error).

    Items the tool fixed are notices; items that need a person are warnings (errors stay errors)."""
    out = []
    for o in outcomes:
        for d in outcome_diagnostics(o):
            level = "error" if d.severity == ERROR else ("warning" if d.needs_attention else "notice")
            out.append(f"::{level} file={_gh_prop(display_path(o.path))},line={d.line},col={d.column},"
                       f"title={_gh_prop(d.code)}::{_gh_data(d.message)}\n")
    return "".join(out)


# -- JSON

def summary_counts(outcomes) -> dict:
    ok = [o for o in outcomes if not o.error and o.result]
    return {
        "files": len(outcomes),
        "changed": sum(1 for o in outcomes if o.changed),
        "errors": sum(error_count(o) for o in outcomes),
        "fixed": sum(1 for o in ok for d in o.result.diagnostics if d.fixed),
        "needs_attention": sum(len(o.result.needs_attention) for o in ok),
    }


def json_report(outcomes, target: str, mode: str) -> str:
    files = []
    for o in outcomes:
        files.append({
            "path": display_path(o.path),
            "changed": o.changed,
            "error": o.error,
            "diff": unified_diff(o.path, o.old_text, o.result.code) if o.changed else "",
            "diagnostics": [d.to_dict() for d in outcome_diagnostics(o)],
        })
    doc = {"version": JSON_VERSION, "tool": "pt-migrate", "tool_version": __version__, "target": target,
           "mode": mode, "files": files, "summary": summary_counts(outcomes)}
    return json.dumps(doc, indent=2) + "\n"


# -- Markdown ($GITHUB_STEP_SUMMARY)

def _md(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def markdown_report(outcomes, target: str, mode: str, max_diff_chars: int = 60000) -> str:
    c = summary_counts(outcomes)
    verb = {"write": "migrated", "diff": "would migrate", "check": "would migrate"}[mode]
    lines = [f"## pt-migrate → {target}", "",
             f"{verb} **{c['changed']}** of {c['files']} file(s); **{c['needs_attention']}** item(s) need "
             f"attention; **{c['errors']}** error(s).", ""]
    shown = [o for o in outcomes if o.changed or o.error or (o.result and o.result.needs_attention)]
    if shown:
        lines += ["| File | Status | Fixed | Needs attention |", "| --- | --- | ---: | ---: |"]
        for o in shown:
            status = "error" if o.error else ("changed" if o.changed else "unchanged")
            diags = o.result.diagnostics if o.result and not o.error else []
            lines.append(f"| `{_md(display_path(o.path))}` | {status} | {sum(1 for d in diags if d.fixed)} | "
                         f"{sum(1 for d in diags if d.needs_attention)} |")
        lines.append("")
    todo = [(o, d) for o in outcomes for d in outcome_diagnostics(o) if d.needs_attention]
    if todo:
        lines += ["### Needs attention", ""]
        for o, d in todo:
            lines.append(f"- `{_md(display_path(o.path))}:{d.line}:{d.column}` **{d.code}** {_md(d.message)}")
        lines.append("")
    budget = max_diff_chars
    for o in outcomes:
        if not o.changed:
            continue
        diff = unified_diff(o.path, o.old_text, o.result.code)
        if len(diff) > budget:
            lines += [f"<details><summary>{display_path(o.path)}</summary>", "",
                      "(diff too long for the summary; run `pt-migrate --diff` locally)", "", "</details>", ""]
            continue
        budget -= len(diff)
        fence = "````" if "```" in diff else "```"
        lines += [f"<details><summary>{display_path(o.path)}</summary>", "", f"{fence}diff", diff.rstrip("\n"),
                  fence, "", "</details>", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


# -- colour

def use_color(stream, flag: Optional[bool]) -> bool:
    """Colour only on a terminal; `--no-color` (flag False) and a non-empty NO_COLOR turn it off."""
    if flag is False or os.environ.get("NO_COLOR"):
        return False
    try:
        return bool(stream.isatty())
    except Exception:
        return False


def color_diff(diff: str) -> str:
    import click

    out = []
    for line in diff.splitlines(keepends=True):
        body, nl = (line[:-1], "\n") if line.endswith("\n") else (line, "")
        if line.startswith(("+++", "---")):
            body = click.style(body, bold=True)
        elif line.startswith("@@"):
            body = click.style(body, fg="cyan")
        elif line.startswith("+"):
            body = click.style(body, fg="green")
        elif line.startswith("-"):
            body = click.style(body, fg="red")
        out.append(body + nl)
    return "".join(out)
