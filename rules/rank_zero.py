"""PTM137 rank-zero: hand-written rank checks become the framework's, and collectives under them are found.

What it does: in the framework scope, a rank-0 test (`rank == 0`, `dist.get_rank() == 0`, `args.rank == 0`,
`global_rank == 0`, `int(os.environ["RANK"]) == 0`) becomes `fabric.is_global_zero` /
`accelerator.is_main_process`; a local one (`local_rank == 0`, `gpu == 0`) becomes
`fabric.local_rank == 0` / `accelerator.is_local_main_process` (`!= 0` gives the negation).
`dist.get_rank()` elsewhere becomes `fabric.global_rank` / `accelerator.process_index`, and
`dist.get_world_size()` becomes `fabric.world_size` / `accelerator.num_processes`. A collective (barrier,
all_reduce, all_gather, broadcast, `fabric.save`/`fabric.load`, `wait_for_everyone`, reduce, gather)
reachable only under a rank guard is moved out when it is a lone statement at the start of the guard body
(or at its end, reading nothing the guard computes); otherwise it gets a TODO.

Why: the framework knows the ranks of the processes it started; a hand-kept `rank` may be unset once
`init_process_group` and the spawn code are gone. A collective that only rank 0 reaches waits forever for
the other ranks: the run hangs.

Example: `if rank == 0:` -> `if fabric.is_global_zero:`; `if rank == 0: print(...); dist.barrier()` ->
the barrier follows the guard.

Fabric form: `fabric.is_global_zero`, `fabric.local_rank == 0`, `fabric.global_rank`, `fabric.world_size`.
Accelerate form: `accelerator.is_main_process`, `accelerator.is_local_main_process`,
`accelerator.process_index`, `accelerator.num_processes`.

Fix safety: safe for the rewrites (names follow the rank and world-size meaning, names like `rank`,
`global_rank`, `local_rank`, `gpu`); report-only for collectives that cannot be moved.
"""
from __future__ import annotations

from typing import List, Optional, Set, Tuple

import libcst as cst
from migrator import matching as m
from libcst.metadata import QualifiedNameProvider

from migrator.diagnostics import WARNING
from migrator.names import assigned_names, dotted, qualified_names
from migrator.rules.base import Example, Context, Rule, RuleTransformer, has_todo, with_todo

GLOBAL_RANK_NAMES = {"rank", "global_rank", "world_rank", "grank", "rank_id"}
LOCAL_RANK_NAMES = {"local_rank", "gpu", "gpu_id", "local_gpu", "lrank"}
ENV_RANKS = {"RANK": "global", "LOCAL_RANK": "local"}
DIST = "torch.distributed."
DIST_COLLECTIVES = {DIST + n for n in ("barrier", "all_reduce", "all_gather", "all_gather_object", "broadcast",
                                       "broadcast_object_list", "reduce", "gather", "gather_object", "scatter",
                                       "all_to_all", "reduce_scatter", "all_gather_into_tensor",
                                       "reduce_scatter_tensor", "monitored_barrier")}
FW_COLLECTIVES = {
    "fabric": {"barrier", "all_reduce", "all_gather", "broadcast", "save", "load"},
    "accelerate": {"wait_for_everyone", "reduce", "gather", "gather_for_metrics", "pad_across_processes",
                   "save_state", "load_state"},
}
ACCELERATE_COLLECTIVE_FUNCS = {"accelerate.utils.broadcast", "accelerate.utils.operations.broadcast",
                               "accelerate.utils.gather", "accelerate.utils.reduce",
                               "accelerate.utils.broadcast_object_list"}
FW_RANK_ATTRS = {
    # attribute -> (kind, compared with 0 means rank-0)
    "global_rank": "global", "process_index": "global", "local_rank": "local", "local_process_index": "local",
}
FW_ZERO_FLAGS = {"is_global_zero": "global", "is_main_process": "global", "is_local_main_process": "local"}


def _is_zero(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Integer) and node.value == "0"


