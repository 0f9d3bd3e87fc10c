"""Hand-written DDP code in a training module that no framework object would reach (migrator/no_object.py, PTM009):
the file is left as it is but for TODOs (the reason above the first of that code, a short note above each other
construct that stays), decided before any rule runs, so the
self-check (PTM006) never has to refuse it. Seen on the ecosystem corpus: a trainer class in a package whose caller
is in another folder (improved-diffusion's TrainLoop, DDIM's Diffusion runner), and an mp.spawn worker whose
optimizer is the script's own class (Barlow Twins' LARS)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fixture_support import FIXTURES, ran_to_exit
from migrator import Options, migrate
from migrator.no_object import NO_OBJECT
from migrator.runner import migrate_paths

CASES = ("no_object_trainer_class", "no_object_custom_optimizer", "no_object_module_level")
TARGETS = ("fabric", "accelerate")


def _without_todo(code: str) -> str:
    return "".join(l for l in code.splitlines(keepends=True) if not l.lstrip().startswith(f"# TODO(pt-migrate) {NO_OBJECT}:"))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", CASES)
def test_declined_with_one_todo(case, target):
    source = (FIXTURES / case / "before" / "train.py").read_text()
    result = migrate(source, target)
    assert {d.code for d in result.diagnostics} == {NO_OBJECT}, result.diagnostics
    assert _without_todo(result.code) == source
    assert result.diagnostics[0].message.startswith("not migrated: ")
    # every construct that stays is marked: the machinery, GradScaler and each `.backward()`
    added = [l.strip() for l in result.code.splitlines() if l.strip().startswith("# TODO(pt-migrate)")]
    assert len(added) == len(result.diagnostics) == len({d.line for d in result.diagnostics})
    lines = result.code.splitlines()
    for i, line in enumerate(lines):
        code = line.split("#")[0]
        if ".backward(" in code or "DistributedDataParallel(" in code or "DistributedSampler(" in code:
            assert lines[i - 1].lstrip().startswith(f"# TODO(pt-migrate) {NO_OBJECT}:"), line
    assert migrate(result.code, target).code == result.code


def test_the_todo_names_the_machinery_and_the_reason():
    source = (FIXTURES / "no_object_custom_optimizer" / "before" / "train.py").read_text()
    message = migrate(source, "fabric").diagnostics[0].message
    assert "no torch.optim optimizer" in message
    for what in ("`init_process_group`", "DDP/DataParallel wrapper", "DistributedSampler", "`mp.spawn`"):
        assert what in message
    source = (FIXTURES / "no_object_trainer_class" / "before" / "train.py").read_text()
    assert "class `Trainer`" in migrate(source, "fabric").diagnostics[0].message


def test_selected_rules_still_run():
    """`--select PTM131` runs that rule alone (the user provides the object): the file is not declined."""
    source = (FIXTURES / "no_object_module_level" / "before" / "train.py").read_text()
    result = migrate(source, "fabric", Options(select=("PTM131",)))
    assert NO_OBJECT not in {d.code for d in result.diagnostics}


TRAIN_LOOP = '''
import torch
from torch.nn.parallel.distributed import DistributedDataParallel as DDP

from . import util


class TrainLoop:
    def __init__(self, model, data, lr):
        self.model = model
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=lr)
        self.ddp_model = DDP(self.model, device_ids=[util.dev()]) if torch.cuda.is_available() else self.model
        self.data = data

    def run_loop(self, steps):
        for _ in range(steps):
            x, y = next(self.data)
            self.opt.zero_grad()
            loss = (self.ddp_model(x) - y).pow(2).mean()
            loss.backward()
            self.opt.step()
'''
ENTRY = '''
import torch
from pkg import util
from pkg.train_util import TrainLoop


def main():
    util.setup_dist()
    model = torch.nn.Linear(3, 1)
    TrainLoop(model, util.batches(), lr=1e-3).run_loop(3)


if __name__ == "__main__":
    main()
'''


@pytest.mark.parametrize("target", TARGETS)
def test_trainer_class_in_a_package_called_from_another_folder(target, tmp_path):
    """The caller (scripts/train.py) never trains itself and is in another folder: the class keeps its DDP."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "scripts").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "util.py").write_text("def dev():\n    return 0\n")
    (tmp_path / "pkg" / "train_util.py").write_text(textwrap.dedent(TRAIN_LOOP).lstrip())
    (tmp_path / "scripts" / "train.py").write_text(textwrap.dedent(ENTRY).lstrip())
    files = sorted(str(p) for p in tmp_path.rglob("*.py"))
    outcomes = {Path(o.path).name: o for o in migrate_paths(files, target, Options(), jobs=1)}
    loop = outcomes["train_util.py"]
    assert {d.code for d in loop.result.diagnostics} == {NO_OBJECT}
    assert "class `TrainLoop`" in loop.result.diagnostics[0].message
    assert _without_todo(loop.result.code) == (tmp_path / "pkg" / "train_util.py").read_text()
    assert not outcomes["train.py"].changed


def _env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                        "GROUP_WORLD_SIZE", "PYTHONPATH")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    return env


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_declined_scripts_still_run_on_two_processes(case, tmp_path):
    """Left working: the declined output trains on 2 CPU processes as the original does."""
    source = (FIXTURES / case / "before" / "train.py").read_text()
    (tmp_path / "train.py").write_text(migrate(source, "fabric").code)
    launch = ([sys.executable, "train.py"] if case == "no_object_custom_optimizer" else
              [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "train.py"])
    proc = subprocess.run(launch, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=180)
    assert ran_to_exit(proc.returncode, proc.stdout), proc.stdout[-3000:]
    assert "step 5 loss" in proc.stdout
