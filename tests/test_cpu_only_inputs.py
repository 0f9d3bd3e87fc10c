"""PTM114 across files (issue #13): a trainer class of a sibling module makes an input on the CPU; the entry script
that creates the framework object creates it for CPU processes, and the sibling gets the TODO at the line."""
from pathlib import Path

import pytest

from migrator.engine import migrate
from migrator.options import Options
from migrator.project import folder_fw_functions

ROOT = Path(__file__).resolve().parent.parent

TRAIN = '''import torch
from torch.utils.data import DataLoader, TensorDataset

from trainer import Trainer


def main():
    x = torch.randn(64, 3)
    loader = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    Trainer({args}).fit()


if __name__ == "__main__":
    main()
'''

TRAINER = '''import torch
import torch.nn.functional as F


class Trainer:
    def __init__(self, model, optimizer, loader):
        self.model, self.optimizer, self.loader = model, optimizer, loader

    def fit(self):
        probe = {probe}
        for x, y in self.loader:
            loss = F.mse_loss(self.model(x), y)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        print(self.model(probe).detach().cpu().numpy())
'''


def _run(train: str, trainer: str, target: str):
    sources = {"train": train, "trainer": trainer}
    ext = folder_fw_functions(sources, target)
    return {name: migrate(src, target, Options(external_fw_functions=ext, module_name=name))
            for name, src in sources.items()}


CPU_ARG = {"fabric": 'Fabric(accelerator="cpu"', "accelerate": "Accelerator(cpu=True"}


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
@pytest.mark.parametrize("args", ["model, optimizer, loader", "model=model, optimizer=optimizer, loader=loader"])
def test_a_sibling_trainer_s_cpu_input_keeps_the_entry_script_on_cpu_processes(target, args):
    out = _run(TRAIN.format(args=args), TRAINER.format(probe="torch.linspace(-1, 1, 8).unsqueeze(1).repeat(1, 3)"),
               target)
    assert CPU_ARG[target] in out["train"].code
    assert "PTM114 comments in trainer.py" in out["train"].code
    assert any(d.code == "PTM114" and "trainer.py" in d.message for d in out["train"].diagnostics)
    fw = "fabric" if target == "fabric" else "accelerator"
    todo = next(line for line in out["trainer"].code.splitlines() if "TODO(pt-migrate) PTM114" in line)
    assert "torch.linspace(-1, 1, 8)" in todo and f"self.{fw}.device" in todo
    # `.detach().cpu().numpy()` is on the CPU whatever the model's device: no TODO for it
    assert out["trainer"].code.count("TODO(pt-migrate) PTM114") == 1


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_a_sibling_that_makes_nothing_on_the_cpu_leaves_the_device_to_the_framework(target):
    out = _run(TRAIN.format(args="model, optimizer, loader"), TRAINER.format(probe="next(iter(self.loader))[0]"),
               target)
    assert CPU_ARG[target] not in out["train"].code
    assert "PTM114" not in out["trainer"].code


def test_a_sibling_that_places_tensors_itself_is_left_to_the_move_rules():
    trainer = TRAINER.format(probe="torch.linspace(-1, 1, 8).unsqueeze(1).repeat(1, 3).to('cuda')")
    out = _run(TRAIN.format(args="model, optimizer, loader"), trainer, "fabric")
    assert CPU_ARG["fabric"] not in out["train"].code


def test_the_fixture_once_writers_trainer():
    case = ROOT / "fixtures" / "once_writers_trainer" / "before"
    out = _run((case / "train.py").read_text(), (case / "trainer.py").read_text(), "fabric")
    assert 'fabric = Fabric(accelerator="cpu"' in out["train"].code
    lines = out["trainer"].code.splitlines()
    at = next(i for i, line in enumerate(lines) if "probe = torch.linspace" in line)
    assert lines[at - 1].strip().startswith("# TODO(pt-migrate) PTM114:")


# A sibling the entry script calls, which never receives the object: a rectified-flow objective holding the model
# (minRF), a model class of models.py, a loss function handed the model. It stays byte for byte; the entry script
# creates the object for CPU processes and says what to change in the sibling.
FLOW_TRAIN = '''import torch
from torch.utils.data import DataLoader, TensorDataset

from {sibling} import {name}

if __name__ == "__main__":
    data = TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
    loader = DataLoader(data, batch_size=8)
    model = {model}
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for x, y in loader:
        optimizer.zero_grad()
        loss = {loss}
        loss.backward()
        optimizer.step()
'''
SIBLINGS = {
    "holder": ("flow", "RF", "torch.nn.Linear(4, 1)", "RF(model).forward(x, y)", '''import torch


class RF:
    def __init__(self, model):
        self.model = model

    def forward(self, x, y):
        t = torch.sigmoid(torch.randn(x.size(0), 1))
        return torch.nn.functional.mse_loss(self.model(x) * t, y * t)
'''),
    "model_class": ("models", "Net", "Net()", "torch.nn.functional.mse_loss(model(x), y)", '''import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 1)

    def forward(self, x):
        return self.fc(x) + torch.zeros(x.size(0), 1)
'''),
    "loss_function": ("losses", "noisy_loss", "torch.nn.Linear(4, 1)", "noisy_loss(model, x, y)", '''import torch


def noisy_loss(net, x, y):
    noise = torch.rand(x.size(0), 4) * 0.01
    return torch.nn.functional.mse_loss(net(x + noise), y)
'''),
}


def _run_pair(entry: str, sibling_name: str, sibling: str, target: str):
    sources = {"train": entry, sibling_name: sibling}
    ext = folder_fw_functions(sources, target)
    return {name: migrate(src, target, Options(external_fw_functions=ext, module_name=name))
            for name, src in sources.items()}


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
@pytest.mark.parametrize("style", sorted(SIBLINGS))
def test_a_called_sibling_that_makes_tensors_on_the_cpu(target, style):
    sibling, name, model, loss, code = SIBLINGS[style]
    out = _run_pair(FLOW_TRAIN.format(sibling=sibling, name=name, model=model, loss=loss), sibling, code, target)
    assert CPU_ARG[target] in out["train"].code, out["train"].code
    assert out[sibling].code == code, "the sibling stays byte for byte"
    note = next(d for d in out["train"].diagnostics if d.code == "PTM114" and f"{sibling}.py" in d.message)
    assert "device=x.device" in note.message and "TODO" not in note.message


@pytest.mark.parametrize("sibling_code", [
    # places tensors itself: the move rules' business
    SIBLINGS["holder"][4].replace("torch.randn(x.size(0), 1)", "torch.randn(x.size(0), 1, device=x.device)"),
    # a data helper that never calls a model: what it makes feeds the loader
    "import torch\n\n\nclass RF:\n    def __init__(self, n):\n        self.n = n\n\n"
    "    def forward(self, x, y):\n        return torch.randn(self.n, 1)\n",
])
def test_a_called_sibling_that_leaves_the_device_to_the_framework(sibling_code):
    sibling, name, model, loss, _ = SIBLINGS["holder"]
    entry = FLOW_TRAIN.format(sibling=sibling, name=name, model=model, loss=loss)
    out = _run_pair(entry, sibling, sibling_code, "fabric")
    assert CPU_ARG["fabric"] not in out["train"].code
