"""PTM151 write-once: logs, writers and output files are written by the main process only.

What it does: in the framework scope,
- a statement that writes one output file (`save_image`, `plt.savefig` / `fig.savefig`, `np.save` / `savez` /
  `savetxt`, `torch.onnx.export`, `df.to_csv`, `save_pretrained`, `json.dump(x, open(path, "w"))`, ...) and a
  `with open(path, "w") as f:` block that only writes to the file go under `if fabric.is_global_zero:` /
  `if accelerator.is_main_process:` (consecutive ones share the `if`);
- a file kept open for writing (`log = open("log.csv", "w")`, or a `with open(...)` block that does more than
  write) is opened on the main process and is `os.devnull` on the others: `open(path if fabric.is_global_zero else
  os.devnull, "w")`, so every use of the handle keeps working;
- a writer (`SummaryWriter(...)`, or a class of the module that writes files, such as a `Logger`) is made on the
  main process only, `writer = SummaryWriter(...) if fabric.is_global_zero else None`, and each of its uses goes
  under `if writer is not None:`, in the function that makes it and in the functions of the module it is handed
  to; `self.writer` of a trainer class likewise in its methods;
- `wandb.init(...)` gets `mode=None if fabric.is_global_zero else "disabled"`: the other ranks' runs log nothing;
- `logging.FileHandler(path)` / `logging.basicConfig(filename=path)` log to `os.devnull` on the other ranks.
Reading files stays on every rank; `torch.save` is PTM136's, and so is a `with open(path, "wb") as f:` block that only
`torch.save`s to `f` (PTM136 puts the whole block under the guard).

Why: every process runs the whole script: each rank would write `images/400.png`, open a SummaryWriter on the same
folder (curves doubled, event files clobbered), append its lines to the same CSV, export the same ONNX file.
A training loss that such a statement logs (`writer.add_scalar("loss", loss.item(), step)`, `wandb.log({"loss":
loss.item()})`, a line written to the log, a container the main process later dumps with `json.dump` /
`pickle.dump` filled in the same function: `stats["loss"].append(loss.item())`) is the mean over ranks: `loss_mean = fabric.all_reduce(loss.detach()
.clone(), reduce_op="mean")` / `loss_mean = accelerator.reduce(loss.detach(), reduction="mean")` goes right before it,
outside the main-process guard (a collective every rank must reach), and it logs `loss_mean.item()`; on one process
that is the same number. Only where the statement runs whenever the loss's backward does (same function, after the
backward, only `with` blocks and tests of counters, loop indices and settings such as `if step % 10 == 0:` around
it, no `break` / `continue` / `return` / `raise` and no new `loss` in between: rules/_reduce_logged.py);
elsewhere the value stays the main process's own (its shard's) and a note says why. Other logged numbers (an
accuracy, a running sum, a value of a helper) are the main process's own too, unless the script reduces them
(PTM112 reduces sums over a set-up loader).

Example: `save_image(fake, f"samples/{epoch}.png")` -> `if fabric.is_global_zero: save_image(...)`;
`writer = SummaryWriter("runs/x")` -> `writer = SummaryWriter("runs/x") if fabric.is_global_zero else None`.

Fabric form: `fabric.is_global_zero` (global rank 0). Accelerate form: `accelerator.is_main_process`.

Fix safety: safe. Left with a TODO: a writer used in a way a guard cannot follow (returned, stored, handed to code
outside the module), a write that also runs the set-up model, a collective or the framework object (on one rank
only it would hang the others), a file the script reads back (the other ranks would read it before it is
written), a `path.open("w")` kept open, and writes at import time before the framework object exists. A path
that names the rank (one file per rank) and code already under a rank guard stay as they are.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Set, Tuple

import libcst as cst
from libcst.metadata import QualifiedNameProvider

from migrator import matching as m
from migrator import side_effects as se
from migrator.analysis import MAIN_GUARD, MODULE, is_main_guard
from migrator.names import dotted, qualified_names
from migrator.rules import _reduce_logged as rl
from migrator.rules.base import Context, Example, Rule, RuleTransformer
from migrator.rules.checkpoints import save_through_handle
from migrator.rules.download_first import first_block_item
from migrator.rules.rank_zero import collectives_in, guard_flag

LOGS_METRICS = "what it logs is rank 0's value (its own shard's), not the mean over ranks, unless reduced"
# calls that are fine in a block that only writes: methods of the file or a csv writer, formatting
_WRITE_ONLY_METHODS = {"write", "writelines", "flush", "writerow", "writerows", "writeheader", "dump", "dumps",
                       "format", "join", "item", "tolist", "items", "keys", "values", "strip"}
_WRITE_ONLY_FUNCS = {"print", "str", "repr", "len", "round", "float", "int", "sorted", "list", "dict", "zip",
                     "enumerate", "range", "min", "max", "sum", "abs"}
_SAFE_MODEL_METHODS = {"state_dict", "parameters", "named_parameters", "eval", "train", "cpu", "to", "buffers"}


def _code(node: cst.CSTNode) -> str:
    return cst.Module([]).code_for_node(node)


def _is_none(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Name) and node.value == "None"


class _Uses(m.Visitor):
    """How a function or class body uses one writer (`writer`, `self.writer`): statements that are one call of its
    method (guardable), hand-overs to functions of the module, and uses a guard cannot follow."""

    def __init__(self, target: str, qn, local_defs: Dict[str, cst.FunctionDef], writer_classes: Set[str]):
        super().__init__()
        self.target = target
        self.qn = qn
        self.local_defs = local_defs
        self.writer_classes = writer_classes
        self.guarded_blocks: Set[int] = set()
        self.depth = 0  # inside an `if` that tests the writer or a rank
        self.handled: Set[int] = set()
        self.statements: List[cst.SimpleStatementLine] = []  # `writer.add_scalar(...)` lines to guard
        self.handovers: List[Tuple[str, object]] = []  # (function, position or keyword)
        self.bad: List[cst.CSTNode] = []

    def _is_ref(self, node: cst.CSTNode) -> bool:
        return isinstance(node, (cst.Name, cst.Attribute)) and dotted(node) == self.target

    def visit_If(self, node: cst.If) -> None:
        refs = [n for n in m.findall(node.test, m.Name() | m.Attribute()) if self._is_ref(n)]
        self.handled.update(id(n) for n in refs)
        if refs or se.rankish(node.test):
            self.guarded_blocks.add(id(node))
            self.depth += 1

    def leave_If(self, node: cst.If) -> None:
        if id(node) in self.guarded_blocks:
            self.depth -= 1

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        if len(node.body) != 1:
            return
        small = node.body[0]
        if isinstance(small, cst.Expr) and isinstance(small.value, cst.Call) \
                and isinstance(small.value.func, cst.Attribute) and self._is_ref(small.value.func.value):
            self.handled.add(id(small.value.func.value))
            if not self.depth:
                self.statements.append(node)
        elif isinstance(small, (cst.Assign, cst.AnnAssign)):
            targets = small.targets if isinstance(small, cst.Assign) else [small]
            for t in targets:
                target = t.target
                if self._is_ref(target):
                    self.handled.add(id(target))
                    value = small.value
                    if value is None or not (_is_none(value) or isinstance(value, cst.IfExp) or (
                            isinstance(value, cst.Call) and se.writer_ctor(value, self.qn, self.writer_classes))):
                        self.bad.append(target)

    def visit_Call(self, node: cst.Call) -> None:
        name = dotted(node.func)
        if name not in self.local_defs:
            return
        positional = 0
        for arg in node.args:
            if arg.star:
                continue
            if self._is_ref(arg.value):
                self.handled.add(id(arg.value))
                self.handovers.append((name, arg.keyword.value if arg.keyword is not None else positional))
            if arg.keyword is None:
                positional += 1

    def visit_Global(self, node: cst.Global) -> None:
        self.handled.update(id(n.name) for n in node.names)

    def visit_Attribute(self, node: cst.Attribute) -> Optional[bool]:
        self.handled.add(id(node.attr))  # `x.writer` is not the name `writer`
        if self._is_ref(node):
            self._use(node)
            return False
        return True

    def visit_Name(self, node: cst.Name) -> None:
        if self._is_ref(node):
            self._use(node)

    def visit_Arg(self, node: cst.Arg) -> None:
        if node.keyword is not None:
            self.handled.add(id(node.keyword))

    def visit_Param(self, node: cst.Param) -> None:
        self.handled.add(id(node.name))

    def _use(self, node: cst.CSTNode) -> None:
        if id(node) not in self.handled and not self.depth:
            self.bad.append(node)


class _Transformer(RuleTransformer):
    METADATA_DEPENDENCIES = RuleTransformer.METADATA_DEPENDENCIES + (QualifiedNameProvider,)

    def qn(self, node):
        return qualified_names(self, node)

    # -- what the module holds: writer classes, writers and their uses, files read back
    def visit_Module(self, node: cst.Module):
        self.local_defs = {s.name.value: s for s in node.body if isinstance(s, cst.FunctionDef)}
        self.writer_classes = {s.name.value for s in node.body if isinstance(s, cst.ClassDef)
                               and s.name.value not in self.facts.fw_classes and not _is_model_or_data(s)
                               and se.writes(s, self.qn)}
        self.read_paths = _read_paths(node)
        self.models = set(self.facts.models) | set(self.facts.model_aliases)
        self.decided: Dict[int, Tuple[str, str]] = {}  # id(statement) -> (test code, message)
        self.bindings: Dict[int, str] = {}  # id(binding statement) -> what the writer is
        self.binding_todos: Dict[int, str] = {}
        self.use_guards: Dict[int, str] = {}  # id(statement) -> `writer is not None`
        self.covered: List[int] = []
        self.index = rl.Index(node)
        self.handles: Set[Tuple[int, str]] = set()  # (id(scope), name) of files kept open (os.devnull elsewhere)
        self.sinks: Set[int] = set()  # statements every rank runs that log: writes to those files, wandb.log
        self.reduced: Set[int] = set()  # statements that log a loss reduced over ranks
        self.dumped = rl.dumped_containers(self.index, self.qn)  # (id(scope), name) of containers dumped to a file
        self._writers(node)
        return True

    def _writers(self, module: cst.Module) -> None:
        """Find `writer = SummaryWriter(...)` in reach of the framework object and decide, from all its uses, whether
        it can be None on the other ranks."""
        for scope, owner, stmt, target, what in self._bindings(module):
            if owner is None:  # a module-level name: the module's statements and the functions that read the global
                nodes = [s for s in module.body if not isinstance(s, (cst.FunctionDef, cst.ClassDef))]
                nodes += [fn.body for fn in self.local_defs.values() if not _binds_locally(fn, target)]
            else:
                nodes = [owner]
            bad, statements = self._follow([(target, nodes)])
            if bad is not None:
                self.binding_todos[id(stmt)] = (
                    f"every rank makes {what} and writes the same files: make it on the main process only "
                    f"(`{target} = ... if {self._flag_code(owner)} else None`) and guard its uses; `{_code(bad)[:60]}` "
                    f"uses it in a way a guard cannot follow")
                continue
            self.bindings[id(stmt)] = what
            for s, test in statements:
                self.use_guards[id(s)] = test

    def _flag_code(self, owner) -> str:
        fw = f"self.{self.facts.fw}" if isinstance(owner, cst.ClassDef) else self.facts.fw
        return _code(guard_flag(self.ctx, "global", fw=fw))

    def _bindings(self, module: cst.Module):
        """(scope, body owner or None for a module global, statement, target, what) of writers made in reach."""
        fw_scopes = self.facts.fw_scopes()
        out = []

        def binding(stmt) -> Optional[Tuple[str, str]]:
            if not (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1
                    and isinstance(stmt.body[0], cst.Assign) and len(stmt.body[0].targets) == 1):
                return None
            value = stmt.body[0].value
            target = dotted(stmt.body[0].targets[0].target)
            if not (target and isinstance(value, cst.Call)):
                return None
            ctor = se.writer_ctor(value, self.qn, self.writer_classes)
            if ctor:
                return target, f"`{ctor}(...)`"
            return None

        def walk(body, scope, owner):
            for stmt in body:
                if isinstance(stmt, cst.FunctionDef):
                    continue
                if isinstance(stmt, cst.If) and se.rankish(stmt.test):
                    continue  # the script already chose the process
                b = binding(stmt)
                if b and scope in fw_scopes and "." not in b[0]:
                    out.append((scope, owner, stmt, b[0], b[1]))
                for inner in _blocks(stmt):
                    walk(inner, scope, owner)

        for stmt in module.body:
            if isinstance(stmt, cst.FunctionDef):
                walk(stmt.body.body, stmt.name.value, stmt)
            elif isinstance(stmt, cst.ClassDef):
                if stmt.name.value in self.facts.fw_classes:
                    for meth in stmt.body.body:
                        if isinstance(meth, cst.FunctionDef):
                            for s in m.findall(meth, m.SimpleStatementLine()):
                                b = binding(s)
                                if b and b[0].startswith("self.") and b[0].count(".") == 1:
                                    out.append((stmt.name.value, stmt, s, b[0], b[1]))
            elif is_main_guard(stmt):
                walk(stmt.body.body, MAIN_GUARD, None)
            else:
                walk([stmt], MODULE, None)
        return out

    def _follow(self, uses, depth: int = 0):
        """(a use no guard can follow or None, [(statement, its guard test)]) over the bodies and the functions the
        writer is handed to."""
        statements = []
        for target, bodies in uses:
            for body in bodies:
                v = _Uses(target, self.qn, self.local_defs, self.writer_classes)
                body.visit(v)
                if v.bad:
                    return v.bad[0], []
                statements += [(s, f"{target} is not None") for s in v.statements]
                for fname, where in v.handovers:
                    fn = self.local_defs[fname]
                    param = _param(fn, where)
                    if param is None or depth > 3:
                        return cst.Name(fname), []
                    bad, more = self._follow([(param, [fn.body])], depth + 1)
                    if bad is not None:
                        return bad, []
                    statements += more
        return None, statements

    # -- where the code already runs once
    def _cover(self, node) -> None:
        self.covered.append(id(node))

    def _uncover(self, node) -> None:
        if self.covered and self.covered[-1] == id(node):
            self.covered.pop()

    def visit_If(self, node: cst.If):
        result = super().visit_If(node)
        if not self.covered and (se.rankish(node.test) or se.caching_if(node, self.qn) or _writer_guard(node)):
            self._cover(node)
        return result

    def leave_If(self, original_node, updated_node):
        self._uncover(original_node)
        return super().leave_If(original_node, updated_node)

    def visit_With(self, node: cst.With):
        if self.covered:
            return True
        if any(first_block_item(i) for i in node.items):
            self._cover(node)
            return True
        opens = [i.item for i in node.items if isinstance(i.item, cst.Call) and se.open_mode(i.item, self.qn)]
        if opens and self.in_fw_scope() and self._write_only(node.body, {dotted(i.asname.name) for i in node.items
                                                                          if i.asname is not None}):
            if self._may_guard(node, opens[0], "the block that writes it"):
                metric = f"; {LOGS_METRICS}" if _logs_metric(node.body) else ""
                self.decided[id(node)] = (self._flag(), f"`with {_code(opens[0])}` only writes: it runs on the main "
                                                         f"process only{metric}")
            self._cover(node)
        return True

    def leave_With(self, original_node, updated_node):
        self._uncover(original_node)
        return updated_node

    # -- statements
    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine):
        if id(node) in self.binding_todos and self.in_fw_scope():
            self.todo(node, self.binding_todos[id(node)])
        if id(node) in self.use_guards and not self.covered:
            self.decided[id(node)] = (self.use_guards[id(node)], "")
        if not self.covered and self.in_fw_scope():
            self._sink(node)
        if self.covered or len(node.body) != 1:
            return True
        small = node.body[0]
        call = small.value if isinstance(small, cst.Expr) else None
        what = se.output_call(call, self.qn) if isinstance(call, cst.Call) else None
        if what is None:
            return True
        if not self.in_fw_scope():
            self._import_time(node, f"`{what}(...)`")
            return True
        if self._may_guard(node, call, f"`{what}(...)`"):
            self.decided[id(node)] = (self._flag(), f"`{what}(...)` writes a file: it runs on the main process only")
        return True

    def _sink(self, node: cst.SimpleStatementLine) -> None:
        """Note a statement every rank runs that logs (a write to a file kept open, `wandb.log`), and a csv writer
        made on such a file."""
        scope = id(self.index.scope(node))
        for small in node.body:
            if isinstance(small, cst.Assign) and len(small.targets) == 1 and isinstance(small.value, cst.Call) \
                    and (dotted(small.value.func) or "").endswith(("writer", "DictWriter")) and small.value.args \
                    and (scope, dotted(small.value.args[0].value)) in self.handles:
                self.handles.add((scope, dotted(small.targets[0].target)))
        if (scope, rl.filled(node)) in self.dumped:  # the stats dict the main process dumps: logged like a line
            self.sinks.add(id(node))
        for small in node.body:
            if isinstance(small, cst.Expr) and isinstance(small.value, cst.Call):
                func = small.value.func
                if "wandb.log" in self.qn(func) or (isinstance(func, cst.Attribute)
                                                    and (scope, dotted(func.value)) in self.handles):
                    self.sinks.add(id(node))

    def _kept_open(self, call: cst.Call) -> None:
        """Remember the name of a file the statement keeps open for writing (`log = open(...)`, `with open(...) as
        f:` that does more than write): writes to it run on every rank."""
        stmt = self._stmts[-1] if self._stmts else None
        scope = id(self.index.scope(stmt)) if stmt is not None else None
        if isinstance(stmt, cst.SimpleStatementLine) and isinstance(stmt.body[0], cst.Assign) \
                and stmt.body[0].value is call and len(stmt.body[0].targets) == 1:
            self.handles.add((scope, dotted(stmt.body[0].targets[0].target)))
        elif isinstance(stmt, cst.With):
            self.handles.update((scope, dotted(i.asname.name)) for i in stmt.items
                                if i.item is call and i.asname is not None)

    def _import_time(self, node, what: str) -> None:
        if self.scope == MODULE and not self._class_depth and self.facts.setup_scope not in (MODULE, None):
            self.todo(node, f"{what} runs at import time in every process, before `{self.facts.fw}` exists: move it "
                            f"after the framework object, under `if {self._flag()}:`")

    def _may_guard(self, node, call: cst.Call, what: str) -> bool:
        """Whether a write may run on the main process only; a TODO says why not."""
        if any(se.rankish(a.value) for a in call.args):
            return False  # one file per rank: every rank writes its own
        read = next((_code(a.value) for a in call.args if _code(a.value) in self.read_paths), None)
        if read is not None:
            self.todo(node, f"{what} writes {read}, which the script reads back: on the main process only, the other "
                            f"ranks would read it before it is written; guard it with `if {self._flag()}:` and add "
                            f"{self._wait()} before the read")
            return False
        hazard = self._hazard(node)
        if hazard:
            self.todo(node, f"{what} writes the same file on every rank; the main process alone should, but {hazard}")
            return False
        return True

    def _hazard(self, node) -> Optional[str]:
        """Why the write may not run on the main process alone (the rest of the TODO's sentence), or None."""
        flag = f"`if {self._flag()}:`"
        found = collectives_in(node, self.qn, self.fw, self.ctx.target)
        if found:
            return (f"it also calls `{dotted(found[0].func)}`, which every rank must reach: call that first, then "
                    f"write under {flag}")
        for call in m.findall(node, m.Call()):
            name = dotted(call.func) or ""
            head, _, rest = name.partition(".")
            if "torch.onnx.export" in self.qn(call.func) and call.args \
                    and (dotted(call.args[0].value) or "").split(".")[0] in self.models:
                return (f"it traces the set-up model, whose forward may synchronize buffers with the other ranks: "
                        f"export the plain module (`{self._plain(call.args[0].value)}`) under {flag}")
            if name.startswith(self.fw + ".") and not name.endswith((".print", ".is_global_zero")):
                return f"it also calls `{name}`, which every rank must run: call that first, then write under {flag}"
            if head in self.models and (not rest or rest.split(".")[-1] not in _SAFE_MODEL_METHODS):
                return (f"it also runs the set-up model (`{name}(...)`), whose forward may synchronize buffers with "
                        f"the other ranks: compute it on every rank first, then write under {flag}")
        return None

    def _plain(self, model: cst.BaseExpression) -> str:
        if self.ctx.target == "fabric":
            return f"{_code(model)}.module"
        return f"{self.fw}.unwrap_model({_code(model)})"

    def _write_only(self, body, handles: Set[str]) -> bool:
        """A block that does nothing but write: calls of its handles' methods, formatting, print, json.dump."""
        for stmt in body.body:
            if isinstance(stmt, cst.For):
                if not self._write_only(stmt.body, handles):
                    return False
                continue
            if not isinstance(stmt, cst.SimpleStatementLine):
                return False
            for small in stmt.body:
                if isinstance(small, cst.Assign) and isinstance(small.value, cst.Call) \
                        and (dotted(small.value.func) or "").endswith(("writer", "DictWriter")):
                    handles = handles | {dotted(t.target) for t in small.targets}
                    continue
                if isinstance(small, cst.Pass):
                    continue  # `with open(log, "w") as f: pass` empties the log
                if not (isinstance(small, cst.Expr) and isinstance(small.value, cst.Call)):
                    return False
            for call in m.findall(stmt, m.Call()):
                name = dotted(call.func) or ""
                head = name.split(".")[0]
                method = call.func.attr.value if isinstance(call.func, cst.Attribute) else None
                if head in handles or name in _WRITE_ONLY_FUNCS or method in _WRITE_ONLY_METHODS \
                        or self.qn(call.func) & {"json.dump", "json.dumps", "pickle.dump", "yaml.dump"}:
                    continue
                return False
        return True

    # -- expressions: the binding of a writer, a file kept open, wandb.init
    def leave_Assign(self, original_node: cst.Assign, updated_node: cst.Assign):
        stmt = self._stmts[-1] if self._stmts else None
        if stmt is None or id(stmt) not in self.bindings or not self.in_fw_scope() or self.covered:
            return updated_node
        what = self.bindings[id(stmt)]
        target = _code(original_node.targets[0].target)
        self.report(original_node, f"{what} is made on the main process only (None on the other ranks), and each use "
                                   f"of `{target}` runs under `if {target} is not None:`; {LOGS_METRICS}", True)
        return updated_node.with_changes(value=cst.IfExp(test=self._flag_node(), body=updated_node.value,
                                                         orelse=cst.Name("None")))

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call):
        if self.covered or not self.in_fw_scope() or any(id(s) in self.decided for s in self._stmts):
            return updated_node
        if se.is_wandb_init(original_node, self.qn):
            return self._wandb(original_node, updated_node)
        kind = se.open_mode(original_node, self.qn)
        if kind is None and se.log_file_arg(original_node, self.qn) is not None:
            kind = "log"
        if kind is None:
            return updated_node
        stmt = self._stmts[-1] if self._stmts else None
        if isinstance(stmt, cst.With) and save_through_handle(stmt, self.qn) is not None:
            return updated_node  # `with open(p, "wb") as f: torch.save(x, f)`: PTM136 guards the whole block
        path = se.log_file_arg(updated_node, self.qn) if kind == "log" else se.opened_path(updated_node)
        if path is None or (isinstance(path.value, cst.IfExp) and dotted(path.value.orelse) == "os.devnull") \
                or se.rankish(path.value):
            return updated_node
        if kind == "method":
            self.todo(original_node, f"`{_code(original_node)[:60]}` keeps a file open for writing on every rank: open "
                                     f"it on the main process only (`if {self._flag()}:`), or to os.devnull elsewhere")
            return updated_node
        if _code(path.value) in self.read_paths:
            self.todo(original_node, f"`{_code(path.value)}` is written here and read back: on the main process only, "
                                     f"the other ranks would read it before it is written; write it under "
                                     f"`if {self._flag()}:` and add {self._wait()} before the read")
            return updated_node
        self.ctx.imports.add("os")
        self._kept_open(original_node)
        self.report(original_node, f"`{_code(path.value)}` is opened for writing on the main process only; the "
                                   f"other ranks write to os.devnull; {LOGS_METRICS}", True)
        new_path = cst.IfExp(test=self._flag_node(), body=path.value, orelse=cst.parse_expression("os.devnull"))
        return updated_node.with_changes(args=[a.with_changes(value=new_path) if a is path else a
                                               for a in updated_node.args])

    def _wandb(self, original_node: cst.Call, updated_node: cst.Call):
        mode = next((a for a in updated_node.args if a.keyword is not None and a.keyword.value == "mode"), None)
        if mode is not None and isinstance(mode.value, cst.IfExp) and _code(mode.value.orelse) == '"disabled"':
            return updated_node
        value = cst.IfExp(test=self._flag_node(), body=mode.value if mode is not None else cst.Name("None"),
                          orelse=cst.SimpleString('"disabled"'))
        self.report(original_node, f"`wandb.init` logs on the main process only (mode \"disabled\" on the other "
                                   f"ranks); {LOGS_METRICS}", True)
        if mode is not None:
            return updated_node.with_changes(args=[a.with_changes(value=value) if a is mode else a
                                                   for a in updated_node.args])
        args = list(updated_node.args)
        if args:
            args[-1] = args[-1].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        return updated_node.with_changes(args=args + [cst.Arg(value, keyword=cst.Name("mode"),
                                                              equal=cst.AssignEqual(cst.SimpleWhitespace(""),
                                                                                    cst.SimpleWhitespace("")))])

    def _flag_node(self) -> cst.BaseExpression:
        return guard_flag(self.ctx, "global", fw=self.fw)

    def _flag(self) -> str:
        return _code(self._flag_node())

    def _wait(self) -> str:
        return f"`{self.fw}.barrier()`" if self.ctx.target == "fabric" else f"`{self.fw}.wait_for_everyone()`"

    # -- the blocks: consecutive statements with the same guard share one `if`
    def leave_IndentedBlock(self, original_node, updated_node):
        originals, updated = self._reduce(list(original_node.body), list(updated_node.body))
        body = self._regroup(originals, updated)
        body = body if body is not None else updated
        return updated_node.with_changes(body=body) if body != list(updated_node.body) else updated_node

    def leave_Module(self, original_node, updated_node):
        originals, updated = self._reduce(list(original_node.body), list(updated_node.body))
        body = self._regroup(originals, updated)
        body = body if body is not None else updated
        return updated_node.with_changes(body=body) if body != list(updated_node.body) else updated_node

    # -- a training loss logged: the mean over ranks, computed on every rank before the guard (_reduce_logged)
    def _reduce(self, originals: list, updated: list) -> Tuple[list, list]:
        """The block with `loss_mean = <reduce>(loss...)` before each run of consecutive log statements that log a
        loss every rank backpropagates, and those statements logging `loss_mean` instead; notes where it is not
        safe."""
        if len(originals) != len(updated) or not any(id(o) in self.decided or id(o) in self.sinks
                                                     for o in originals):
            return originals, updated
        logs = [id(o) in self.decided or id(o) in self.sinks for o in originals]
        out_o: list = []
        out_u: list = []
        i = 0
        while i < len(originals):
            if not logs[i]:
                out_o.append(originals[i])
                out_u.append(updated[i])
                i += 1
                continue
            j = i
            while j < len(originals) and logs[j]:
                j += 1
            reduced: Dict[str, str] = {}  # one reduction per loss for the run of consecutive log statements
            renames = [self._renames(o, reduced) for o in originals[i:j]]
            first = updated[i]
            for name, new in reduced.items():
                stmt = rl.reduction(self.ctx.target, self.fw, name, new).with_changes(leading_lines=first.leading_lines)
                first = first.with_changes(leading_lines=[])
                out_o.append(stmt)
                out_u.append(stmt)
            for k, (o, names) in enumerate(zip(originals[i:j], renames)):
                u = first if k == 0 else updated[i + k]
                out_o.append(o)
                out_u.append(u.visit(rl.Rename(names)) if names else u)
            i = j
        return out_o, out_u

    def _renames(self, stmt, reduced: Dict[str, str]) -> Dict[str, str]:
        """{loss: its reduced name} for the losses the statement logs where that is safe (added to `reduced`, the
        run's reductions); a note for each loss logged unreduced."""
        out = {}
        if id(stmt) not in self.index.where:
            return out
        for name in rl.logged_losses(stmt, writer_call=id(stmt) in self.use_guards):
            if not self.index.backwards(self.index.scope(stmt), name):
                continue  # not a loss of this function: the writer's own note says whose value it is
            reason = rl.why_not(self.index, stmt, name)
            new = next((n for n in (f"{name}_mean", f"{name}_mean_ranks") if n not in self.index.names), None)
            if reason is None and new is None:
                reason = f"`{name}_mean` is taken"
            if reason is not None:
                self.note(stmt, f"`{name}` logged here is the main process's own shard's value, not the mean over "
                                f"ranks: not reduced, as {reason}")
                continue
            new = reduced.setdefault(name, new)
            out[name] = new
            self.reduced.add(id(stmt))
            call = rl.reduction(self.ctx.target, self.fw, name, new)
            self.report(stmt, f"`{name}` logged here is the mean over ranks: `{_code(call).strip()}` runs on every "
                              f"rank before it (a collective: never under the main-process guard); on one process "
                              f"it is `{name}` itself", True)
        return out

    def _regroup(self, originals, updated) -> Optional[list]:
        if not self.decided or len(originals) != len(updated) or not any(id(o) in self.decided for o in originals):
            return None
        out: list = []
        run: list = []
        test = None
        for o, u in list(zip(originals, updated)) + [(None, None)]:
            d = self.decided.get(id(o)) if o is not None else None
            if run and (d is None or d[0] != test):
                out.append(self._guard([x for _, x in run], test))
                run = []
            if d is not None:
                run.append((o, u))
                test = d[0]
                if d[1]:  # a loss this statement logs reduced over ranks: the value is no longer rank 0's own
                    self.report(o, d[1].replace(f"; {LOGS_METRICS}", "") if id(o) in self.reduced else d[1], True)
                continue
            if o is not None:
                out.append(u)
        return out

    def _guard(self, stmts: list, test: str) -> cst.If:
        body = [stmts[0].with_changes(leading_lines=[])] + list(stmts[1:])
        return cst.If(test=cst.parse_expression(test), body=cst.IndentedBlock(body=body),
                      leading_lines=stmts[0].leading_lines)


