"""Issue 13, kinds 2, 4, 5 and 8, run as a user runs the migrated scripts: Fabric migrated with
`--accelerator cpu --devices 2 --strategy ddp` and started with `python train.py`, Accelerate migrated with
`--accelerator cpu` and started with `torchrun --nproc_per_node 2 train.py` (no observing runner, no os._exit).

- sharded_eval (kind 8): the evaluation of the initial weights, on a loader sharded over 2 processes, prints the
  same loss and accuracy as the original on one process (the sums are reduced across ranks before the division
  by len(loader.dataset));
- rank_report (kind 5): the prints that report the rank are printed by every rank, with the framework's ranks,
  and the samples each rank saw add up to the data set (the data is sharded); loss lines are printed once;
- whole_model_flat (kind 5): the whole-module pickle loads back as the plain class on every rank, and the
  accuracy over the sharded test loader is a fraction (not world-size times too small or large);
- reinstantiate (kind 4): the new instance built after training predicts on every run.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fixture_support import FIXTURES, ran_to_exit
from migrator import Options, migrate

pytestmark = pytest.mark.slow
TIMEOUT = 180
TARGETS = ("fabric", "accelerate")


def _env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                        "GROUP_WORLD_SIZE", "PYTHONPATH")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    return env


def _run(cmd, cwd: Path):
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=TIMEOUT)
    return proc.returncode, proc.stdout


def _migrated_run(case: str, target: str, tmp_path: Path):
    source = (FIXTURES / case / "before" / "train.py").read_text()
    opts = (Options(accelerator="cpu", devices="2", strategy="ddp") if target == "fabric"
            else Options(accelerator="cpu"))
    result = migrate(source, target, opts)
    assert result.error is None and result.changed, result.diagnostics
    (tmp_path / "train.py").write_text(result.code)
    cmd = ([sys.executable, "train.py"] if target == "fabric" else
           [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "train.py"])
    code, out = _run(cmd, tmp_path)
    assert ran_to_exit(code, out), out[-4000:]
    return out


@pytest.mark.parametrize("target", TARGETS)
def test_sharded_evaluation_matches_one_process(target, tmp_path):
    original = tmp_path / "original"
    original.mkdir()
    (original / "train.py").write_text((FIXTURES / "sharded_eval" / "before" / "train.py").read_text())
    code, ref = _run([sys.executable, "train.py"], original)
    assert code == 0, ref[-3000:]
    migrated = tmp_path / "migrated"
    migrated.mkdir()
    out = _migrated_run("sharded_eval", target, migrated)
    want = [l for l in ref.splitlines() if l.startswith("before:")]
    got = [l for l in out.splitlines() if l.startswith("before:")]
    assert len(want) == 1 and got == want, (want, got)


@pytest.mark.parametrize("target", TARGETS)
def test_rank_reports_print_on_every_rank(target, tmp_path):
    out = _migrated_run("rank_report", target, tmp_path)
    # the two processes print at the same time: their lines may run into each other, so no anchors
    seen = {int(m.group(1)): int(m.group(2)) for m in re.finditer(r"\[local_rank (\d)\] samples seen: (\d{3})", out)}
    assert sorted(seen) == [0, 1], out[-3000:]
    assert sum(seen.values()) == 2 * 480, seen  # 2 epochs of 480 samples, split between the ranks
    reports = sorted(re.findall(r"rank (\d) of (\d) saw \d+ samples", out))
    assert reports == [("0", "2"), ("1", "2")], out[-3000:]
    steps = [l for l in out.splitlines() if l.startswith("step ")]
    assert steps and len(steps) == len(set(steps)), "a loss line was printed by both ranks"


@pytest.mark.parametrize("target", TARGETS)
def test_whole_module_pickle_restores_the_plain_class(target, tmp_path):
    out = _migrated_run("whole_model_flat", target, tmp_path)
    m = re.search(r"^restored (\w+): accuracy ([\d.]+)$", out, re.M)
    assert m and m.group(1) == "TinyNet", out[-3000:]
    assert 0.5 < float(m.group(2)) <= 1.0, out[-3000:]
    assert "fresh TinyNet loaded" in out


@pytest.mark.parametrize("target", TARGETS)
def test_new_instance_after_training_predicts(target, tmp_path):
    out = _migrated_run("reinstantiate", target, tmp_path)
    assert re.search(r"^predictions \[", out, re.M), out[-3000:]
