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