def rank_source(expr: cst.BaseExpression, qn, fw: str) -> Optional[str]:
    """"global"/"local" when an expression reads a process rank (`rank`, `args.local_rank`, `dist.get_rank()`)."""
    name = dotted(expr)
    if name is not None:
        parts = name.split(".")
        if len(parts) == 2 and parts[0] == fw and parts[1] in FW_RANK_ATTRS:
            return FW_RANK_ATTRS[parts[1]]
        last = parts[-1]
        if last in LOCAL_RANK_NAMES or last.endswith("local_rank"):  # ddp_local_rank
            return "local"
        if last in GLOBAL_RANK_NAMES or last.endswith("_rank"):  # ddp_rank, node_rank is not one: see below
            return None if last in ("node_rank", "num_rank") else "global"
        return None
    if isinstance(expr, cst.Call):
        q = qn(expr.func)
        if DIST + "get_rank" in q and not expr.args:
            return "global"
        if DIST + "get_node_local_rank" in q:
            return "local"
        if dotted(expr.func) == "int" and len(expr.args) == 1:
            inner = expr.args[0].value
            key = None
            if isinstance(inner, cst.Subscript) and dotted(inner.value) in ("os.environ", "environ") \
                    and len(inner.slice) == 1 and isinstance(inner.slice[0].slice, cst.Index):
                key = inner.slice[0].slice.value
            elif isinstance(inner, cst.Call) and dotted(inner.func) in ("os.environ.get", "environ.get", "os.getenv") \
                    and inner.args:
                key = inner.args[0].value
            if isinstance(key, cst.SimpleString) and key.evaluated_value in ENV_RANKS:
                return ENV_RANKS[key.evaluated_value]
    return None


def rank_flags(module: cst.Module, qn, fw: str) -> dict:
    """Names that hold a rank-0 test: `master_process = ddp_rank == 0` -> {"master_process": "global"}."""
    flags = {}
    for a in m.findall(module, m.Assign(targets=[m.AssignTarget(m.Name())])):
        r = rank_test(a.value, qn, fw)
        if r and not r[1]:
            flags[a.targets[0].target.value] = r[0]
    return flags


def rank_test(test: cst.BaseExpression, qn, fw: str, flags: Optional[dict] = None) -> Optional[Tuple[str, bool]]:
    """(kind, negated) when `test` is a whole rank-0 check: `rank == 0`, `0 == rank`, `not rank`,
    `rank != 0`, `fabric.is_global_zero`, `accelerator.is_local_main_process`."""
    name = dotted(test)
    if name is not None:
        parts = name.split(".")
        if len(parts) >= 2 and ".".join(parts[:-1]) in (fw, f"self.{fw}") and parts[-1] in FW_ZERO_FLAGS:
            return FW_ZERO_FLAGS[parts[-1]], False
        if flags and name in flags:
            return flags[name], False
        return None
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        kind = rank_source(test.expression, qn, fw)
        if kind:
            return kind, False
        inner = rank_test(test.expression, qn, fw, flags)
        return (inner[0], not inner[1]) if inner else None
    if isinstance(test, cst.Comparison) and len(test.comparisons) == 1:
        op = test.comparisons[0].operator
        left, right = test.left, test.comparisons[0].comparator
        if not isinstance(op, (cst.Equal, cst.NotEqual)):
            return None
        side = right if _is_zero(left) else left if _is_zero(right) else None
        kind = rank_source(side, qn, fw) if side is not None else None
        if kind:
            return kind, isinstance(op, cst.NotEqual)
    return None


def and_operands(test: cst.BaseExpression) -> List[cst.BaseExpression]:
    if isinstance(test, cst.BooleanOperation) and isinstance(test.operator, cst.And) and not test.lpar:
        return and_operands(test.left) + and_operands(test.right)
    return [test]


def _single_process_or_rank(test, qn, fw, flags) -> Optional[str]:
    """The kind of `not <flag> or <rank-0 test>` (either order), else None."""
    if not (isinstance(test, cst.BooleanOperation) and isinstance(test.operator, cst.Or)):
        return None
    sides = [test.left, test.right]
    negated = [s for s in sides if isinstance(s, cst.UnaryOperation) and isinstance(s.operator, cst.Not)
               and isinstance(s.expression, (cst.Name, cst.Attribute))]
    ranked = [rank_test(s, qn, fw, flags) for s in sides if s not in negated]
    if len(negated) == 1 and len(ranked) == 1 and ranked[0] and not ranked[0][1]:
        return ranked[0][0]
    return None


def guard_parts(test: cst.BaseExpression, qn, fw: str,
                flags: Optional[dict] = None) -> Optional[Tuple[str, Optional[cst.BaseExpression]]]:
    """For a guard that runs its body on rank 0 only: (kind, the rest of an `and` condition or None).

    `if rank == 0:` -> ("global", None); `if epoch % 5 == 0 and rank == 0:` -> ("global", `epoch % 5 == 0`).
    `if not distributed or rank == 0:` (DETR, MAE, nanoGPT style) -> ("global", None): when the flag is off there
    is one process, whose rank is 0, so the body still runs on rank 0 only.
    """
    single = _single_process_or_rank(test, qn, fw, flags)
    if single is not None:
        return single, None
    ops = and_operands(test)
    kinds, rest = [], []
    for op in ops:
        r = rank_test(op, qn, fw, flags)
        if r and not r[1]:
            kinds.append(r[0])
        else:
            rest.append(op)
    if not kinds:
        return None
    kind = "global" if "global" in kinds else "local"
    if not rest:
        return kind, None
    expr = rest[0]
    for other in rest[1:]:
        expr = cst.BooleanOperation(left=expr, operator=cst.And(), right=other)
    return kind, expr


