"""PTM102: a deep copy of a set-up model (an EMA, a teacher) follows the model to the framework's device.

Seen on one H200 (2026-12-01, capture_main_keyword): `ema = copy.deepcopy(model)` stayed on the CPU while setup put
the model on the GPU, and the EMA update `e.mul_(0.9).add_(p)` failed ("found at least two devices")."""
import textwrap

import pytest

from migrator import Options, migrate

SCRIPT = '''
import copy
import torch
from torch.utils.data import DataLoader, TensorDataset

def main():
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = torch.nn.Linear(4, 1){before}
    ema = copy.deepcopy(model){after}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for (x,) in DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4):
        optimizer.zero_grad()
        model(x).sum().backward()
        optimizer.step()
        with torch.no_grad():
            for e, p in zip(ema.parameters(), model.parameters()):
                e.mul_(0.9).add_(p, alpha=0.1)

if __name__ == "__main__":
    main()
'''


@pytest.mark.parametrize("target,fw", [("fabric", "fabric"), ("accelerate", "accelerator")])
@pytest.mark.parametrize("before,after,moved", [
    ("", "", True),                                     # a CPU script: the model now goes to the GPU
    (".to(device)", "", True),                          # the model's move came before the copy (removed now)
    ("", "\n    model.to(device)", False),              # moved only after the copy: the script keeps the copy where it was
    ("", "\n    ema.to(device)", False),                # the copy has its own move
])
def test_a_copy_follows_the_model(target, fw, before, after, moved):
    code = migrate(textwrap.dedent(SCRIPT.format(before=before, after=after)), target, Options()).code
    assert (f"ema = copy.deepcopy(model).to({fw}.device)" in code) is moved, code
    assert migrate(code, target, Options()).code == code