def _blocks(stmt: cst.CSTNode) -> List[list]:
    """The statement lists nested right inside a compound statement (an `elif` chain included)."""
    out = []
    body = getattr(stmt, "body", None)
    if isinstance(body, cst.IndentedBlock):
        out.append(body.body)
    orelse = getattr(stmt, "orelse", None)
    if isinstance(orelse, cst.If):
        out.extend(_blocks(orelse))
    elif isinstance(orelse, cst.Else):
        out.append(orelse.body.body)
    final = getattr(stmt, "finalbody", None)
    if isinstance(final, cst.Finally):
        out.append(final.body.body)
    out.extend(h.body.body for h in getattr(stmt, "handlers", ()))
    return out


def _logs_metric(node: cst.CSTNode) -> bool:
    """The code writes a number computed in training: `.item()`, or a name like loss, acc, metric, score."""
    for n in m.findall(node, m.Name()):
        if any(w in n.value.lower() for w in ("item", "loss", "acc", "metric", "score", "stats")):
            return True
    return False


def _writer_guard(node: cst.If) -> bool:
    """`if writer is not None:` around calls of the writer's methods only (this rule's guard)."""
    test = node.test
    if not (isinstance(test, cst.Comparison) and len(test.comparisons) == 1
            and isinstance(test.comparisons[0].operator, cst.IsNot) and _is_none(test.comparisons[0].comparator)):
        return False
    target = dotted(test.left)
    return target is not None and node.orelse is None and all(
        isinstance(s, cst.SimpleStatementLine) and len(s.body) == 1 and isinstance(s.body[0], cst.Expr)
        and isinstance(s.body[0].value, cst.Call) and isinstance(s.body[0].value.func, cst.Attribute)
        and dotted(s.body[0].value.func.value) == target for s in node.body.body)


