"""A cheap textual test that keeps files which cannot be training scripts away from the parser.

It is a necessary condition of what the analysis calls a training script (migrator.analysis: a `.backward(`
call with a `.step(` call or reached from a loop, or an optimizer constructed and stepped), checked on the code only: strings, docstrings and comments
are blanked first, so a library whose docstrings show `loss.backward()` examples is not parsed. It never
imports libcst: a run over a tree whose files are all rejected here needs no parser at all.

It may say True for a file that is no training script (the analysis then decides); it must never say False
for one. tests/test_prescan.py holds it to that on every fixture.
"""
from __future__ import annotations

import re

from migrator.trains import backward_reached_from_loop

# Strings (any prefix, single or triple quoted) and comments, in one left-to-right scan: the earliest match wins,
# so a `#` inside a string stays in the string and a quote inside a comment stays in the comment.
_STRINGS_AND_COMMENTS = re.compile(
    r'[rRbBuUfF]{0,2}(?:"""(?:\\[\s\S]|[^\\])*?"""|\'\'\'(?:\\[\s\S]|[^\\])*?\'\'\''
    r'|"(?:\\[\s\S]|[^"\\\n])*"|\'(?:\\[\s\S]|[^\'\\\n])*\')'
    r"|#[^\n]*")
_BACKWARD = re.compile(r"\.\s*backward\s*\(")
_STEP = re.compile(r"\.\s*step\s*\(")
# torch.optim.AdamW(, optim.SGD(, O.Adam( after `import torch.optim as O`, Adam( after `from torch.optim import Adam`
_OPTIM_ATTR = re.compile(r"\b(?:torch\s*\.\s*)?optim\s*\.\s*(?:\w+\s*\.\s*)?[A-Z]\w*\s*\(")
_OPTIM_MODULE_ALIAS = re.compile(r"^\s*import\s+torch\.optim(?:\.\w+)*\s+as\s+(\w+)", re.M)
_OPTIM_FROM = re.compile(r"^\s*from\s+torch\.optim(?:\.\w+)*\s+import\s+(\([^)]*\)|[^\n]*)", re.M)


def code_only(source: str) -> str:
    """The source with every string literal and comment removed (line structure of code lines is kept)."""
    return _STRINGS_AND_COMMENTS.sub('""', source)


def without_comments(source: str) -> str:
    """The source with comments removed and strings kept: what a rule's trigger words are looked for in (a TODO
    comment the tool wrote must not wake a rule up)."""
    return _STRINGS_AND_COMMENTS.sub(lambda m: "" if m.group(0).startswith("#") else m.group(0), source)


_RECEIVER = re.compile(r"([\w.]*)\s*$")
_DEF = re.compile(r"^([ \t]*)(?:async[ \t]+)?def[ \t]+(\w+)")
# a backward on one of these is the framework's own, not a plain PyTorch backward
_FRAMEWORK_RECEIVERS = {"fabric", "accelerator", "_fabric", "_accelerator"}


def has_backward_call(code: str) -> bool:
    """A plain `.backward(` call: not `torch.autograd.backward(` (the analysis does not count that one either),
    not `fabric.backward(` / `accelerator.backward(` (the file already uses a framework), and not one inside a
    function named `backward` (a library's wrapper that forwards `tensor.backward(*args, **kwargs)`)."""
    for m in _BACKWARD.finditer(code):
        line_start = code.rfind("\n", 0, m.start()) + 1
        receiver = _RECEIVER.search(code, line_start, m.start()).group(1)
        last = receiver.rsplit(".", 1)[-1]
        if last == "autograd" or last.lower() in _FRAMEWORK_RECEIVERS:
            continue
        if _in_def_named_backward(code, line_start):
            continue
        return True
    return False


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _in_def_named_backward(code: str, line_start: int) -> bool:
    """Is the line at `line_start` in the body of a `def backward` / `def ..._backward` (at any depth)?"""
    line_end = code.find("\n", line_start)
    level = _indent(code[line_start:line_end if line_end >= 0 else len(code)])
    end = line_start
    while level > 0 and end > 0:
        start = code.rfind("\n", 0, end - 1) + 1
        line = code[start:end - 1] if end - 1 >= start else ""
        end = start
        if not line.strip():
            continue
        ind = _indent(line)
        if ind < level:
            level = ind
            d = _DEF.match(line)
            if d and (d.group(2) == "backward" or d.group(2).endswith("_backward")):
                return True
    return False


def constructs_optimizer(code: str) -> bool:
    if _OPTIM_ATTR.search(code):
        return True
    names = set()
    for alias in _OPTIM_MODULE_ALIAS.findall(code):
        names.add(alias + ".")
    for group in _OPTIM_FROM.findall(code):
        for part in group.strip("()").replace("\n", " ").split(","):
            words = part.split()
            if words and words[0] != "*":
                names.add(words[-1])  # `Adam` or the alias of `Adam as A`
            elif words:
                return True  # `from torch.optim import *`: any capitalized call may be one
    for name in names:
        if name.endswith("."):
            if re.search(rf"\b{re.escape(name)}\s*[A-Z]\w*\s*\(", code):
                return True
            if re.search(rf"\bgetattr\(\s*{re.escape(name[:-1])}\s*,", code):  # getattr(optim, args.optim)(...)
                return True
        elif name[:1].isupper() and re.search(rf"(?<![\w.]){re.escape(name)}\s*\(", code):
            return True
    return False


def may_be_training_script(source: str, options=None) -> bool:
    """False only when the file surely is not a training script: no torch, or, in its code (not in strings or
    comments), neither a `.backward(` call that a `.step(` call or a loop goes with (migrator.trains) nor an
    optimizer that is both constructed and stepped."""
    if options is not None and options.external_fw_functions:
        return True  # an entry script whose loop lives in a sibling module
    if "torch" not in source:
        return False
    if "backward" not in source and "step" not in source:
        return False
    code = code_only(source)
    stepped = bool(_STEP.search(code))
    if has_backward_call(code):
        # a backward trains when something is stepped or a loop reaches it (migrator.analysis, is_training);
        # a utility's lone backward (lightning's measure_flops) does not: ast tells, no libcst
        return stepped or backward_reached_from_loop(source)
    return stepped and constructs_optimizer(code)
