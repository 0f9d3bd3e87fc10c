"""Issue #15 item 7: verify --full sees what happens after the first steps. Each semantics repro migrated without
its fix (fixtures/verify_broken_issue15/, made with --ignore of the fixing rule, or by hand for the unwrapped loss)
makes verify fail with the check named; the tool's own migration passes the same check."""
import pytest

from migrator.verify import command as vc
from migrator.verify.command import FULL_STEPS, Run, run_verify
from tests.fixture_support import ROOT

BROKEN = ROOT / "fixtures" / "verify_broken_issue15"
slow = pytest.mark.slow


def _run(*records):
    run = Run("r", [], "", "", rc=0)
    run.results = list(records)
    return run


def _rec(rank, world=2, last_lr=1e-4, init="p", noise="n", draws=3):
    return {"rank": rank, "world_size": world, "steps": 4, "status": "finished", "losses": [1.0], "first_lr": 0.1,
            "last_lr": last_lr, "init_param_hash": init, "noise_hash": noise, "noise_draws": draws}


def test_full_checks_on_recorded_runs():
    orig = _run(_rec(0, world=1))
    assert vc.check_schedule(orig, _run(_rec(0), _rec(1)), 2).status == "pass"
    unfinished = vc.check_schedule(orig, _run(_rec(0, last_lr=0.05), _rec(1, last_lr=0.05)), 2)
    assert unfinished.status == "fail" and "does not end where the original's does" in unfinished.message
    assert vc.check_initial_weights(_run(_rec(0), _rec(1)), 2).status == "pass"
    assert vc.check_initial_weights(_run(_rec(0, init="p"), _rec(1, init="q")), 2).status == "fail"
    assert vc.check_noise(orig, _run(_rec(0, noise="a"), _rec(1, noise="b")), 2).status == "pass"
    assert vc.check_noise(orig, _run(_rec(0, noise="a"), _rec(1, noise="a")), 2).status == "fail"
    assert vc.check_noise(_run(_rec(0, world=1, draws=0)), _run(_rec(0), _rec(1)), 2).status == "skip"


def _status(report, check):
    return {c["id"]: c for c in report["checks"]}[check]


CASES = [  # (original, broken migration, target, check, steps)
    ("schedule_from_dataset_size.py", "fabric_schedule_unsized.py", "fabric", "g", FULL_STEPS),
    ("schedule_from_dataset_size.py", "accelerate_schedule_unsized.py", "accelerate", "g", FULL_STEPS),
    ("gan_noise_in_loop.py", "fabric_gan_same_noise.py", "fabric", "i", 40),
    ("gan_noise_in_loop.py", "accelerate_gan_same_noise.py", "accelerate", "i", 40),
    ("loss_method_on_model.py", "accelerate_loss_unwrapped.py", "accelerate", "c", 5),
    ("reinstantiate.py", "accelerate_ckpt_wrapped_keys.py", "accelerate", "j", FULL_STEPS),
]


@slow
@pytest.mark.parametrize("original,broken,target,check,steps", CASES, ids=[c[1] for c in CASES])
def test_broken_migration_fails_the_named_check(original, broken, target, check, steps):
    report = run_verify(BROKEN / original, [], target, 2, "cpu", steps, 120, BROKEN / broken, checks=check)
    c = _status(report, check)
    assert c["status"] == "fail", c
    assert report["exit_code"] == 1


@slow
@pytest.mark.parametrize("original,broken,target,check,steps", CASES, ids=[c[0] + "-" + c[2] for c in CASES])
def test_tool_migration_passes_the_check(original, broken, target, check, steps):
    report = run_verify(BROKEN / original, [], target, 2, "cpu", steps, 120, checks=check + "h")
    assert _status(report, check)["status"] == "pass", report["checks"]
    assert _status(report, "h")["status"] == "pass", report["checks"]


@slow
def test_checkpoint_check_names_the_keys(tmp_path):
    """j compares what each file holds (key -> shape) in a subprocess run in the script's folder."""
    import torch

    for name, prefix in (("orig", ""), ("mig", "module.")):
        (tmp_path / name).mkdir()
        torch.save({prefix + "w": torch.zeros(2)}, tmp_path / name / "m.pt")
    c = vc.check_checkpoints(tmp_path / "orig", tmp_path / "mig", 0)
    assert c.status == "fail" and "module.w" in c.message
    torch.save({"w": torch.ones(2)}, tmp_path / "mig" / "m.pt")
    assert vc.check_checkpoints(tmp_path / "orig", tmp_path / "mig", 0).status == "pass"