def _binds_locally(fn: cst.FunctionDef, name: str) -> bool:
    """The function has its own `name` (a parameter, or an assignment without `global name`)."""
    params = fn.params
    if any(p.name.value == name for p in params.params + params.posonly_params + params.kwonly_params):
        return True
    if any(n.name.value == name for g in m.findall(fn, m.Global()) for n in g.names):
        return False
    return any(dotted(t.target) == name for a in m.findall(fn, m.Assign()) for t in a.targets)


def _param(fn: cst.FunctionDef, where) -> Optional[str]:
    params = list(fn.params.posonly_params) + list(fn.params.params)
    if isinstance(where, int):
        return params[where].name.value if where < len(params) else None
    names = {p.name.value for p in params + list(fn.params.kwonly_params)}
    return where if where in names else None


def _is_model_or_data(cls: cst.ClassDef) -> bool:
    """A class built on nn.Module or Dataset: its instances are models or data, never made None."""
    return any(any(w in (_code(b.value)) for w in ("Module", "Dataset", "nn.", "DataLoader")) for b in cls.bases)


def _read_paths(module: cst.Module) -> Set[str]:
    """The code of every path the script reads: `open(p)`, `np.load(p)`, `torch.load(p)`, `pd.read_csv(p)`, ..."""
    found = set()
    for call in m.findall(module, m.Call()):
        name = dotted(call.func) or ""
        tail = name.rsplit(".", 1)[-1]
        if tail in ("load", "loadtxt", "read_csv", "imread", "read_text", "read_bytes") or (
                tail == "open" and se.open_mode(call, lambda n: set()) is None):
            arg = next((a for a in call.args if a.keyword is None), None)
            if arg is not None and not isinstance(arg.value, cst.Call):
                found.add(_code(arg.value))
    return found


