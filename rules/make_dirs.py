"""PTM152 make-dirs: a folder every rank creates is created by the main process first; the others accept it.

What it does: in the framework scope, `os.makedirs(X)` / `os.mkdir(X)` / `Path(X).mkdir(...)` without
`exist_ok=True`:
- right under `if not os.path.exists(X):` (or `os.path.isdir(X)`, `Path(X).exists()`, `.is_dir()`; X itself or a
  path joined onto it) with nothing else in that `if` that writes: gets `exist_ok=True` (`os.mkdir` becomes
  `os.makedirs(X, exist_ok=True)`, which has that argument). The test already accepted an existing folder; only
  the race between ranks, which both see it missing, changes.
- run by every rank, under nothing but `for` loops, `with` blocks and tests of settings or counters
  (`if args.save:`): goes into `with fabric.rank_zero_first(local=False):` / `with accelerator.main_process_first():`
  with `exist_ok=not fabric.is_global_zero` / `exist_ok=not accelerator.is_main_process`: the main process runs it
  first exactly as the script did (an existing folder still stops it), the others then find the folder in place.
- under a rank guard, in a main-process-first block, or in a `try` that catches the error: left alone.

Why: every process runs the whole script. The first rank to get there creates the folder, the second dies with
FileExistsError (seen on 2 GPUs: pytorch-ddpm's `os.makedirs(os.path.join(FLAGS.logdir, 'sample'))`).

Example: `os.makedirs(args.out)` -> `with fabric.rank_zero_first(local=False):` +
`os.makedirs(args.out, exist_ok=not fabric.is_global_zero)`.

Fabric form: `fabric.rank_zero_first(local=False)` (lightning 2.6: global rank 0 runs the body, then the others;
the barrier has no time limit), `fabric.is_global_zero`. Accelerate form: `accelerator.main_process_first()`
(accelerate 1.15: the main process of the run first), `accelerator.is_main_process`. The block is PTM150's.

Fix safety: safe. Anything else gets a warning and a TODO: a folder created under another condition (the file
system, time, a value of the data: ranks could disagree and the block's barrier would wait forever), in a `while`
loop, where the framework object is out of reach (import time, a function or class that does not receive it), an
`exist_ok` computed at run time, `os.mkdir(..., dir_fd=...)`, or an `if not exists` that also changes other files.
"""
from __future__ import annotations

from typing import List, Optional

import libcst as cst
from libcst.metadata import QualifiedNameProvider

from migrator import matching as m
from migrator import side_effects as se
from migrator.analysis import is_main_guard
from migrator.names import dotted, qualified_names
from migrator.rules._reduce_logged import Index, loop_counters, uniform_test
from migrator.rules.base import Context, Example, Rule, RuleTransformer
from migrator.rules.download_first import first_block, first_block_item, first_header

# exceptions whose handler already accepts an existing folder
_CAUGHT = ("FileExistsError", "OSError", "IOError", "Exception", "BaseException")
# calls that change the file system besides creating the folder
_CHANGES = ("rmtree", "remove", "unlink", "rename", "replace", "move", "copy", "copyfile", "copytree", "symlink",
            "mkdir", "makedirs", "write", "touch", "chmod")


def _code(node: cst.CSTNode) -> str:
    return cst.Module([]).code_for_node(node)


def _kw(call: cst.Call, name: str) -> Optional[cst.Arg]:
    return next((a for a in call.args if a.keyword is not None and a.keyword.value == name), None)


def _path_key(expr: cst.BaseExpression) -> str:
    """The folder an expression names, as code: `Path(X)` and `pathlib.Path(X)` name X."""
    if isinstance(expr, cst.Call) and (dotted(expr.func) or "").split(".")[-1] in ("Path", "PurePath") \
            and len(expr.args) == 1 and expr.args[0].keyword is None:
        return _code(expr.args[0].value)
    return _code(expr)


def _keys(expr: cst.BaseExpression) -> List[str]:
    """The folder and the folders it lies in by construction: `os.path.join(X, "a")` and `X / "a"` lie in X."""
    out = [_path_key(expr)]
    if isinstance(expr, cst.Call) and (dotted(expr.func) or "").endswith("path.join") and expr.args:
        out += _keys(expr.args[0].value)
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Divide):
        out += _keys(expr.left)
    return out


