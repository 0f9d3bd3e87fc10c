"""Issue #17, item 2: a file is migrated only when it trains (an optimizer step, a backward reached from a loop,
or a loop that a sibling entry script drives); a lone `.backward()` in a utility is left alone, without a TODO."""
import textwrap

import pytest

from migrator.cli import main
from migrator.engine import migrate
from migrator.trains import backward_reached_from_loop

TARGETS = ["fabric", "accelerate"]


def src(text: str) -> str:
    return textwrap.dedent(text).lstrip()


UTILITY = src("""
    import torch


    def measure_flops(model, forward_fn, loss_fn=None):
        with torch.device("meta"):
            if loss_fn is None:
                forward_fn()
            else:
                loss_fn(forward_fn()).backward()
        return 0


    def grad_norm(model, loss):
        loss.backward()
        return sum(p.grad.norm() for p in model.parameters())
""")


@pytest.mark.parametrize("target", TARGETS)
def test_a_utility_with_a_lone_backward_stays_byte_for_byte(target):
    result = migrate(UTILITY, target)
    assert result.code == UTILITY and not result.changed
    assert result.diagnostics == [] and not result.is_training_script


TRAINS = {
    "backward in a loop, optimizer handed in": """
        import torch


        def train_epoch(model, loader, optimizer):
            for x, y in loader:
                loss = torch.nn.functional.mse_loss(model(x), y)
                loss.backward()
    """,
    "backward in a step function that a loop calls": """
        import torch


        def train_step(model, batch):
            loss = model(batch).sum()
            loss.backward()
            return loss


        def run(model, data):
            for batch in data:
                helper(model, batch)


        def helper(model, batch):
            return train_step(model, batch)
    """,
    "backward and an optimizer step, no loop": """
        import torch


        def train_step(model, batch, optimizer):
            loss = model(batch).sum()
            loss.backward()
            optimizer.step()
    """,
    "backward in a while loop at module level": """
        import torch
        model = torch.nn.Linear(2, 1)
        step = 0
        while step < 10:
            model(torch.randn(4, 2)).sum().backward()
            step += 1
    """,
    "a method that a loop calls by attribute": """
        import torch


        class Trainer:
            def fit(self, loader):
                for batch in loader:
                    self.training_step(batch)

            def training_step(self, batch):
                self.model(batch).sum().backward()
    """,
}


@pytest.mark.parametrize("case", sorted(TRAINS))
def test_a_backward_that_trains_is_still_migrated(case):
    text = src(TRAINS[case])
    assert backward_reached_from_loop(text) or "optimizer.step()" in text
    result = migrate(text, "fabric")
    assert result.is_training_script and result.changed, case
    assert "fabric.backward(" in result.code or [d.code for d in result.needs_attention] == ["PTM107"], case


@pytest.mark.parametrize("text, expected", [
    ("for b in d:\n    loss.backward()\n", True),
    ("def f():\n    loss.backward()\nfor b in d:\n    f()\n", True),
    ("def f():\n    loss.backward()\ndef g():\n    f()\nfor b in d:\n    g()\n", True),
    ("def f():\n    loss.backward()\nf()\n", False),  # called once, not from a loop
    ("for b in d:\n    def f():\n        loss.backward()\n", False),  # defined in a loop, never called
    ("for b in d:\n    torch.autograd.backward(loss)\n", False),
    ("for b in d:\n    fabric.backward(loss)\n", False),
    ("for b in d:\n    pass\nelse:\n    loss.backward()\n", False),  # the else runs once
    ("def f(:\n", True),  # not parsed by ast: the backward alone decides, as before
])
def test_backward_reached_from_loop(text, expected):
    assert backward_reached_from_loop(text, ("fabric", "self.fabric")) is expected


def test_a_helper_module_driven_by_a_sibling_entry_script_is_migrated(tmp_path, capsys):
    """The loop lives in the entry script; the helper's backward has no loop and no step of its own."""
    (tmp_path / "engine.py").write_text(src("""
        import torch


        def train_step(model, batch):
            loss = model(batch).sum()
            loss.backward()
            return loss
    """))
    (tmp_path / "train.py").write_text(src("""
        import torch
        from engine import train_step

        model = torch.nn.Linear(2, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for batch in torch.randn(8, 4, 2):
            train_step(model, batch)
            optimizer.step()
    """))
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path), "--target", "fabric", "--diff", "-j", "1"])
    out = capsys.readouterr().out
    assert e.value.code == 1
    assert "+    fabric.backward(loss)" in out and "+++ b/" + str(tmp_path / "engine.py").lstrip("/") in out
