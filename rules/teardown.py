"""PTM153 teardown: the process group the framework made is torn down when the script ends.

What it does: where this run created the framework object (PTM100) inside a function that sets up the models
(`main()`, `train(args)`), and the script has no teardown of its own (`destroy_process_group()`, kept by PTM130,
or `accelerator.end_training()`), adds at the end of the script's entry code, the last block that runs (the end of
`if __name__ == "__main__":`, or after the module's last statement), once that function has returned:

    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()

Why: the original made no process group, or tore its own down; the migrated script runs on several processes
and the framework leaves its group to the interpreter's exit. PyTorch asks for `destroy_process_group()` at the end
of every program that made one; without it NCCL warns at exit on every rank (Accelerate under torchrun, seen on a
GPU), and a group still in use while the interpreter exits can abort the process after its work is done
(pytorch/pytorch#190489).

What it does not fix (issue #13, kind 6): on CPU processes (gloo) about 1 in 50 runs of a migrated script, with this
teardown in place, still aborts at exit with "terminate called without an active exception" (1 of 40, 1 of 60 and
1 of 80 runs of repro eval_gathered_metric on Accelerate, 2 processes, 4 runs at a time on 2 cores). A core dump
shows a gloo worker thread (`ProcessGroupGloo::runLoop`) releasing a finished all-gather whose output tensor needs
the GIL while the main thread is already in `Py_FinalizeEx`: the thread is made to exit inside a `noexcept`
destructor and the C++ runtime terminates. The group outlives `destroy_process_group()` (the DDP wrapper still holds
it), so nothing in the script can join those threads before the interpreter exits short of skipping the exit itself
(`os._exit`), which the tool does not write into a user's script. Under torchrun the job is then marked failed.
The same race hangs a rank where the group is destroyed while its DDP model is still alive: the model freed
afterwards drops the group's last reference from the reducer, which pybind11 frees holding the GIL, and the group's
destructor waits for a worker thread that waits for the GIL. So no teardown is added where the models outlive it:
set up at module level or in the main guard (a flat script: its names live until the interpreter exits; the
teardown there hung 2 of 78 two-process runs in CI and about 1 in 5 under the test runner, which frees the
script's names before exit), returned to the entry code (`model = train()`), or bound as globals. A script that
destroys the group itself inside `main()` (kept by PTM130) has the same hazard (seen once in 28 repro runs; the
original under torchrun takes the same path).

Example: a script whose `main()` trains gets, at the end of `if __name__ == "__main__":` after `main()`, the
two lines above.

Fabric form: Fabric has no public teardown; lightning 2.6 registers its own at exit for NCCL only, and a group
already gone is skipped there. Accelerate form: the same two lines (`accelerator.end_training()` does the
same, but the object is often local to `main()`; accelerate 1.15 checks `is_initialized()` too).

Fix safety: safe: the check makes it a no-op on one process. Not added where the models outlive it (above), where
the entry's last statement ends the
process itself (`sys.exit(main())`: nothing after it runs), where the script's own teardown stays and always runs
(one under the script's `if distributed:` is skipped on one process, where the framework may still have made a
group: the teardown is added after it), or in a file that only defines things: where a sibling's function creates
the object (`fit` of trainer.py), the entry script is not changed for it.
"""
from __future__ import annotations

from typing import Optional

import libcst as cst

from migrator import matching as m
from migrator.analysis import MAIN_GUARD, MODULE, is_main_guard
from migrator.names import dotted
from migrator.rules.base import Context, Example, Rule, RuleTransformer
from migrator.rules.framework_object import _is_docstring, _is_import

TEARDOWN = "if torch.distributed.is_initialized():\n    torch.distributed.destroy_process_group()\n"
COMMENT = "# the framework's process group, torn down at the end as PyTorch asks (pt-migrate explain PTM153)"
_OWN = ("destroy_process_group", "end_training")
_EXITS = ("sys.exit", "exit", "quit", "os._exit")


def _is_definition(stmt: cst.BaseStatement) -> bool:
    """An import, a docstring, a def or a class: what framework_object.first_code_index skips too."""
    return isinstance(stmt, (cst.FunctionDef, cst.ClassDef)) or _is_import(stmt) or _is_docstring(stmt)


def _ends_process(stmt: cst.BaseStatement) -> bool:
    """`sys.exit(main())`, `raise SystemExit(...)`: what follows never runs."""
    if not isinstance(stmt, cst.SimpleStatementLine):
        return False
    for small in stmt.body:
        if isinstance(small, cst.Raise):
            return True
        if isinstance(small, cst.Expr) and isinstance(small.value, cst.Call) and dotted(small.value.func) in _EXITS:
            return True
    return False


