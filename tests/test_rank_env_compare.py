"""PTM130: a rank read from the environment and compared with a number. Its default is a sentinel ("launched
distributed?") only where no process of a distributed run takes it: -1 for a rank, 1 for the world size.

`int(os.environ.get("RANK", 0)) == 0`, the common "main process?" test, became `fabric.world_size == 1`, false on
every rank of 2: whatever it guarded (a folder, a save, a log) ran on no rank (seen re-reading verify's fixture for
fresh run folders, 2026-12-01)."""
import textwrap

import pytest

from migrator import Options, migrate

SCRIPT = '''
import os, torch
from torch.utils.data import DataLoader, TensorDataset
if {test}:
    os.makedirs("out", exist_ok=True)
x = torch.randn(8, 4)
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for (b,) in DataLoader(TensorDataset(x), batch_size=4):
    model(b).sum().backward()
    opt.step()
'''

CASES = [
    ('os.environ.get("LOCAL_RANK", "0") == "0"', "fabric.local_rank == 0", "accelerator.local_process_index == 0"),
    ('int(os.environ.get("LOCAL_RANK", 0)) == 0', "fabric.local_rank == 0", "accelerator.local_process_index == 0"),
    ('int(os.environ.get("RANK", "0")) == 0', "fabric.global_rank == 0", "accelerator.process_index == 0"),
    ('os.environ.get("RANK", "0") != "0"', "fabric.global_rank != 0", "accelerator.process_index != 0"),
    ('int(os.environ.get("RANK", -1)) != -1', "fabric.world_size > 1", "accelerator.num_processes > 1"),
    ('int(os.environ.get("WORLD_SIZE", 1)) != 1', "fabric.world_size > 1", "accelerator.num_processes > 1"),
]


@pytest.mark.parametrize("test,fabric,accelerate", CASES)
def test_a_rank_default_is_a_sentinel_only_where_no_rank_takes_it(test, fabric, accelerate):
    src = textwrap.dedent(SCRIPT.format(test=test))
    for target, want in (("fabric", fabric), ("accelerate", accelerate)):
        code = migrate(src, target, Options()).code
        assert f"if {want}:" in code, code
