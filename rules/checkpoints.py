"""PTM136 checkpoints: `torch.save` / `torch.load` of training state become the framework's, rank-safe.

What it does: in the framework scope,
- `torch.save(state, path)` -> `fabric.save(path, state)` / `accelerator.save(state, path)`;
- Fabric: `fabric.save` contains a barrier and must run on every rank, so a save under a rank-0 guard
  (`if rank == 0:`, `if dist.get_rank() == 0:`, `if args.rank == 0:`, `if fabric.is_global_zero:`, ...) is
  taken out of the guard where it stands, together with the plain assignments that build its state: the guard
  is split around them, so every statement keeps its order (a reload after the save in the same guard still
  follows it; `fabric.save` ends with a barrier, so the file is complete by then). An emptied guard is dropped,
  and the rest of an `and` condition (`if epoch % 5 == 0 and rank == 0:`) is kept around the save. A save that
  cannot be moved gets a TODO; a helper called under a rank guard keeps its `torch.save` (rank 0 writes);
- Fabric, a save under a condition that can differ between ranks (rules/_divergent.py: a file-system check such as
  `os.path.exists` / `Path(p).exists()` / `glob.glob`, the clock, `os.environ`, a rank's own metric such as
  `if val_loss < best:` unless it comes from a reduction across ranks, an `except` handler, and names bound
  from these): it stays `torch.save`, under `if fabric.is_global_zero:`, and `fabric.barrier()` /
  `accelerator.wait_for_everyone()` follows the outermost such condition, where every rank comes past it, so a
  read of the file afterwards, in this module or another, finds it whole. A rank guard under (or `and`-joined
  with) such a condition keeps its `torch.save` rather than being moved out. Where no rank comes past a point
  (a branch that returns, a helper called under the condition) a later read of the file waits before it instead;
- inside `with fabric.rank_zero_first(...)` / `with accelerator.main_process_first():` (PTM150 puts
  `if not os.path.exists(cache): ... torch.save(data, cache)` there) a save stays `torch.save`: the main process
  writes first, the others then find the file, and the block's own barrier orders the read after it;
- `model.module.state_dict()` / `model.module.load_state_dict(...)` of a set-up model ->
  `model.state_dict()` (Fabric) / `accelerator.unwrap_model(model).state_dict()` (Accelerate);
- Accelerate: `model.state_dict()` and `model.load_state_dict(...)` of a set-up model go through
  `accelerator.unwrap_model(model)`, so keys carry no `module.` prefix;
- `torch.load(path, map_location=<built from a rank or GPU id>)` -> `map_location=fabric.device` (Fabric) /
  `map_location="cpu"` (Accelerate); on Accelerate a `map_location=device` that names `accelerator.device` becomes
  "cpu" too (a whole module is then moved with `.to(device)`);
- `torch.save(model, path)` of a set-up model pickles a whole module (`fabric.save` takes only a dict): Fabric
  `if fabric.is_global_zero: torch.save(model.module, path)` (the plain module), Accelerate
  `accelerator.save(accelerator.unwrap_model(model), path)`; a load of that file restores the plain class;
- `with open(path, "wb") as f:` whose body only `torch.save`s to `f` (and calls `f`'s own methods) goes whole under
  `if fabric.is_global_zero:` / `if accelerator.is_main_process:`, the save kept as `torch.save` on Fabric
  (`fabric.save` takes a path) and `accelerator.save(obj, f)` on Accelerate; a save through a handle of a block
  that does more gets a TODO. PTM151 leaves such blocks to this rule;
- a `torch.load` of a file that only the main process wrote (a whole-module pickle, any `accelerator.save`, under
  a rank guard or not, a `torch.save` kept in a helper called under a guard; the same path, or any path once such
  a file was written to one computed at run time) gets `fabric.barrier()` / `accelerator.wait_for_everyone()`
  before it, so no rank reads a file still being written (not when the load is itself under a rank guard, nor in
  a function called under one); a load through `with open(path, "rb") as f:` waits before that `with`, which
  would otherwise open the file before it is written;
- a model built again after the setup point (a new instance for inference) is plain: its `state_dict` /
  `load_state_dict` are left as written.

Why: `fabric.save` under a rank guard waits forever for the other ranks; so it does under any condition that
differs between ranks (rank 0 writes the cache, rank 1 then finds it and skips the branch: the preprocessing
cache of pytorch/examples hung on 2 CPU processes). `open(path, "wb")` truncates the file
on every rank that runs it: a rank opening it after rank 0 wrote leaves it empty for the reload (EOFError). Accelerate's prepared model is
`DistributedDataParallel`: its `state_dict()` keys gain `module.` and `model.module` does not exist in a
single-process run. A hand-written `{"cuda:0": f"cuda:{rank}"}` names devices the framework now chooses.
On Accelerate, `accelerator.device` is `cpu:0` in a multi-process CPU run and `torch.load` rejects that
location (checked with torch 2.13), so the checkpoint is read to "cpu" and `load_state_dict` copies it.

Example: `if rank == 0: torch.save(model.state_dict(), "ckpt.pt")` -> `fabric.save("ckpt.pt",
model.state_dict())` with no guard.

Fabric form: `fabric.save(path, state)` on every rank (writes on rank 0); `map_location=fabric.device`.
Accelerate form: `accelerator.save(state, path)` (writes on the main process, guard kept) with
`accelerator.unwrap_model(model).state_dict()`; `map_location="cpu"`.

Checked with 2 CPU processes: the file written by each migrated script loads into the original model class
with plain `load_state_dict`.

Fix safety: safe. Saves with extra arguments (pickle_module, ...) and loads of tensors used directly on
the device are reported, not guessed; a whole-module pickle inside an expression gets a TODO, as do a save under a
condition that differs between ranks that is not a statement of its own and a read of a file the main process
writes inside such a condition (a barrier there would hang). A checkpoint kept as `torch.save` on rank 0 is right
for DDP; a sharded strategy needs `fabric.save` on every rank (the note says so).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Set, Tuple

import libcst as cst
from libcst.metadata import QualifiedNameProvider

from migrator import matching as m
from migrator import side_effects as se
from migrator.diagnostics import WARNING
from migrator.names import dotted, qualified_names
from migrator.rules._divergent import Divergence
from migrator.rules._moves import is_device_arg, plain_after_setup, plain_models_here
from migrator.rules.base import Example, Context, Rule, RuleTransformer, guarded, has_todo, with_todo
from migrator.rules.download_first import first_block_item
from migrator.rules.rank_zero import (
    rank_flags,
    guard_flag,
    GLOBAL_RANK_NAMES,
    LOCAL_RANK_NAMES,
    guard_parts,
    names_bound,
    names_read,
    rank_source,
)

RANKISH = GLOBAL_RANK_NAMES | LOCAL_RANK_NAMES | {"device_id", "gpu_index"}


def _literal(code: str) -> bool:
    """A path written as a plain string literal (its code starts and ends with a quote, no f prefix)."""
    return code[:1] in "\"'" and code[-1:] in "\"'"


def save_through_handle(node: cst.With, qn) -> Optional[Tuple[cst.Call, str]]:
    """`with open(path, "wb") as f:` whose body only writes `f`: one or more `torch.save(obj, f)` and calls of `f`'s
    own methods (`f.flush()`). Returns (the `open(...)` call, the handle's name), or None.

    PTM136 owns such a block (PTM151 leaves it alone): the whole block goes under the main-process guard, since
    `open(..., "w")` truncates the file on every rank that runs it, even where only rank 0 calls `torch.save`."""
    if len(node.items) != 1 or node.items[0].asname is None or not isinstance(node.items[0].item, cst.Call):
        return None
    call, handle = node.items[0].item, dotted(node.items[0].asname.name)
    if handle is None or se.open_mode(call, qn) != "function" or se.opened_path(call) is None:
        return None
    saves = 0
    for stmt in node.body.body:
        if not isinstance(stmt, cst.SimpleStatementLine):
            return None
        for small in stmt.body:
            if not (isinstance(small, cst.Expr) and isinstance(small.value, cst.Call)):
                return None
            inner = small.value
            if "torch.save" in qn(inner.func):
                if _save_target(inner) != handle:
                    return None
                saves += 1
            elif not (isinstance(inner.func, cst.Attribute) and dotted(inner.func.value) == handle):
                return None
    return (call, handle) if saves else None


def _save_target(call: cst.Call) -> Optional[str]:
    """The code of the second argument of `torch.save(obj, f)` (positional or `f=`)."""
    positional = [a for a in call.args if a.keyword is None and not a.star]
    f = next((a for a in call.args if a.keyword is not None and a.keyword.value == "f"), None)
    f = f or (positional[1] if len(positional) > 1 else None)
    return cst.Module([]).code_for_node(f.value) if f is not None else None


def _swap_first_two(call: cst.Call) -> cst.Call:
    args = list(call.args)
    a, b = args[0], args[1]
    args[0] = b.with_changes(comma=a.comma)
    args[1] = a.with_changes(comma=b.comma)
    return call.with_changes(args=args)


class _BackToTorchSave(cst.CSTTransformer):
    """`fabric.save(path, state)` -> `torch.save(state, path)`: for a save that has to stay under a rank guard."""

    def __init__(self, fw: str):
        super().__init__()
        self.fw = fw

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:
        if dotted(updated_node.func) == f"{self.fw}.save" and len(updated_node.args) == 2 \
                and not any(a.keyword for a in updated_node.args):
            path, state = updated_node.args
            return updated_node.with_changes(func=cst.parse_expression("torch.save"), args=[
                state.with_changes(comma=path.comma), path.with_changes(comma=state.comma)])
        return updated_node


class _Transformer(RuleTransformer):
    METADATA_DEPENDENCIES = RuleTransformer.METADATA_DEPENDENCIES + (QualifiedNameProvider,)

    def qn(self, node):
        return qualified_names(self, node)

    def visit_Module(self, node: cst.Module):
        self.flags = rank_flags(node, self.qn, self.facts.fw)  # `if master_process:` is a rank-0 guard too
        # functions and methods called under a rank-0 guard: a barrier inside them would hang the other ranks
        from migrator import matching as m
        self.called_under_guard: Set[str] = set()
        for guard in m.findall(node, m.If(), metadata_resolver=self):
            if guard_parts(guard.test, self.qn, self.facts.fw, self.flags) or \
                    guard_parts(guard.test, self.qn, f"self.{self.facts.fw}", self.flags):
                for call in m.findall(guard.body, m.Call()):
                    name = dotted(call.func)
                    if name:
                        self.called_under_guard.add(name.rsplit(".", 1)[-1])
        self.defs: List[str] = []
        self.plain = plain_after_setup(node, self.facts)  # a model built again after setup: a plain instance
        self.saved_paths: Set[str] = set()  # paths written by the main process only: a load must wait for them
        self.whole_paths: Set[str] = set()  # paths of pickled whole modules
        self.guards = 0  # depth of rank-0 guards around the visit
        self.wait_before: Set[int] = set()  # ids of statements that load a file written by the main process
        self.save_blocks: Set[int] = set()  # ids of `with open(p, "wb") as f: torch.save(x, f)` guarded whole
        self.added_waits: Set[int] = set()  # ids of the barrier statements this pass added
        self.added_after: Set[int] = set()  # ids of the barriers added after a condition that differs between ranks
        self.rank0_blocks: Set[int] = set()  # such blocks that run on the main process only (guarded here or before)
        # conditions that can differ between ranks (`if not os.path.exists(p):`, the clock, a rank's own metric):
        # no collective under them. (id of the `if`/`try`, why) innermost last; functions called under one
        self.divergence = Divergence(node, self.qn)
        self.divergent: List[Tuple[int, str, bool]] = []  # (id, why, a statement of a block: a barrier may follow)
        self.elifs: Set[int] = set()
        self.barrier_after: Set[int] = set()  # ids of the outermost such statements a barrier follows
        self.called_divergent: Dict[str, str] = {}
        self.first_depth = 0  # inside `with fabric.rank_zero_first(...)` / `with accelerator.main_process_first():`
        self.called_in_first: Set[str] = set()
        for stmt in m.findall(node, m.If() | m.Try() | m.With(), metadata_resolver=self):
            why = self._divergent_test(stmt)
            first = isinstance(stmt, cst.With) and any(first_block_item(i) for i in stmt.items)
            if why or first:
                inside = [h.body for h in stmt.handlers] if isinstance(stmt, cst.Try) else [stmt]
                for call in [c for part in inside for c in m.findall(part, m.Call())]:
                    name = dotted(call.func)
                    if name and why:
                        self.called_divergent.setdefault(name.rsplit(".", 1)[-1], why)
                    elif name:
                        self.called_in_first.add(name.rsplit(".", 1)[-1])
        return True

    def _divergent_test(self, node: cst.CSTNode) -> Optional[str]:
        """Why the branches of an `if` (not a rank guard: PTM136 moves saves out of those) or the handlers of a
        `try` may run on some ranks and not on others, or None. (A `try` body runs on every rank until one raises;
        the training loop inside `try: ... except KeyboardInterrupt:` is not divergent.)"""
        if isinstance(node, cst.Try):
            return "an `except` handler (a rank whose I/O raises takes it, the others do not)" if node.handlers \
                else None
        if not isinstance(node, cst.If) or guard_parts(node.test, self.qn, self.facts.fw, self.flags) is not None \
                or guard_parts(node.test, self.qn, f"self.{self.facts.fw}", self.flags) is not None:
            return None
        return self.divergence.reason(node.test)

    def _divergent_here(self) -> Optional[str]:
        """Why the statement being visited may run on some ranks only: an enclosing condition, or a call of its
        function under one."""
        if self.divergent:
            return self.divergent[-1][1]
        return self._called_divergent()

    def _called_divergent(self) -> Optional[str]:
        return next((self.called_divergent[d] for d in reversed(self.defs) if d in self.called_divergent), None)

    def _in_first_block(self) -> bool:
        return bool(self.first_depth) or any(d in self.called_in_first for d in self.defs)

    def visit_Try(self, node: cst.Try):
        self._tries = getattr(self, "_tries", []) + [node]
        return True

    def visit_ExceptHandler(self, node: cst.ExceptHandler):
        # the barrier, if any, goes after the whole `try` statement: the handler is no statement of a block
        self.divergent.append((id(self._tries[-1]), self._divergent_test(self._tries[-1]), True))
        return True

    def leave_ExceptHandler(self, original_node, updated_node):
        self.divergent.pop()
        return updated_node

    def _barrier_after_condition(self, entry: Optional[Tuple[int, str, bool]] = None) -> bool:
        """Ask for `fabric.barrier()` / `accelerator.wait_for_everyone()` right after the outermost condition that
        can differ between ranks, where every rank comes past it: a statement of a block, which no branch leaves
        (`return`, `break`, ...), not under a rank guard or in a main-process-first block, in a function that is not
        called under one. Returns whether it will be there (a later read, in any module, then finds the file whole)."""
        outer_id, _, placeable = self.divergent[0] if self.divergent else entry
        node = self._stmts[next((i for i, s in enumerate(self._stmts) if id(s) == outer_id), 0)] if self._stmts else None
        if not placeable or node is None or id(node) != outer_id or self.guards or self._in_first_block() \
                or self._called_divergent() or any(d in self.called_under_guard for d in self.defs):
            return False
        if m.findall(node, m.Return() | m.Break() | m.Continue() | m.Raise()):
            return False
        self.barrier_after.add(outer_id)
        return True

    def _then_barrier(self, original_node, updated_node):
        """The statement, then the barrier `_barrier_after_condition` asked for (once: a rerun finds it there)."""
        if id(original_node) not in self.barrier_after or not isinstance(updated_node, cst.BaseStatement):
            return updated_node
        wait = "barrier" if self.ctx.target == "fabric" else "wait_for_everyone"
        stmt = cst.parse_statement(f"{self.fw}.{wait}()")
        self.report(original_node, f"`{self.fw}.{wait}()` after the condition: the main process wrote the file "
                                   f"under it, and every rank comes past here", True)
        self.added_after.add(id(stmt))
        return cst.FlattenSentinel([updated_node, stmt])

    def leave_Try(self, original_node, updated_node):
        self._tries.pop()
        return self._then_barrier(original_node, updated_node)

    def _pop_divergent(self, node) -> Optional[str]:
        if self.divergent and self.divergent[-1][0] == id(node):
            return self.divergent.pop()[1]
        return None

    def _code(self, node: cst.CSTNode) -> str:
        return cst.Module([]).code_for_node(node)

    def _models_here(self) -> Set[str]:
        return set(self.facts.models) - plain_models_here(self, self.plain)

    def visit_If(self, node: cst.If):
        parts = guard_parts(node.test, self.qn, self.fw, getattr(self, "flags", None))
        if parts is not None:
            self.guards += 1
            self._guard_ids = getattr(self, "_guard_ids", set()) | {id(node)}
            why = self.divergence.reason(parts[1]) if parts[1] is not None else None
        else:
            why = self._divergent_test(node)
        if why:
            self.divergent.append((id(node), why, id(node) not in self.elifs))
        if isinstance(node.orelse, cst.If):
            self.elifs.add(id(node.orelse))
        return super().visit_If(node)

    def leave_SimpleStatementLine(self, original_node, updated_node):
        if id(original_node) in getattr(self, "_guard_stmt", ()):
            # the whole-module pickle, written on rank 0 only
            return guarded(updated_node, cst.parse_expression(f"{self.fw}.is_global_zero"))
        return self._wait_first(original_node, updated_node)

    # -- `with open(path, "wb") as f: torch.save(x, f)`: the whole block on the main process
    def visit_With(self, node: cst.With):
        if any(first_block_item(i) for i in node.items):
            self.first_depth += 1
            self._first_ids = getattr(self, "_first_ids", set()) | {id(node)}
        if not self.in_fw_scope():
            return True
        if self.guards or any(d in self.called_under_guard for d in self.defs):
            if save_through_handle(node, self.qn) is not None:
                self.rank0_blocks.add(id(node))  # already on the main process only (a rerun, or the script's guard)
        else:
            found = save_through_handle(node, self.qn)
            if found is not None:
                hazard = self._hazard(node.body)
                if hazard is None:
                    self.save_blocks.add(id(node))
                    self.rank0_blocks.add(id(node))
                    self.guards += 1  # the saves inside run on the main process only
                else:
                    self.todo(found[0], f"`{self._code(found[0])}` truncates the file on every rank: the whole `with` "
                                        f"block should run under `if {self._code(self._flag())}:`, but {hazard}")
        return True

    def leave_With(self, original_node, updated_node):
        if id(original_node) in getattr(self, "_first_ids", ()):
            self.first_depth -= 1
        if id(original_node) in self.save_blocks:
            self.guards -= 1
            path = self._code(se.opened_path(original_node.items[0].item).value)
            self.saved_paths.add(path)  # a later read of it waits for the main process
            self.report(original_node, f"`with open({path}, ...)` writes the file through its handle: the whole block "
                                       f"runs on the main process only (opening it on every rank would truncate what "
                                       f"rank 0 wrote)", True)
            updated_node = guarded(updated_node, self._flag())
        return self._wait_first(original_node, updated_node)

    def _flag(self) -> cst.BaseExpression:
        return guard_flag(self.ctx, "global", fw=self.fw)

    def _hazard(self, body: cst.BaseSuite) -> Optional[str]:
        """Why a save block may not run on the main process alone (a call every rank must make), or None."""
        from migrator import matching as m
        for call in m.findall(body, m.Call()):
            name = dotted(call.func) or ""
            if name.startswith(self.fw + ".") and not name.endswith(".unwrap_model"):
                return f"it calls `{name}`, which every rank must reach: call it first, outside the block"
            if name in self._models_here():
                return f"it runs the set-up model (`{name}(...)`): compute that on every rank first"
        return None

    def _handle_with(self, handle: Optional[str]) -> Optional[cst.With]:
        """The enclosing `with open(path) as handle:` statement that binds `handle`, innermost first, or None."""
        for stmt in reversed(self._stmts):
            if isinstance(stmt, cst.With):
                for item in stmt.items:
                    if item.asname is not None and dotted(item.asname.name) == handle \
                            and isinstance(item.item, cst.Call) and dotted(item.item.func) == "open" \
                            and se.opened_path(item.item) is not None:
                        return stmt
        return None

    def _wait_first(self, original_node, updated_node):
        """The statement with `fabric.barrier()` / `accelerator.wait_for_everyone()` above it, when it loads (or
        opens for a load) a file that the main process alone wrote."""
        if id(original_node) not in self.wait_before:
            return updated_node
        wait = "barrier" if self.ctx.target == "fabric" else "wait_for_everyone"
        stmt = cst.parse_statement(f"{self.fw}.{wait}()").with_changes(leading_lines=updated_node.leading_lines)
        self.report(original_node, f"`{self.fw}.{wait}()` before the load: the main process alone wrote the file", True)
        self.added_waits.add(id(stmt))
        return cst.FlattenSentinel([stmt, updated_node.with_changes(leading_lines=[])])

    def leave_IndentedBlock(self, original_node, updated_node):
        body = self._one_wait(updated_node.body)
        return updated_node if body is updated_node.body else updated_node.with_changes(body=body)

    def leave_Module(self, original_node, updated_node):
        body = self._one_wait(updated_node.body)
        return updated_node if body is updated_node.body else updated_node.with_changes(body=body)

    def _bare(self, stmt) -> str:
        return self._code(stmt.with_changes(leading_lines=[])).strip()

    def _one_wait(self, body) -> list:
        """The statements without a wait added right after the same wait, or right before it (a rerun on this
        rule's own output)."""
        if not self.added_waits and not self.added_after:
            return body
        out = []
        for i, stmt in enumerate(body):
            if id(stmt) in self.added_waits and out and self._bare(out[-1]) == self._bare(stmt):
                continue
            if id(stmt) in self.added_after and i + 1 < len(body) and self._bare(body[i + 1]) == self._bare(stmt):
                continue
            out.append(stmt)
        return out if len(out) != len(body) else body

    def visit_FunctionDef(self, node: cst.FunctionDef):
        self.defs.append(node.name.value)
        return super().visit_FunctionDef(node)

    def leave_FunctionDef(self, original_node, updated_node):
        self.defs.pop()
        return super().leave_FunctionDef(original_node, updated_node)

    def _unwrapped(self, model: cst.BaseExpression) -> cst.BaseExpression:
        return cst.Call(func=cst.Attribute(value=self.fw_expr(), attr=cst.Name("unwrap_model")),
                        args=[cst.Arg(model)])

    # -- torch.save / torch.load / state_dict calls
    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call):
        if not self.in_fw_scope():
            return updated_node
        q = self.qn(original_node.func)
        if "torch.save" in q:
            return self._save(original_node, updated_node)
        if "torch.load" in q:
            return self._load(original_node, updated_node)
        func = updated_node.func
        if isinstance(func, cst.Attribute) and func.attr.value in ("state_dict", "load_state_dict"):
            return self._state_dict(original_node, updated_node)
        return updated_node

    def _save(self, original_node: cst.Call, updated_node: cst.Call):
        positional = [a for a in updated_node.args if a.keyword is None]
        keywords = {a.keyword.value: a for a in updated_node.args if a.keyword is not None}
        obj_arg = keywords.get("obj") or (positional[0] if positional else None)
        if self._pickles_module(original_node):
            return updated_node  # the unwrapped module, pickled by the main process (this rule's output)
        if obj_arg is not None and dotted(obj_arg.value) in self._models_here():
            return self._save_module(original_node, updated_node, obj_arg, keywords.get("f") or (
                positional[1] if len(positional) > 1 else None))
        if any(a.star for a in updated_node.args) or set(keywords) - {"obj", "f"} or len(updated_node.args) != 2:
            self.todo(original_node, "`torch.save` with extra arguments is not migrated: "
                      + (f"use `{self.fw}.save(path, state)` on every rank" if self.ctx.target == "fabric"
                         else f"use `{self.fw}.save(obj, path)`"))
            return updated_node
        path_node = keywords["f"].value if "f" in keywords else positional[-1].value
        opened = self._handle_with(self._code(path_node))
        if opened is not None and id(opened) in self.rank0_blocks:
            path = self._code(se.opened_path(opened.items[0].item).value)
            self.saved_paths.add(path)
            if self.ctx.target == "fabric":  # `fabric.save` takes a path and has a barrier: rank 0 writes the handle
                self.report(original_node, f"`torch.save` through the handle of {path} stays (the block runs on "
                                           f"rank 0 only; the set-up model's state_dict has plain keys)", True)
                return updated_node
            self.report(original_node, f"`torch.save` -> `{self.fw}.save`, through the handle of {path}", True)
            return updated_node.with_changes(func=cst.Attribute(value=self.fw_expr(), attr=cst.Name("save")))
        if opened is not None:
            self.todo(original_node, f"`torch.save` writes through a handle opened on every rank: open and write the "
                                     f"file under `if {self._code(self._flag())}:` only (`{self.fw}.save` takes a path)")
            return updated_node
        if self._in_first_block():
            # the block runs the body on the main process first and on the others after: a barrier inside
            # (fabric.save's) would wait for ranks held at the block's entry, and the block orders the read after it
            self.report(original_node, "`torch.save` stays inside the main-process-first block: the main process "
                                       "writes first, the other ranks then find the file", True)
            return updated_node
        why = self._divergent_here()
        if self.ctx.target == "fabric" and why and not self.guards:
            return self._save_on_rank_zero(original_node, updated_node, obj_arg.value, path_node, why)
        if self.ctx.target == "fabric" and any(d in self.called_under_guard for d in self.defs):
            self.todo(original_node, f"`{self.defs[-1]}` is called under a rank-0 guard: `{self.fw}.save` there would "
                                     f"hang the other ranks, so `torch.save` stays (right for DDP); for sharded "
                                     f"strategies call `{self.fw}.save(path, state)` on every rank")
            self.saved_paths.add(self._code(keywords["f"].value if "f" in keywords else positional[-1].value))
            return updated_node
        if self.ctx.target == "fabric":
            obj = keywords["obj"].value if "obj" in keywords else positional[0].value
            path = keywords["f"].value if "f" in keywords else positional[-1].value
            args = list(updated_node.args)
            if len(args) == 2 and not any(a.keyword for a in args):
                # the two arguments swap places, each keeping its own layout: a save turned back into torch.save
                # under a rank guard (_BackToTorchSave) then comes out as it went in (a second run changes nothing)
                args = [args[1].with_changes(comma=args[0].comma), args[0].with_changes(comma=args[1].comma)]
            else:
                args = [cst.Arg(path, comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))), cst.Arg(obj)]
            call = updated_node.with_changes(func=cst.Attribute(value=self.fw_expr(), attr=cst.Name("save")),
                                             args=args)
            self.report(original_node, f"`torch.save(state, path)` -> `{self.fw}.save(path, state)`", True)
            return call
        self.report(original_node, f"`torch.save` -> `{self.fw}.save`, written once by the main process", True)
        path = keywords["f"].value if "f" in keywords else positional[-1].value
        if not (why and self.divergent and self._barrier_after_condition()):  # else every rank waits after the `if`
            self.saved_paths.add(self._code(path))  # a later load of it outside a rank guard waits for the main process
        return updated_node.with_changes(func=cst.Attribute(value=self.fw_expr(), attr=cst.Name("save")))

    def _save_on_rank_zero(self, original_node, updated_node, obj, path, why: str):
        """Fabric: a save under a condition that can differ between ranks stays `torch.save`, under
        `if fabric.is_global_zero:` (`fabric.save` ends with a barrier: a rank that skips the branch never reaches
        it, and the ranks that entered wait forever). A later read of the file waits behind a barrier outside the
        condition (`_load`)."""
        stmt = self._stmts[-1] if self._stmts else None
        if not (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 and isinstance(stmt.body[0], cst.Expr)
                and stmt.body[0].value is original_node):
            self.todo(original_node, f"`torch.save` runs under {why}, which can differ between ranks: `{self.fw}.save` "
                                     f"(a barrier) would hang there; write it under `if {self.fw}.is_global_zero:`")
            return updated_node
        self._guard_stmt = getattr(self, "_guard_stmt", set()) | {id(stmt)}
        if not (self.divergent and self._barrier_after_condition()):
            self.saved_paths.add(self._code(path))  # a later read in this module waits for it
        state = self._training_state(obj)
        self.report(original_node, f"`torch.save` stays, on rank 0 (`if {self.fw}.is_global_zero:`): it runs under "
                                   f"{why}, which can differ between ranks, and `{self.fw}.save` ends with a barrier "
                                   f"that the ranks skipping the branch never reach; a later read waits behind "
                                   f"`{self.fw}.barrier()` after the condition"
                    + (f"; a sharded strategy needs `{self.fw}.save` on every rank: decide the condition on rank 0 and "
                       "broadcast it" if state else ""), True)
        return updated_node

    def _training_state(self, obj: cst.BaseExpression) -> bool:
        """The saved object is (or holds) a model's or an optimizer's state, not data."""
        code = self._code(obj)
        names = {n.value for n in m.findall(obj, m.Name())}
        return "state_dict" in code or bool(names & (set(self.facts.models) | set(self.facts.optimizers))) or \
            any(w in code.lower() for w in ("state", "ckpt", "checkpoint"))

    def _save_module(self, original_node, updated_node, obj_arg, path_arg):
        """`torch.save(model, path)` pickles the whole module: the unwrapped one, written by the main process only
        (`fabric.save` takes a dict, so it is not used)."""
        model = obj_arg.value
        opened = self._handle_with(self._code(path_arg.value)) if path_arg is not None else None
        if opened is not None and id(opened) not in self.rank0_blocks:
            self.todo(original_node, f"`torch.save({dotted(model)}, ...)` writes through a handle opened on every rank: "
                                     f"open and write the file under `if {self._code(self._flag())}:` only")
            return updated_node
        if self.ctx.target == "fabric":
            unwrapped = cst.Attribute(value=model, attr=cst.Name("module"))
            call = updated_node.with_changes(args=[a.with_changes(value=unwrapped) if a is obj_arg else a
                                                   for a in updated_node.args])
        else:
            call = updated_node.with_changes(
                func=cst.Attribute(value=self.fw_expr(), attr=cst.Name("save")),
                args=[a.with_changes(value=self._unwrapped(model)) if a is obj_arg else a for a in updated_node.args])
        if path_arg is not None:
            path = self._code(se.opened_path(opened.items[0].item).value if opened is not None else path_arg.value)
            self.whole_paths.add(path)
            self.saved_paths.add(path)
        if self.ctx.target == "fabric":
            stmt = self._stmts[-1] if self._stmts else None
            if self.guards:
                self.report(original_node, f"`torch.save({dotted(model)})` pickles the whole module: "
                                           f"`{dotted(model)}.module` is the plain one", True)
                return call
            if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 and isinstance(stmt.body[0], cst.Expr) \
                    and stmt.body[0].value is original_node:
                self._guard_stmt = getattr(self, "_guard_stmt", set()) | {id(stmt)}
                self.report(original_node, f"`torch.save({dotted(model)})` pickles the whole module: the plain "
                                           f"`{dotted(model)}.module`, written on rank 0 (`fabric.save` takes a dict)",
                            True)
                return call
            self.todo(original_node, f"`torch.save({dotted(model)}, ...)` pickles the whole module on every rank: "
                                     f"pickle `{dotted(model)}.module` under `if {self.fw}.is_global_zero:`")
            return updated_node
        self.report(original_node, f"`torch.save({dotted(model)})` pickles the whole module: the unwrapped one, "
                                   f"written once by the main process", True)
        return call

    def _load(self, original_node: cst.Call, updated_node: cst.Call):
        path = original_node.args[0] if original_node.args and original_node.args[0].keyword is None else next(
            (a for a in original_node.args if a.keyword is not None and a.keyword.value == "f"), None)
        path_code = self._code(path.value) if path is not None else None
        where = self._stmts[-1] if self._stmts else None
        opened = self._handle_with(path_code)
        if opened is not None:  # `with open(path, "rb") as f: torch.load(f)`: the wait goes before the `with`
            where, path_code = opened, self._code(se.opened_path(opened.items[0].item).value)
        # the same path, or any path when the main process wrote to one computed at run time (f"model_{epoch}.pt")
        written = path_code in self.saved_paths or any(not _literal(p) for p in self.saved_paths)
        under_guard = self.guards or any(d in self.called_under_guard for d in self.defs) or self._in_first_block()
        why = self._divergent_here()
        if written and not under_guard and where is not None and why:
            self.todo(original_node, f"reads a file the main process writes, under {why}, which can differ between "
                                     f"ranks: a barrier here would hang the ranks that skip it; read the file after "
                                     f"the condition, behind `{self.fw}.{'barrier' if self.ctx.target == 'fabric' else 'wait_for_everyone'}()`")
        elif written and not under_guard and where is not None:
            self.wait_before.add(id(where))
        whole = path_code in self.whole_paths or any(
            a.keyword is not None and a.keyword.value == "weights_only" and dotted(a.value) == "False"
            for a in original_node.args)
        if self.ctx.target == "accelerate":
            # accelerator.device is `cpu:0` in a multi-process CPU run, which torch.load rejects: read to the CPU;
            # load_state_dict copies onto the model's device, a whole module is moved there
            for i, a in enumerate(original_node.args):
                is_ml = (a.keyword is not None and a.keyword.value == "map_location") or (a.keyword is None and i == 1)
                if is_ml and not self._rank_built(a.value) and is_device_arg(a.value, self.facts) \
                        and not isinstance(a.value, cst.SimpleString):
                    args = list(updated_node.args)
                    args[i] = args[i].with_changes(value=cst.SimpleString('"cpu"'))
                    new = updated_node.with_changes(args=args)
                    if whole:
                        self.report(original_node, f"`map_location` -> \"cpu\", then `.to({self._code(a.value)})`: "
                                                   f"`{self.fw}.device` may be `cpu:0`, which torch.load rejects", True)
                        return cst.Call(func=cst.Attribute(value=new, attr=cst.Name("to")), args=[cst.Arg(a.value)])
                    self.report(original_node, f"`map_location` -> \"cpu\": `{self.fw}.device` may be `cpu:0`, which "
                                               f"torch.load rejects; load_state_dict copies onto the device", True)
                    return new
        for i, a in enumerate(original_node.args):
            is_ml = (a.keyword is not None and a.keyword.value == "map_location") or (a.keyword is None and i == 1)
            if not is_ml or not self._rank_built(a.value):
                continue
            if self.ctx.target == "fabric":
                new = cst.Attribute(value=self.fw_expr(), attr=cst.Name("device"))
            else:
                new = cst.SimpleString('"cpu"')
            args = list(updated_node.args)
            args[i] = args[i].with_changes(value=new)
            self.report(original_node, f"`map_location` built from a rank -> `{cst.Module([]).code_for_node(new)}`",
                        True)
            return updated_node.with_changes(args=args)
        return updated_node

    def _rank_built(self, expr: cst.BaseExpression) -> bool:
        """A map_location that names devices by rank: f"cuda:{rank}", {"cuda:0": f"cuda:{local_rank}"}, ..."""
        from migrator import matching as m
        for node in m.findall(expr, m.Name() | m.Attribute() | m.Call()):
            if isinstance(node, (cst.Name, cst.Attribute)):
                name = dotted(node)
                if name and name.split(".")[-1] in RANKISH and not name.startswith(self.fw + "."):
                    return True
            elif rank_source(node, self.qn, self.fw) or {"torch.cuda.current_device"} & self.qn(node.func):
                return True
        return False

    def _state_dict(self, original_node: cst.Call, updated_node: cst.Call):
        func = updated_node.func
        recv = func.value
        name = dotted(recv)
        models = self._models_here()
        if name is None:
            return updated_node
        if name.endswith(".module") and name[: -len(".module")] in models:
            model = recv.value
            if self.ctx.target == "fabric":
                new_recv = model
            else:
                new_recv = self._unwrapped(model)
            self.report(original_node, f"`{name}.{func.attr.value}` -> "
                                       f"`{cst.Module([]).code_for_node(new_recv)}.{func.attr.value}`", True)
            return updated_node.with_changes(func=func.with_changes(value=new_recv))
        if self.ctx.target == "accelerate" and name in models:
            new_recv = self._unwrapped(recv)
            self.report(original_node, f"`{name}.{func.attr.value}` -> `{self.fw}.unwrap_model({name})."
                                       f"{func.attr.value}`: no `module.` prefix in the keys", True)
            return updated_node.with_changes(func=func.with_changes(value=new_recv))
        return updated_node

    # -- Fabric: a save under a rank guard leaves the guard
    def leave_If(self, original_node: cst.If, updated_node: cst.If):
        if id(original_node) in getattr(self, "_guard_ids", ()):
            self.guards -= 1
        own = self._pop_divergent(original_node)
        return self._then_barrier(original_node, self._leave_if(original_node, updated_node, own))

    def _leave_if(self, original_node: cst.If, updated_node: cst.If, own: Optional[str]):
        result = super().leave_If(original_node, updated_node)
        if self.ctx.target != "fabric" or not self.in_fw_scope() or not isinstance(result, cst.If):
            return result
        parts = guard_parts(original_node.test, self.qn, self.fw, getattr(self, 'flags', None))
        if parts is None:
            return result
        _, rest = parts
        obody, body = list(original_node.body.body), list(result.body.body)
        if len(obody) != len(body):
            return result
        why = self._divergent_here() or own
        if why:
            if not any(self._has_save(s) for s in obody):
                return result
            if self.divergent:  # an enclosing condition: the barrier follows the outermost one
                after = self._barrier_after_condition()
            else:  # the guard's own `and` condition (`if rank == 0 and not os.path.exists(p):`): it follows the guard
                after = bool(own) and self._barrier_after_condition((id(original_node), own,
                                                                     id(original_node) not in self.elifs))
            return self._keep_under_guard(original_node, result, why, after)
        saves = [i for i, s in enumerate(obody) if self._is_save_stmt(s)]
        nested = [i for i, s in enumerate(obody) if i not in saves and self._has_save(s)
                  and not (isinstance(s, cst.With) and save_through_handle(s, self.qn))]  # rank 0 writes the handle
        hoist: Set[int] = set()
        ok = original_node.orelse is None and bool(saves)
        if ok:
            needed: Set[str] = set()
            for i in saves:
                hoist.add(i)
                needed |= self._reads(obody[i])
            for j in range(max(saves) - 1, -1, -1):
                if j in hoist:
                    continue
                bound = names_bound(obody[j])
                if bound & needed:
                    if not self._plain_assignment(obody[j]):
                        ok = False
                        break
                    hoist.add(j)
                    needed |= self._reads(obody[j])
        todo_at = set(nested) | (set() if ok else set(saves))
        marked = []
        for i, s in enumerate(body):
            if i in todo_at and not (ok and i in hoist):
                # it cannot leave the guard: `fabric.save`'s barrier would wait there for ranks that never come,
                # so the save stays `torch.save` (rank 0 writes; the set-up module's state_dict has plain keys)
                s = s.visit(_BackToTorchSave(self.fw))
            if i in todo_at and not (ok and i in hoist) and not has_todo(s, self.rule.code):
                msg = (f"`torch.save` stays under the rank guard (rank 0 writes): `{self.fw}.save` has a barrier "
                       "and must run on every rank; take the save out of the guard to use it")
                self.report(obody[i], msg, False, WARNING)
                s = with_todo(s, self.rule.code, msg)
            marked.append(s)
        if not ok or not hoist:
            return result.with_changes(body=result.body.with_changes(body=marked))
        self.report(obody[saves[0]], f"`{self.fw}.save` moved out of the rank guard: it runs on every rank and "
                                     "writes on rank 0; the guard's other statements keep their order around it", True)
        return self._split(result, marked, hoist, rest)

    def _keep_under_guard(self, original_node: cst.If, result: cst.If, why: str, after: bool) -> cst.If:
        """A rank guard under (or joined by `and` with) a condition that can differ between ranks: its saves stay
        `torch.save` on rank 0 where they are; moved out, `fabric.save`'s barrier would sit under that condition."""
        body = []
        for o, s in zip(original_node.body.body, result.body.body):
            saves = [c for c in m.findall(o, m.Call()) if self._is_save(c)]
            if saves:
                s = s.visit(_BackToTorchSave(self.fw))
                for call in saves:
                    path = _save_target(call) if "torch.save" in self.qn(call.func) else (
                        self._code(call.args[0].value) if call.args else None)
                    if path and not after:
                        self.saved_paths.add(path)  # no barrier after the condition: a later read waits instead
                    self.report(call, f"`torch.save` stays under the rank guard (rank 0 writes): the guard is under "
                                      f"{why}, which can differ between ranks, so `{self.fw}.save`'s barrier would "
                                      f"hang the ranks that skip it", True)
            body.append(s)
        return result.with_changes(body=result.body.with_changes(body=body))

    def _split(self, guard: cst.If, body: List[cst.BaseStatement], hoist: Set[int], rest):
        """The guard's statements in their order: runs of statements that stay are guarded (one `if` per run), the
        save and what builds its state run on every rank between them (under the rest of an `and` condition).
        A reload after the save in the same guard so still follows it (`fabric.save` ends with a barrier)."""
        runs: List[tuple] = []  # (hoisted?, statements)
        for i, stmt in enumerate(body):
            if runs and runs[-1][0] == (i in hoist):
                runs[-1][1].append(stmt)
            else:
                runs.append((i in hoist, [stmt]))
        out: List[cst.BaseStatement] = []
        header = guard.body.header if isinstance(guard.body, cst.IndentedBlock) else None
        for hoisted, stmts in runs:
            if hoisted:
                stmts[0] = stmts[0].with_changes(leading_lines=[l for l in stmts[0].leading_lines if l.comment])
                if rest is not None:
                    stmts = [cst.If(test=rest, body=cst.IndentedBlock(body=stmts))]
                if not out:  # the guard's own comments go above what now comes first
                    comment = header.comment if header is not None else None
                    lines = list(guard.leading_lines) + ([cst.EmptyLine(indent=True, comment=comment)] if comment else [])
                    stmts[0] = stmts[0].with_changes(leading_lines=lines + list(stmts[0].leading_lines))
                out.extend(stmts)
            elif not out:
                out.append(guard.with_changes(body=guard.body.with_changes(body=stmts)))
            else:  # a second copy of the guard: no blank lines or comments of its own
                block = guard.body.with_changes(body=stmts, header=cst.TrailingWhitespace())
                out.append(guard.with_changes(leading_lines=[], body=block))
        return out[0] if len(out) == 1 else cst.FlattenSentinel(out)

    def _is_save(self, call: cst.CSTNode) -> bool:
        return isinstance(call, cst.Call) and not self._pickles_module(call) and (
            "torch.save" in self.qn(call.func) or dotted(call.func) == f"{self.fw}.save")

    def _pickles_module(self, call: cst.Call) -> bool:
        """`torch.save(model.module, path)` of a set-up model: a whole module, written by rank 0 (not a state)."""
        if "torch.save" not in self.qn(call.func):
            return False
        obj = next((a.value for a in call.args if a.keyword is not None and a.keyword.value == "obj"),
                   call.args[0].value if call.args and call.args[0].keyword is None else None)
        name = dotted(obj) if obj is not None else None
        return bool(name) and name.endswith(".module") and name[: -len(".module")] in set(self.facts.models)

    def _is_save_stmt(self, stmt: cst.BaseStatement) -> bool:
        return (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1
                and isinstance(stmt.body[0], cst.Expr) and self._is_save(stmt.body[0].value))

    def _has_save(self, stmt: cst.BaseStatement) -> bool:
        from migrator import matching as m
        return any(self._is_save(c) for c in m.findall(stmt, m.Call()))

    def _plain_assignment(self, stmt: cst.BaseStatement) -> bool:
        return isinstance(stmt, cst.SimpleStatementLine) and all(
            isinstance(s, (cst.Assign, cst.AnnAssign)) for s in stmt.body)

    def _reads(self, stmt: cst.BaseStatement) -> Set[str]:
        return names_read(stmt)