class _Transformer(RuleTransformer):
    def edit(self, original_node: cst.Module) -> cst.Module:
        """The module with the teardown added (the rule looks at top-level statements only: no traversal)."""
        updated_node = original_node
        body = list(updated_node.body)
        last = next((i for i in range(len(body) - 1, -1, -1) if not _is_definition(body[i])), None)
        if last is None:
            return updated_node  # a file of definitions: the entry script is elsewhere
        stmt = body[last]
        teardown = cst.parse_statement(TEARDOWN).with_changes(
            leading_lines=[cst.EmptyLine(comment=cst.Comment(COMMENT))])
        where: Optional[cst.CSTNode] = original_node.body[last] if last < len(original_node.body) else stmt
        if is_main_guard(stmt) and isinstance(stmt.body, cst.IndentedBlock) and stmt.orelse is None:
            inner = list(stmt.body.body)
            if not inner or _ends_process(inner[-1]):
                return updated_node
            body[last] = stmt.with_changes(body=stmt.body.with_changes(body=inner + [teardown]))
        elif _ends_process(stmt) or isinstance(stmt, cst.If) and is_main_guard(stmt):
            return updated_node
        else:
            body.insert(last + 1, teardown.with_changes(leading_lines=[cst.EmptyLine()] + list(teardown.leading_lines)))
        self.ctx.imports.add("torch")
        self.report(where, "the framework's process group is torn down at the end, as PyTorch asks of every "
                           "program that made one (`pt-migrate explain PTM153`: what it does not fix)", True)
        return updated_node.with_changes(body=body)


class Teardown(Rule):
    code = "PTM153"
    name = "teardown"
    plain_scripts_only = True  # a script on the framework ends its own way
    examples = [
        Example(
            before='import torch\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n\n\nif __name__ == "__main__":\n    main()\n',
            fabric='import torch\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n\n\nif __name__ == "__main__":\n    main()\n    ' + COMMENT + '\n    if torch.distributed.is_initialized():\n        torch.distributed.destroy_process_group()\n',
            accelerate='import torch\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n\n\nif __name__ == "__main__":\n    main()\n    ' + COMMENT + '\n    if torch.distributed.is_initialized():\n        torch.distributed.destroy_process_group()\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)

    def apply(self, wrapper, ctx):
        if ctx.facts.fw_exists or not ctx.facts.setup_scope:
            return wrapper.module  # PTM100 created no object in this file
        if not _models_freed_before_end(wrapper.module, ctx.facts.setup_scope):
            return wrapper.module  # destroying the group before the set-up model is freed can hang at exit
        text = ctx.text or wrapper.module.code
        if any(word in text for word in _OWN) and _own_teardown_always_runs(wrapper.module):
            return wrapper.module  # the script's own teardown stays (PTM130)
        transformer = self.prepared(wrapper, ctx)
        updated = transformer.edit(wrapper.module)
        transformer.place_reports(wrapper.module)
        return updated


def _models_freed_before_end(module: cst.Module, setup_scope: str) -> bool:
    """The set-up models are gone when the entry code ends: they are locals of the function that sets them up (not
    module-level or main-guard code, whose names live until the interpreter exits), the function binds no global,
    and no call of it in the entry code keeps what it returns.

    Why it matters (torch 2.11-2.13, gloo): the DDP wrapper's reducer holds the process group. Destroyed while the
    model lives, the group's last reference goes with the model, later; pybind11 frees the reducer holding the GIL,
    and the group's destructor then joins a worker thread that waits for the GIL to free its last work item: a hang
    (fixtures mkdir_module_exists and schedule_flat, 2 of 78 two-process runs in CI, 1 in 5 runs here). With the
    model freed first, `destroy_process_group()` drops the last reference through the group's Python object,
    whose destructor releases the GIL (pytorch/pytorch#154976)."""
    if setup_scope in (MODULE, MAIN_GUARD):
        return False
    func = next((s for s in module.body if isinstance(s, cst.FunctionDef) and s.name.value == setup_scope), None)
    if func is None or m.findall(func, m.Global()):
        return False
    for stmt in module.body:
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            continue
        for assign in m.findall(stmt, m.Assign() | m.AnnAssign() | m.AugAssign() | m.NamedExpr()):
            if assign.value is not None and any(dotted(c.func) == setup_scope
                                                for c in m.findall(assign.value, m.Call())):
                return False
    return True


def _own_teardown_always_runs(module: cst.Module) -> bool:
    """The script tears the group down itself on every run: a `destroy_process_group()` / `end_training()` under no
    `if` but `is_initialized()` (PTM130's guard) and the main guard. One under the script's own flag (`if distributed:`, computed from
    the world size) is skipped on one process, where the framework may still have made a group (Accelerate under
    torchrun, Fabric with strategy="ddp"); the added teardown then runs after it, and does nothing when it ran."""
    found = []

    class _Find(cst.CSTVisitor):
        def __init__(self):
            self.tests = []

        def visit_If(self, node):
            if not is_main_guard(node):  # the entry's own block runs on every run
                self.tests.append(node.test)

        def leave_If(self, node):
            if not is_main_guard(node):
                self.tests.pop()

        def visit_Call(self, node):
            name = (dotted(node.func) or "").rsplit(".", 1)[-1]
            if name in _OWN:
                found.append(all(m.matches(t, m.Call(func=m.Attribute(attr=m.Name("is_initialized"))))
                                 for t in self.tests))

    module.visit(_Find())
    return any(found)
