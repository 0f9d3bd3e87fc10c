"""PTM111 main-guard: training code at module level moves under `if __name__ == "__main__":`.

What it does: when the training is set up at module level (no main function), the module-level code from
the framework object on is put under `if __name__ == "__main__":`. Imports, functions and classes before it
stay where they are. The code stays at module scope, so its names remain globals.

Why: multi-process launch re-imports the script: DataLoader workers and processes started with the spawn
or forkserver start methods import `__main__` again, and without the guard each import would start
training. Fabric's own launcher re-runs the script as `__main__`, so the guarded code still runs there.

Example: `fabric = Fabric(...)`, `fabric.launch()` and the loop at module level end up indented under the guard.

Fabric form and Accelerate form: the same guard.

Fix safety: safe; a script that already has a guard, or sets up inside a function, is not touched.
"""
from __future__ import annotations

import libcst as cst

from migrator.analysis import MODULE, is_main_guard
from migrator.rules.base import Example, Context, Rule, RuleTransformer
from migrator.rules.framework_object import first_code_index


class _Transformer(RuleTransformer):
    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module):
        body = list(updated_node.body)
        start = first_code_index(body)
        if start >= len(body) or any(is_main_guard(s) for s in body):
            return updated_node
        inner = list(body[start:])
        lead = inner[0].leading_lines
        inner[0] = inner[0].with_changes(leading_lines=[])
        guard = cst.parse_statement('if __name__ == "__main__":\n    pass\n')
        guard = guard.with_changes(body=guard.body.with_changes(body=inner), leading_lines=lead)
        self.report(original_node.body[min(start, len(original_node.body) - 1)],
                    'module-level training now runs under `if __name__ == "__main__":`', True)
        return updated_node.with_changes(body=body[:start] + [guard])


class MainGuard(Rule):
    code = "PTM111"
    name = "main-guard"
    examples = [
        Example(
            before='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\nmodel = torch.nn.Linear(4, 1)\noptimizer = torch.optim.SGD(model.parameters(), lr=0.1)\nmodel(torch.randn(8, 4)).sum().backward()\noptimizer.step()\n',
            fabric='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\nif __name__ == "__main__":\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n',
            accelerate='import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\nif __name__ == "__main__":\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n',
        )
    ]

    def transformer(self, ctx: Context) -> RuleTransformer:
        return _Transformer(self, ctx)

    def apply(self, wrapper, ctx):
        if ctx.facts.setup_scope != MODULE:
            return wrapper.module
        return super().apply(wrapper, ctx)
