"""PTM131 keeps a DistributedDataParallel wrapper around a model nothing sets up (DINO's teacher); PTM100 then asks
Fabric for strategy="ddp", which makes the process group on one device too (lightning 2.6), so the kept wrapper works
under `python train.py` and `torchrun --nproc_per_node 1` as the original did under torchrun."""
import pytest

from migrator import Options, migrate

SRC = '''import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel{alias}


def main():
    dist.init_process_group("gloo")
    student, teacher = torch.nn.Linear(4, 1), torch.nn.Linear(4, 1)
    student = DistributedDataParallel(student)
    teacher = {wrap}(teacher)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    x = torch.randn(8, 4)
    loss = (student(x) - teacher(x).detach()).pow(2).mean()
    loss.backward()
    optimizer.step()


if __name__ == "__main__":
    main()
'''


@pytest.mark.parametrize("alias,wrap", [("", "DistributedDataParallel"), (" as DDP", "DDP"),
                                        ("", "torch.nn.parallel.DistributedDataParallel")])
def test_a_kept_ddp_wrapper_asks_for_the_ddp_strategy(alias, wrap):
    src = SRC.format(alias=alias, wrap=wrap)
    if alias:
        src = src.replace("student = DistributedDataParallel(student)", "student = DDP(student)")
    code = migrate(src, "fabric", Options()).code
    assert f"teacher = {wrap}(teacher)" in code and 'strategy="ddp"' in code
    assert "needs a process group, on one device too" in code
    assert migrate(code, "fabric", Options()).code == code


def test_an_explicit_strategy_or_no_kept_wrapper_is_left():
    src = SRC.format(alias="", wrap="DistributedDataParallel")
    code = migrate(src, "fabric", Options(strategy="fsdp")).code
    assert 'strategy="fsdp"' in code and 'strategy="ddp"' not in code
    code = migrate(src.replace("teacher = DistributedDataParallel(teacher)", "teacher = teacher"), "fabric",
                   Options()).code
    assert "strategy=" not in code
    # DataParallel needs no process group
    code = migrate(src.replace("teacher = DistributedDataParallel(teacher)",
                               "teacher = torch.nn.DataParallel(teacher)"), "fabric", Options()).code
    assert 'strategy="ddp"' not in code