class WriteOnce(Rule):
    code = "PTM151"
    name = "write-once"
    plain_scripts_only = True  # a script on the framework chose who writes
    triggers = ("open", "save", "summarywriter", "wandb", "export", "dump", "to_csv", "write_text", "write_bytes",
                "filehandler", "basicconfig",
                "imwrite", "imsave", "savemat", "logger", "writer")
    examples = [
        Example(
            before='import torch\nfrom torch.utils.tensorboard import SummaryWriter\nfrom torchvision.utils import save_image\n\n\ndef main():\n    model = torch.nn.Linear(4, 4)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    writer = SummaryWriter("runs/demo")\n    log = open("train_log.csv", "w")\n    for step in range(3):\n        out = model(torch.randn(8, 4))\n        loss = out.pow(2).mean()\n        loss.backward()\n        optimizer.step()\n        writer.add_scalar("loss", loss.item(), step)\n        log.write(f"{step},{loss.item()}\\n")\n        save_image(out.detach().view(8, 1, 2, 2), f"samples/{step}.png")\n    writer.close()\n    log.close()\n',
            fabric='import torch\nfrom torch.utils.tensorboard import SummaryWriter\nfrom torchvision.utils import save_image\nimport os\n\n\ndef main():\n    model = torch.nn.Linear(4, 4)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    writer = SummaryWriter("runs/demo") if fabric.is_global_zero else None\n    log = open("train_log.csv" if fabric.is_global_zero else os.devnull, "w")\n    for step in range(3):\n        out = model(torch.randn(8, 4))\n        loss = out.pow(2).mean()\n        loss.backward()\n        optimizer.step()\n        loss_mean = fabric.all_reduce(loss.detach().clone(), reduce_op=\"mean\")\n        if writer is not None:\n            writer.add_scalar("loss", loss_mean.item(), step)\n        log.write(f"{step},{loss_mean.item()}\\n")\n        if fabric.is_global_zero:\n            save_image(out.detach().view(8, 1, 2, 2), f"samples/{step}.png")\n    if writer is not None:\n        writer.close()\n    log.close()\n',
            accelerate='import torch\nfrom torch.utils.tensorboard import SummaryWriter\nfrom torchvision.utils import save_image\nimport os\n\n\ndef main():\n    model = torch.nn.Linear(4, 4)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    writer = SummaryWriter("runs/demo") if accelerator.is_main_process else None\n    log = open("train_log.csv" if accelerator.is_main_process else os.devnull, "w")\n    for step in range(3):\n        out = model(torch.randn(8, 4))\n        loss = out.pow(2).mean()\n        loss.backward()\n        optimizer.step()\n        loss_mean = accelerator.reduce(loss.detach(), reduction=\"mean\")\n        if writer is not None:\n            writer.add_scalar("loss", loss_mean.item(), step)\n        log.write(f"{step},{loss_mean.item()}\\n")\n        if accelerator.is_main_process:\n            save_image(out.detach().view(8, 1, 2, 2), f"samples/{step}.png")\n    if writer is not None:\n        writer.close()\n    log.close()\n',
        ),
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)

    def apply(self, wrapper, ctx):
        if ctx.facts.fw_exists:  # the script binds the object itself: code above that binding cannot use it
            return wrapper.module
        return super().apply(wrapper, ctx)