def is_collective(call: cst.Call, qn, fw: str, target: str) -> bool:
    q = qn(call.func)
    if q & DIST_COLLECTIVES or (target == "accelerate" and q & ACCELERATE_COLLECTIVE_FUNCS):
        return True
    name = dotted(call.func)
    if name and name.count(".") == 1:
        recv, attr = name.split(".")
        return recv == fw and attr in FW_COLLECTIVES[target]
    return False


def collectives_in(node: cst.CSTNode, qn, fw: str, target: str) -> List[cst.Call]:
    return [c for c in m.findall(node, m.Call()) if is_collective(c, qn, fw, target)]


def names_read(node: cst.CSTNode) -> Set[str]:
    return {n.value for n in m.findall(node, m.Name())}


def names_bound(stmt: cst.CSTNode) -> Set[str]:
    out: Set[str] = set()
    for a in m.findall(stmt, m.Assign() | m.AnnAssign() | m.AugAssign() | m.For() | m.With() | m.NamedExpr()):
        if isinstance(a, cst.Assign):
            targets = [t.target for t in a.targets]
        elif isinstance(a, (cst.AnnAssign, cst.AugAssign, cst.NamedExpr)):
            targets = [a.target]
        elif isinstance(a, cst.For):
            targets = [a.target]
        else:
            targets = [i.asname.name for i in a.items if i.asname]
        for t in targets:
            out.update(n.split(".")[0] for n in assigned_names(t))
    return out


def guard_flag(ctx: Context, kind: str, negated: bool = False, fw: Optional[str] = None) -> cst.BaseExpression:
    fw = fw or ctx.fw
    if ctx.target == "fabric":
        code = f"{fw}.is_global_zero" if kind == "global" else f"{fw}.local_rank {'!=' if negated else '=='} 0"
        if kind == "global" and negated:
            code = f"not {code}"
    else:
        code = f"{fw}.is_main_process" if kind == "global" else f"{fw}.is_local_main_process"
        if negated:
            code = f"not {code}"
    return cst.parse_expression(code)


def _header_comment(node: cst.If):
    body = node.body
    return body.header.comment if isinstance(body, cst.IndentedBlock) else None


def replace_if(updated: cst.If, before: List[cst.BaseStatement], body: List[cst.BaseStatement],
               after: List[cst.BaseStatement]):
    """The guard with its body replaced, between statements moved out of it; dropped when left empty."""
    out = list(before)
    header = _header_comment(updated)  # `if rank == 0:  # why` -> the comment above the moved statement
    if body:
        out.append(updated.with_changes(body=updated.body.with_changes(body=body)))
    elif (updated.leading_lines or header) and (before or after):  # keep the guard's comments
        first = (before or after)[0]
        moved = list(updated.leading_lines) + ([cst.EmptyLine(indent=True, comment=header)] if header else [])
        if before:
            out[0] = first.with_changes(leading_lines=moved + list(first.leading_lines))
        else:
            after = [first.with_changes(leading_lines=moved + list(first.leading_lines))] + list(after[1:])
    out.extend(after)
    if len(out) == 1:
        return out[0]
    return cst.FlattenSentinel(out)