class Checkpoints(Rule):
    code = "PTM136"
    name = "checkpoints"
    triggers = ("save", "load(", "load ", "state_dict")  # not "load": every `loader` has it
    examples = [
        Example(
            before='import torch\nimport torch.distributed as dist\n\n\ndef main(rank):\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n    if rank == 0:\n        print("saving")\n        state = {"model": model.module.state_dict(), "optimizer": optimizer.state_dict()}\n        torch.save(state, "ckpt.pt")\n    state = torch.load("ckpt.pt", map_location={"cuda:0": f"cuda:{rank}"})\n    model.module.load_state_dict(state["model"])\n',
            fabric='import torch\n\n\ndef main(rank):\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n    if rank == 0:\n        print("saving")\n    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}\n    fabric.save("ckpt.pt", state)\n    state = torch.load("ckpt.pt", map_location=fabric.device)\n    model.load_state_dict(state["model"])\n',
            accelerate='import torch\n\n\ndef main(rank):\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n    if rank == 0:\n        print("saving")\n        state = {"model": accelerator.unwrap_model(model).state_dict(), "optimizer": optimizer.state_dict()}\n        accelerator.save(state, "ckpt.pt")\n    accelerator.wait_for_everyone()\n    state = torch.load("ckpt.pt", map_location="cpu")\n    accelerator.unwrap_model(model).load_state_dict(state["model"])\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