class _Transformer(RuleTransformer):
    METADATA_DEPENDENCIES = RuleTransformer.METADATA_DEPENDENCIES + (QualifiedNameProvider,)

    def qn(self, node):
        return qualified_names(self, node)

    def visit_Module(self, node: cst.Module):
        self.index = Index(node)
        return True

    # -- what the statement creates
    def _mkdir(self, call: cst.Call):
        """(kind, folder expression) of a folder-creating call: 'makedirs', 'mkdir' (os) or 'path' (pathlib)."""
        q = self.qn(call.func)
        positional = [a for a in call.args if a.keyword is None and not a.star]
        if q & {"os.makedirs", "os.mkdir"} and positional:
            return ("makedirs" if "os.makedirs" in q else "mkdir"), positional[0].value
        func = call.func
        if isinstance(func, cst.Attribute) and func.attr.value == "mkdir" and not positional \
                and all(a.keyword is not None and a.keyword.value in ("mode", "parents", "exist_ok") for a in call.args):
            recv = func.value
            owner = self.qn(recv)
            if owner and not any(o.startswith("pathlib") for o in owner) and not isinstance(recv, cst.Call):
                return None  # a module's own mkdir(...), not a path's
            return "path", recv
        return None

    def leave_SimpleStatementLine(self, original_node, updated_node):
        if len(original_node.body) != 1 or not isinstance(original_node.body[0], cst.Expr) \
                or not isinstance(original_node.body[0].value, cst.Call):
            return updated_node
        call = original_node.body[0].value
        found = self._mkdir(call)
        if found is None:
            return updated_node
        kind, folder = found
        exist_ok = _kw(call, "exist_ok")
        if exist_ok is not None and isinstance(exist_ok.value, cst.Name) and exist_ok.value.value == "True":
            return updated_node
        where = self.index.where.get(id(original_node))
        if where is None:
            return updated_node
        scope, ancestors, _ = where
        if self._settled(scope, ancestors):
            return updated_node
        what = f"`{_code(call)}`"
        if exist_ok is not None and not (isinstance(exist_ok.value, cst.Name) and exist_ok.value.value == "False"):
            self.todo(original_node, f"{what} runs on every rank with an `exist_ok` computed at run time: make sure the "
                                     f"ranks after the first accept the folder")
            return updated_node
        if _kw(call, "dir_fd") is not None:
            self.todo(original_node, f"{what} runs on every rank: the second fails with FileExistsError; create it "
                                     f"once (`{first_header(self.fw, self.ctx.target)}`)")
            return updated_node
        if not self.facts.fw_scopes() and not self.in_fw_scope():
            return updated_node  # no framework object in this file: it stays one process, and nothing races
        guard = self._missing_guard(ancestors, folder, original_node)
        if guard and guard != "writes" and not self.in_fw_scope():
            guard = None  # out of the object's reach: the TODO below, not a rewrite
        if guard == "writes":
            self.todo(original_node, f"{what} is tested for on every rank, and the test's block does more: both ranks "
                                     f"can find the folder missing and the second fails with FileExistsError")
            return updated_node
        if guard:
            self.report(original_node, f"{what} under a test that the folder is missing: every rank can find it "
                                       f"missing at once; `exist_ok=True` accepts the folder another rank made", True)
            return updated_node.with_changes(body=[cst.Expr(self._with_exist_ok(call, kind, cst.Name("True")))])
        why = self._why_not(ancestors)
        if why is None and not self.in_fw_scope():
            why = f"`{self.facts.fw}` is out of reach here"
        if why is not None:
            self.todo(original_node, f"{what} runs on every rank and the second fails with FileExistsError; {why}: "
                                     f"create it on the main process first (`{first_header(self.fw, self.ctx.target)}` "
                                     f"with `exist_ok=not <main process>`)")
            return updated_node
        zero = "is_global_zero" if self.ctx.target == "fabric" else "is_main_process"
        ok = cst.parse_expression(f"not {self.fw}.{zero}")
        self.report(original_node, f"{what} on every rank: the main process creates the folder first as the script "
                                   f"did, the others accept it (`{first_header(self.fw, self.ctx.target)}`)", True)
        stmt = updated_node.with_changes(body=[cst.Expr(self._with_exist_ok(call, kind, ok))])
        return first_block(self.fw, self.ctx.target, [stmt])

    def _with_exist_ok(self, call: cst.Call, kind: str, value: cst.BaseExpression) -> cst.Call:
        args = [a for a in call.args if not (a.keyword is not None and a.keyword.value == "exist_ok")]
        if args:
            args[-1] = args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        args.append(cst.Arg(keyword=cst.Name("exist_ok"), value=value,
                            equal=cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace(""))))
        func = call.func
        if kind == "mkdir":  # os.mkdir has no exist_ok; os.makedirs takes the same path and mode
            if isinstance(func, cst.Attribute):
                func = func.with_changes(attr=cst.Name("makedirs"))
            else:  # `from os import mkdir`
                func = cst.parse_expression("os.makedirs")
                self.ctx.imports.add("os")
        return call.with_changes(func=func, args=args)

    # -- where it runs
    def _settled(self, scope, ancestors) -> bool:
        """Run once already: under a rank test, in a main-process-first block, in a `try` that catches the error,
        or in a function decorated to run on rank zero only."""
        if isinstance(scope, cst.FunctionDef) and any("rank_zero" in _code(d.decorator) for d in scope.decorators):
            return True
        for node, label in ancestors:
            if isinstance(node, cst.If) and se.rankish(node.test):
                return True
            if isinstance(node, cst.With) and any(first_block_item(i) or se.rankish(i.item) for i in node.items):
                return True
            if isinstance(node, cst.Try) and label == "body":
                for handler in node.handlers:
                    names = [] if handler.type is None else [dotted(e) or "" for e in m.findall(handler.type, m.Name())]
                    if handler.type is None or any(n in _CAUGHT for n in names):
                        return True
        return False

    def _missing_guard(self, ancestors, folder, stmt) -> Optional[str]:
        """'yes' when the innermost compound statement is an `if` that tests that the folder (or one it lies in) is
        missing and does nothing else that writes; 'writes' when it does more; None when it is no such test."""
        if not ancestors or not isinstance(ancestors[-1][0], cst.If):
            return None
        node, label = ancestors[-1]
        keys = set(_keys(folder))
        if not any(k in keys for k in self._tested(node.test, negated=(label == "body"))):
            return None
        for inner in m.findall(node, m.SimpleStatementLine()):
            if inner is stmt or _code(inner).strip() == _code(stmt).strip():
                continue
            if se.saves_to_file(inner, self.qn) or any((dotted(c.func) or "").split(".")[-1] in _CHANGES
                                                        for c in m.findall(inner, m.Call())):
                return "writes"
        return "yes"

    def _tested(self, test: cst.BaseExpression, negated: bool) -> List[str]:
        """Folders the test finds missing (negated: `not exists(X)`, also as one operand of `and`) or present."""
        if isinstance(test, cst.BooleanOperation) and isinstance(test.operator, cst.And) and negated:
            return self._tested(test.left, negated) + self._tested(test.right, negated)
        if negated:
            if not (isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not)):
                return []
            test = test.expression
        if not isinstance(test, cst.Call) or not isinstance(test.func, cst.Attribute):
            return []
        name = test.func.attr.value
        if name in ("exists", "isdir") and (dotted(test.func) or "").endswith(("path.exists", "path.isdir")) \
                and test.args:
            return [_path_key(test.args[0].value)]
        if name in ("exists", "is_dir") and not test.args:
            return [_path_key(test.func.value)]
        return []

    def _why_not(self, ancestors) -> Optional[str]:
        """Why the ranks might not all reach a block here, in words, or None: only `for` loops, `with` blocks and
        tests of settings or counters are around it."""
        counters = loop_counters(ancestors)
        for node, label in ancestors:
            if isinstance(node, (cst.For, cst.With)) or (isinstance(node, cst.Try) and label in ("body", "finally")):
                continue
            if isinstance(node, cst.If) and (uniform_test(node.test, counters) or is_main_guard(node)):
                continue
            head = _code(node).split("\n", 1)[0].strip()[:50]
            return f"it runs under `{head}`, which the ranks may answer differently"
        return None