class _Transformer(RuleTransformer):
    METADATA_DEPENDENCIES = RuleTransformer.METADATA_DEPENDENCIES + (QualifiedNameProvider,)

    def qn(self, node):
        return qualified_names(self, node)

    def visit_Module(self, node: cst.Module):
        self.flags = rank_flags(node, self.qn, self.facts.fw)  # `if master_process:` is a rank-0 guard too
        return True

    def leave_Comparison(self, original_node: cst.Comparison, updated_node: cst.Comparison):
        if not self.in_fw_scope():
            return updated_node
        r = rank_test(original_node, self.qn, self.fw)
        sides = [original_node.left, original_node.comparisons[0].comparator]
        if not r or any((dotted(x) or "").startswith(self.fw + ".") for x in sides):
            return updated_node
        kind, negated = r
        new = guard_flag(self.ctx, kind, negated, self.fw)
        self.report(original_node, f"rank check -> `{cst.Module([]).code_for_node(new)}`", True)
        return new.with_changes(lpar=updated_node.lpar, rpar=updated_node.rpar) if updated_node.lpar else new

    def leave_UnaryOperation(self, original_node, updated_node):
        if not self.in_fw_scope() or not isinstance(original_node.operator, cst.Not):
            return updated_node
        kind = rank_source(original_node.expression, self.qn, self.fw)
        if not kind or (dotted(original_node.expression) or "").startswith(self.fw + "."):
            return updated_node
        new = guard_flag(self.ctx, kind, fw=self.fw)
        self.report(original_node, "rank check -> the framework's", True)
        return new

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call):
        if not self.in_fw_scope() or original_node.args:
            return updated_node
        q = self.qn(original_node.func)
        attr = None
        if DIST + "get_rank" in q:
            attr = "global_rank" if self.ctx.target == "fabric" else "process_index"
        elif DIST + "get_world_size" in q:
            attr = "world_size" if self.ctx.target == "fabric" else "num_processes"
        if attr is None:
            return updated_node
        self.report(original_node, f"`{dotted(original_node.func)}()` -> `{self.fw}.{attr}`", True)
        return cst.Attribute(value=self.fw_expr(), attr=cst.Name(attr))

    def leave_If(self, original_node: cst.If, updated_node: cst.If):
        result = super().leave_If(original_node, updated_node)
        if not self.in_fw_scope():
            return result
        parts = guard_parts(original_node.test, self.qn, self.fw, getattr(self, 'flags', None))
        if parts is None:
            return result
        kind, rest = parts
        obody = list(original_node.body.body)
        body = list(result.body.body)
        if len(obody) != len(body):
            return result
        hazards = [i for i, s in enumerate(obody) if collectives_in(s, self.qn, self.fw, self.ctx.target)]
        if not hazards:
            return result
        before, after = [], []
        moved: Set[int] = set()
        if original_node.orelse is None:
            for i in hazards:
                s = obody[i]
                if not self._lone_collective(s):
                    continue
                others = [x for j, x in enumerate(obody) if j != i and j not in moved]
                if i == min(set(range(len(obody))) - moved):
                    moved.add(i)
                    before.append(self._wrap(body[i], rest))
                elif i == max(set(range(len(obody))) - moved) and not (
                        names_read(s) & set().union(*(names_bound(x) for x in others))):
                    moved.add(i)
                    after.append(self._wrap(body[i], rest))
        new_body = []
        for i, s in enumerate(body):
            if i in moved:
                what = collectives_in(obody[i], self.qn, self.fw, self.ctx.target)[0]
                self.report(obody[i], f"`{dotted(what.func)}` under a rank guard would hang the other ranks: "
                                      "moved out of the guard", True)
                continue
            if i in hazards and not has_todo(s, self.rule.code) and not has_todo(s, "PTM136"):
                what = collectives_in(obody[i], self.qn, self.fw, self.ctx.target)[0]
                msg = (f"`{dotted(what.func) or 'a collective'}` runs only under a rank guard: the other ranks never "
                       "reach it and the run hangs; call it on every rank")
                self.report(obody[i], msg, False, WARNING)
                s = with_todo(s, self.rule.code, msg)
            new_body.append(s)
        if not moved:
            return result.with_changes(body=result.body.with_changes(body=new_body))
        return replace_if(result, before, new_body, after)

    def _lone_collective(self, stmt: cst.BaseStatement) -> bool:
        """A simple statement that is one collective call, bare or assigned."""
        if not (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1):
            return False
        small = stmt.body[0]
        value = small.value if isinstance(small, (cst.Expr, cst.Assign)) else None
        return isinstance(value, cst.Call) and is_collective(value, self.qn, self.fw, self.ctx.target)

    def _wrap(self, stmt: cst.BaseStatement, rest: Optional[cst.BaseExpression]) -> cst.BaseStatement:
        stmt = stmt.with_changes(leading_lines=[l for l in stmt.leading_lines if l.comment is not None])
        if rest is None:
            return stmt
        return cst.If(test=rest, body=cst.IndentedBlock(body=[stmt]))


class RankZero(Rule):
    code = "PTM137"
    name = "rank-zero"
    triggers = ("rank", "gpu", "get_world_size", "is_global_zero", "is_main_process", "process_index")
    examples = [
        Example(
            before='import torch\nimport torch.distributed as dist\n\n\ndef main(local_rank):\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n    world_size = dist.get_world_size()\n    if dist.get_rank() == 0:\n        print(f"trained on {world_size} processes")\n        dist.barrier()\n    if local_rank == 0:\n        print("node done")\n',
            fabric='import torch\nimport torch.distributed as dist\n\n\ndef main(local_rank):\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n    world_size = fabric.world_size\n    if fabric.is_global_zero:\n        print(f"trained on {world_size} processes")\n    dist.barrier()\n    if fabric.local_rank == 0:\n        print("node done")\n',
            accelerate='import torch\nimport torch.distributed as dist\n\n\ndef main(local_rank):\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n    world_size = accelerator.num_processes\n    if accelerator.is_main_process:\n        print(f"trained on {world_size} processes")\n    dist.barrier()\n    if accelerator.is_local_main_process:\n        print("node done")\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)
