"""PTM111 main-guard: training at module level with a spawn-based strategy is reported.

What it does: when the options ask for a strategy that starts processes by spawning (`ddp_spawn`,
`ddp_notebook`, ...) and the script sets up its training at module level or without an
`if __name__ == "__main__":` guard, the framework object gets a TODO: put the training in a function,
call `fabric.launch(function)` under `if __name__ == "__main__":`.

Why: spawned processes import the main module again; without a guard every import would start training,
and spawn strategies need the training as a function. The default launch (`fabric.launch()` with the
subprocess launcher, or torchrun / accelerate launch) re-runs the script as `__main__` and needs no guard,
so the tool adds none: wrapping a whole module-level script in a guard would re-indent every line for
no gain.

Example: `pt-migrate train.py --target fabric --strategy ddp_spawn` on a module-level script gets
`# TODO(pt-migrate) PTM111: ...` above `fabric = Fabric(...)`.

Fabric form: `fabric.launch(main)` under the guard. Accelerate form: not needed (launchers re-run the script).

Fix safety: report-only.
"""
from __future__ import annotations

from migrator import matching as m

from migrator.analysis import MODULE, MAIN_GUARD
from migrator.rules.base import REPORT_ONLY, Context, Example, Rule, RuleTransformer


class _Transformer(RuleTransformer):
    def leave_SimpleStatementLine(self, original_node, updated_node):
        if self.scope not in (MODULE, MAIN_GUARD):
            return updated_node
        if m.matches(original_node, m.SimpleStatementLine(body=[m.Assign(
                targets=[m.AssignTarget(m.Name(self.fw))], value=m.Call(func=m.Name("Fabric")))])):
            self.todo(original_node, "a spawn strategy needs the training in a function: "
                                     "call `fabric.launch(main)` under `if __name__ == \"__main__\":`")
        return updated_node


class MainGuard(Rule):
    code = "PTM111"
    name = "main-guard"
    targets = ("fabric",)
    fix_safety = REPORT_ONLY
    examples = [
        Example(
            before='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\nmodel = torch.nn.Linear(4, 1)\noptimizer = torch.optim.SGD(model.parameters(), lr=0.1)\nmodel(torch.randn(8, 4)).sum().backward()\noptimizer.step()\n',
            fabric=None,
            accelerate=None,
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)

    def apply(self, wrapper, ctx):
        if "spawn" not in (ctx.options.strategy or "") and "notebook" not in (ctx.options.strategy or ""):
            return wrapper.module
        return super().apply(wrapper, ctx)
