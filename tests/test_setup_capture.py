"""PTM105 and models captured before their setup (issue #13, minRF's `rf = RF(model)`): the model is set up above
the statement that hands it to something that keeps it, so the holder calls the DDP-wrapped model; the optimizer
is set up where the combined setup was. The fixtures capture_* run on 2 processes (test_distributed_scripts.py)."""
import pytest

from migrator import Options, migrate

HEAD = '''import copy
import torch


class Flow:
    def __init__(self, model):
        self.model = model

    def forward(self, x):
        return self.model(x).pow(2).mean()


def main():
'''
LOOP = '''    for _ in range(3):
        optimizer.zero_grad()
        loss = flow.forward(torch.randn(8, 4))
        loss.backward()
        optimizer.step()
'''


def _run(body: str, target: str):
    result = migrate(HEAD + body + LOOP, target, Options(accelerator="cpu"))
    assert result.error is None, result.error
    return result.code.split("def main():", 1)[1], result.diagnostics


@pytest.mark.parametrize("capture", ["flow = Flow(model)", "flow = Flow(model=model)", "holder = [model]\n    flow = Flow(holder[0])",
                                     "nets = {\"a\": model}\n    flow = Flow(nets[\"a\"])"])
def test_setup_goes_above_the_capture(capture):
    body = f"    model = torch.nn.Linear(4, 1)\n    {capture}\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
    code, _ = _run(body, "fabric")
    first = capture.splitlines()[0]
    assert code.index("model = fabric.setup_module(model)") < code.index(first)
    assert "optimizer = fabric.setup_optimizers(optimizer)" in code
    assert "fabric.setup(model, optimizer)" not in code
    code, _ = _run(body, "accelerate")
    assert code.index("model = accelerator.prepare(model)") < code.index(first)
    assert "optimizer = accelerator.prepare(optimizer)" in code


@pytest.mark.parametrize("use", ["print(model)", "n = sum(p.numel() for p in model.parameters())",
                                 "n = count_parameters(model)", "ema = copy.deepcopy(model)",
                                 "fn = lambda x: model(x)", "model = torch.compile(model)",
                                 "model_without_ddp = model"])
def test_reading_the_model_is_no_capture(use):
    body = (f"    model = torch.nn.Linear(4, 1)\n    {use}\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
            f"    flow = Flow(model)\n")
    code, _ = _run(body, "fabric")
    assert "model, optimizer = fabric.setup(model, optimizer)" in code
    assert "setup_module" not in code


def test_model_loaded_after_the_capture_gets_a_todo():
    body = ("    model = torch.nn.Linear(4, 1)\n    flow = Flow(model)\n    model.load_state_dict(torch.nn.Linear(4, 1).state_dict())\n"
            "    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n")
    for target, fw in (("fabric", "fabric.setup(model, optimizer)"), ("accelerate", "accelerator.prepare(model, optimizer)")):
        code, diags = _run(body, target)
        assert fw in code
        assert "# TODO(pt-migrate) PTM105: `flow = Flow(model)` keeps `model`" in code
        assert any(d.code == "PTM105" and not d.fixed and "not synchronized" in d.message for d in diags)


def test_model_made_in_the_capturing_statement_gets_a_todo():
    body = "    model = torch.nn.Linear(4, 1); flow = Flow(model)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
    code, _ = _run(body, "fabric")
    assert "TODO(pt-migrate) PTM105" in code and "model, optimizer = fabric.setup(model, optimizer)" in code


def test_plain_holder_made_around_its_model_sets_up_the_held_model():
    body = "    flow = Flow(torch.nn.Linear(4, 1))\n    optimizer = torch.optim.SGD(flow.model.parameters(), lr=0.1)\n"
    code, _ = _run(body, "fabric")
    assert "flow.model, optimizer = fabric.setup(flow.model, optimizer)" in code
    code, _ = _run(body, "accelerate")
    assert "flow.model, optimizer = accelerator.prepare(flow.model, optimizer)" in code


def test_module_holder_is_set_up_itself():
    src = HEAD.replace("class Flow:", "class Flow(torch.nn.Module):").replace(
        "        self.model = model", "        super().__init__()\n        self.model = model")
    body = "    flow = Flow(torch.nn.Linear(4, 1))\n    optimizer = torch.optim.SGD(flow.model.parameters(), lr=0.1)\n"
    result = migrate(src + body + LOOP, "fabric", Options(accelerator="cpu"))
    assert "flow, optimizer = fabric.setup(flow, optimizer)" in result.code
