"""PTM145 follows the loop's draws into helpers: a function or class of the file, or of a sibling module the script
imports, that draws from torch's global generator (a new user's LossHelper in helpers.py drew the same jitter on
every rank)."""
import pytest

from migrator import Options, migrate
from migrator.project import folder_fw_functions

ENTRY = '''import torch
from torch.utils.data import DataLoader, TensorDataset
{imports}

{local}
def main():
    torch.manual_seed({seed})
    data = TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
    loader = DataLoader(data, batch_size=8)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    {bind}
    for x, y in loader:
        optimizer.zero_grad()
        loss = {loss}
        loss.backward()
        optimizer.step()


if __name__ == "__main__":
    main()
'''
HELPERS = '''import torch


class LossHelper:
    def __init__(self, model):
        self.model = model

    def loss(self, x, y):
        jitter = torch.randn(x.shape) * 0.01
        return torch.nn.functional.mse_loss(self.model(x + jitter), y)


def noisy_loss(model, x, y):
    return torch.nn.functional.mse_loss(model(x + torch.rand(x.shape)), y)


def plain_loss(model, x, y):
    return torch.nn.functional.mse_loss(model(x), y)
'''
LOCAL_HELPER = "def noise_like(x):\n    return torch.randn_like(x) * 0.01\n\n"
RANK = {"fabric": "if fabric.global_rank > 0:", "accelerate": "if accelerator.process_index > 0:"}


def _run(entry: str, target: str, with_helpers: bool = True):
    sources = {"train": entry, "helpers": HELPERS} if with_helpers else {"train": entry}
    ext = folder_fw_functions(sources, target) if with_helpers else frozenset()
    options = Options(external_fw_functions=ext, module_name="train")
    code = migrate(entry, target, options).code
    assert migrate(code, target, options).code == code
    return code


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
@pytest.mark.parametrize("imports,bind,loss", [
    ("from helpers import LossHelper", "helper = LossHelper(model)", "helper.loss(x, y)"),
    ("from helpers import noisy_loss", "", "noisy_loss(model, x, y)"),
])
def test_a_sibling_that_draws_gets_per_rank_seeds(target, imports, bind, loss):
    code = _run(ENTRY.format(imports=imports, local="", seed=0, bind=bind, loss=loss), target)
    assert RANK[target] in code, code


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_a_local_helper_that_draws_gets_per_rank_seeds(target):
    entry = ENTRY.format(imports="", local=LOCAL_HELPER, seed=0, bind="",
                         loss="torch.nn.functional.mse_loss(model(x + noise_like(x)), y)")
    assert RANK[target] in _run(entry, target, with_helpers=False)


@pytest.mark.parametrize("seed,imports,loss", [
    ("0", "from helpers import plain_loss", "plain_loss(model, x, y)"),  # the helper draws nothing
    ("0 + int(__import__('os').environ.get('RANK', 0))", "from helpers import noisy_loss",  # seeded per rank already
     "noisy_loss(model, x, y)"),
])
def test_left_alone(seed, imports, loss):
    code = _run(ENTRY.format(imports=imports, local="", seed=seed, bind="", loss=loss), "fabric")
    assert RANK["fabric"] not in code, code
