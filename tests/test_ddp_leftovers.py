"""Hand-written DDP and AMP details found while writing the amp_ddp fixture: a rank-reading helper gets the
framework object, a scaler's checkpoint state goes (or the scaler stays where a use cannot be taken over), and a
loader iterated twice per epoch is reported (the framework's sampler epoch counts passes)."""
import pytest

from migrator import migrate

HELPER = """import os
import torch
import torch.distributed as dist


def setup_distributed():
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ["LOCAL_RANK"])
    dist.init_process_group("gloo")
    return rank, torch.device("cpu")


def main():
    rank, device = setup_distributed()
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(4, 2)).sum().backward()
    opt.step()
"""


@pytest.mark.parametrize("target,fw,rank", [("fabric", "fabric", "global_rank"),
                                            ("accelerate", "accelerator", "process_index")])
def test_a_helper_that_reads_the_rank_from_the_environment_takes_the_framework_object(target, fw, rank):
    code = migrate(HELPER, target).code
    assert f"def setup_distributed({fw}):" in code and f"setup_distributed({fw})" in code
    assert f"rank = {fw}.{rank}" in code and "os.environ" not in code.split("def main")[0]
    compile(code, "helper.py", "exec")


SCALER = """import torch


def main():
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cuda", enabled=torch.cuda.is_available())
    with torch.autocast("cuda", dtype=torch.float16, enabled=torch.cuda.is_available()):
        loss = model(torch.randn(4, 2)).sum()
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    state = {"model": model.state_dict(), "scaler": scaler.state_dict()}
    scaler.load_state_dict(state["scaler"])
    torch.save(state, "ckpt.pt")
"""


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_a_scalers_checkpoint_state_goes_with_it(target):
    result = migrate(SCALER, target)
    assert "scaler" not in result.code.replace('state["scaler"]', "")
    assert 'model).state_dict()}\n' in result.code or '"model": model.state_dict()}\n' in result.code
    assert not result.needs_attention


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_a_scaler_use_that_cannot_be_taken_over_keeps_the_scaler(target):
    src = SCALER.replace('    torch.save(state, "ckpt.pt")\n', '    print(scaler.get_scale())\n')
    result = migrate(src, target)
    assert 'scaler = torch.amp.GradScaler("cuda"' in result.code  # still defined: the script runs
    assert "scaler.step(" not in result.code and "scaler.scale(" not in result.code
    assert [d.line for d in result.needs_attention if d.code == "PTM133"] == [15]
    assert "# TODO(pt-migrate) PTM133: the GradScaler is kept" in result.code


TWO_PASSES = """import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset


def main():
    ds = TensorDataset(torch.randn(16, 2), torch.randn(16, 1))
    sampler = DistributedSampler(ds)
    loader = DataLoader(ds, batch_size=4, sampler=sampler)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        for x, y in loader:
            ((model(x) - y) ** 2).mean().backward()
            opt.step()
        with torch.no_grad():
            for x, y in loader:
                print(((model(x) - y) ** 2).mean().item())
"""


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_a_loader_iterated_twice_per_epoch_is_reported(target):
    result = migrate(TWO_PASSES, target)
    [note] = [d for d in result.diagnostics if "more than once per epoch" in d.message]
    assert note.code == "PTM132" and note.line == 12 and not note.needs_attention
    once = TWO_PASSES.replace("            for x, y in loader:\n                print", "            for x, y in [(1, 2)]:\n                print")
    assert not [d for d in migrate(once, target).diagnostics if "more than once" in d.message]