class MakeDirs(Rule):
    code = "PTM152"
    name = "make-dirs"
    plain_scripts_only = True  # a script on the framework chose its own order
    triggers = ("mkdir", "makedirs")
    examples = [
        Example(
            before='import os\nimport torch\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    os.makedirs(os.path.join("runs", "sample"))\n    loss = model(torch.randn(2, 4)).sum()\n    loss.backward()\n    optimizer.step()\n',
            fabric='import os\nimport torch\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    with fabric.rank_zero_first(local=False):\n        os.makedirs(os.path.join("runs", "sample"), exist_ok=not fabric.is_global_zero)\n    loss = model(torch.randn(2, 4)).sum()\n    loss.backward()\n    optimizer.step()\n',
            accelerate='import os\nimport torch\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    with accelerator.main_process_first():\n        os.makedirs(os.path.join("runs", "sample"), exist_ok=not accelerator.is_main_process)\n    loss = model(torch.randn(2, 4)).sum()\n    loss.backward()\n    optimizer.step()\n',
        ),
        Example(
            before='import os\nimport torch\n\n\ndef main():\n    if not os.path.exists("out"):\n        os.mkdir("out")\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loss = model(torch.randn(2, 4)).sum()\n    loss.backward()\n    optimizer.step()\n',
            fabric='import os\nimport torch\n\n\ndef main():\n    if not os.path.exists("out"):\n        os.makedirs("out", exist_ok=True)\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loss = model(torch.randn(2, 4)).sum()\n    loss.backward()\n    optimizer.step()\n',
            accelerate='import os\nimport torch\n\n\ndef main():\n    if not os.path.exists("out"):\n        os.makedirs("out", exist_ok=True)\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    loss = model(torch.randn(2, 4)).sum()\n    loss.backward()\n    optimizer.step()\n',
        ),
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
