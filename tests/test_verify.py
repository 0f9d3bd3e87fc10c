"""`pt-migrate verify` on CPU with 2 gloo processes, both targets.

The good script must pass every check; each deliberately broken migration in fixtures/verify_broken/ must fail the
check that names its fault. The broken cases run only the checks they need (--checks), to keep this file short.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("lightning")
pytest.importorskip("accelerate")

from migrator.verify import command as vc  # noqa: E402
from migrator.verify.command import Run, run_verify, verify  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "verify_broken"
GOOD = FIXTURES / "good.py"
HANDCUT = FIXTURES / "handcut.py"
TIMEOUT = 240


def _by_id(report):
    return {c["id"]: c for c in report["checks"]}


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_good_script_passes_every_check(target):
    before = GOOD.read_bytes()
    result = CliRunner().invoke(verify, [str(GOOD), "--target", target, "--json", "--timeout", str(TIMEOUT),
                                         "--", "--lr", "0.1"])
    report = json.loads(result.output)
    checks = _by_id(report)
    assert result.exit_code == 0, json.dumps(report["checks"], indent=1) + json.dumps(report["runs"], indent=1)
    assert [c for c in checks] == list("abcdefk")
    assert {c["status"] for c in report["checks"]} <= {"pass", "info"}
    assert checks["a"]["data"]["original"] == pytest.approx(checks["a"]["data"]["migrated"], rel=1e-4, abs=1e-5)
    assert len(checks["a"]["data"]["original"]) == 5
    assert checks["b"]["data"]["world_sizes"] == [2, 2]
    assert "speedup" in checks["f"]["data"]
    assert report["script_args"] == ["--lr", "0.1"]
    assert GOOD.read_bytes() == before  # the user's file is never written
    assert not Path(report["runs"]["original"]["cwd"]).exists()  # the temporary folder is gone


BROKEN = [
    # (migrated fixture, its original, checks to run, the check that must fail, words its message must hold)
    ("fabric_no_setup_dataloaders.py", GOOD, "bcd", "d", "every rank trained on the same data"),
    ("accelerate_no_prepare_loader.py", GOOD, "bcd", "d", "every rank trained on the same data"),
    ("fabric_handcut.py", HANDCUT, "bcd", "d", "first at step 1"),
    ("accelerate_handcut.py", HANDCUT, "bcd", "d", "first at step 1"),
    ("fabric_model_not_setup.py", GOOD, "bcd", "c", "not synchronized"),
    ("accelerate_model_not_prepared.py", GOOD, "bcd", "c", "not synchronized"),
    ("fabric_plain_print.py", GOOD, "e", "e", "printed by every rank"),
    ("accelerate_plain_print.py", GOOD, "e", "e", "printed by every rank"),
]


@pytest.mark.parametrize("fixture,original,checks,failing,words", BROKEN, ids=[b[0][:-3] for b in BROKEN])
def test_broken_migration_fails_the_right_check(fixture, original, checks, failing, words):
    target = fixture.split("_")[0]
    report = run_verify(original, [], target, devices=2, accelerator="cpu", steps=5, timeout=TIMEOUT,
                        migrated=FIXTURES / fixture, checks=checks)
    by_id = _by_id(report)
    assert report["exit_code"] == 1
    assert by_id[failing]["status"] == "fail", by_id
    assert words in by_id[failing]["message"]
    others = {k: c["status"] for k, c in by_id.items() if k != failing}
    assert set(others.values()) <= {"pass", "info"}, by_id


def test_timeout_kills_the_whole_process_group(tmp_path):
    # a launcher whose child outlives it must not keep the pipes (and verify) waiting
    code = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']);"
            " print('started', flush=True); time.sleep(120)")
    run = Run("hang", [sys.executable, "-c", code], str(tmp_path), str(tmp_path / "out"))
    start = time.perf_counter()
    vc._execute(run, vc._env("cpu"), timeout=3)
    assert run.timed_out and time.perf_counter() - start < 30
    assert "started" in run.stdout
    assert "timed out" in vc.check_multi(run, 2, 5).message


def _multi(results, stdout=""):
    run = Run("migrated-2", [], "", "", rc=0, stdout=stdout)
    run.results = results
    return run


def _rank(rank, hashes, checksum, world=2, losses=(1.0, 0.9)):
    return {"rank": rank, "world_size": world, "steps": len(hashes), "status": "stopped", "losses": list(losses),
            "batch_hashes": hashes, "param_checksum": checksum, "param_hash": str(checksum), "param_count": 10,
            "step_times": [0.1 * (i + 1) for i in range(len(hashes))], "samples_per_step": [8] * len(hashes)}


def test_checks_on_recorded_runs():
    good = _multi([_rank(0, ["a", "b"], 1.5), _rank(1, ["c", "d"], 1.5)])
    assert vc.check_sync(good, 2).status == "pass"
    assert vc.check_sharding(good, 2).status == "pass"
    assert vc.check_multi(good, 2, 2).status == "pass"
    same = _multi([_rank(0, ["a", "b"], 1.5), _rank(1, ["a", "b"], 1.5)])
    assert "identical batches at every step, first at step 1" in vc.check_sharding(same, 2).message
    drift = _multi([_rank(0, ["a", "b"], 1.5), _rank(1, ["c", "d"], 1.4)])
    assert vc.check_sync(drift, 2).status == "fail"
    alone = _multi([_rank(0, ["a", "b"], 1.5, world=1), _rank(1, ["c", "d"], 1.5, world=1)])
    assert "world size 1" in vc.check_multi(alone, 2, 2).message
    nan = _multi([_rank(0, ["a", "b"], 1.5, losses=(1.0, float("nan"))), _rank(1, ["c", "d"], 1.5)])
    assert "non-finite" in vc.check_multi(nan, 2, 2).message
    single = _multi([_rank(0, ["a", "b"], 1.5, world=1)], stdout="Seed set to 1\nloss 1.25\nloss 1.0\n")
    once = _multi(good.results, stdout="loss 1.5\nloss 0.5\n[rank: 1] Seed set to 1\n")
    twice = _multi(good.results, stdout="loss 1.5\nloss 0.5\nloss 1.25\nloss 1.0\n")
    assert vc.check_output(single, once, 2).status == "pass"
    assert vc.check_output(single, twice, 2).status == "fail"


def test_fabric_launch_mode():
    assert vc._fabric_launch_mode('f = Fabric(accelerator="cpu", devices=2, strategy="ddp")\nf.launch()') == "python"
    assert vc._fabric_launch_mode('f = Fabric(devices=os.environ.get("LOCAL_WORLD_SIZE", "auto"))\nf.launch()') \
        == "torchrun"
    assert vc._fabric_launch_mode("f = Fabric()\n") == "fabric-run"


def test_cli_usage_errors():
    result = CliRunner().invoke(verify, [str(GOOD), "--target", "fabric", "--checks", "xyz"])
    assert result.exit_code == 2
    result = subprocess.run([sys.executable, "-m", "migrator.verify", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--migrated" in result.stdout and "sharding" in result.stdout


def test_verify_never_writes_the_users_files(tmp_path):
    """verify stages the script's folder with links to the user's other files; a script that writes one of them
    (open "w" / "a", torch.save) writes a file of the staging folder, never the user's (found by a new-user trial:
    an existing log.csv came back empty)."""
    (tmp_path / "train.py").write_text(
        "import torch\n"
        "torch.manual_seed(0)\n"
        "model = torch.nn.Linear(2, 1)\n"
        "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "log = open('log.csv', 'w')\n"
        "for step in range(3):\n"
        "    opt.zero_grad()\n"
        "    loss = model(torch.ones(4, 2)).pow(2).mean()\n"
        "    loss.backward()\n"
        "    opt.step()\n"
        "    log.write(f'{step},{loss.item()}\\n')\n"
        "    print(f'step {step} loss {loss.item():.4f}')\n"
        "with open('notes.txt', 'a') as f:\n"
        "    f.write('more\\n')\n"
        "torch.save(model.state_dict(), 'final.pt')\n")
    mine = {"log.csv": "user log\n", "notes.txt": "user notes\n", "final.pt": "user checkpoint\n"}
    for name, text in mine.items():
        (tmp_path / name).write_text(text)
    report = vc.run_verify(tmp_path / "train.py", [], "fabric", 1, "cpu", 3, 120, checks="a")
    assert {c["id"]: c["status"] for c in report["checks"]} == {"a": "pass"}, report["checks"]
    assert {name: (tmp_path / name).read_text() for name in mine} == mine


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_an_evaluation_forward_between_steps_is_not_the_steps_batch(target):
    script = FIXTURES / "eval_forward_between_steps.py"
    result = CliRunner().invoke(verify, [str(script), "--target", target, "--json", "--timeout", str(TIMEOUT),
                                         "--devices", "2", "--steps", "4", "--checks", "bd"])
    checks = _by_id(json.loads(result.output))
    assert checks["d"]["status"] == "pass", checks["d"]


def test_each_run_starts_in_a_fresh_folder():
    script = FIXTURES / "outputs_folder_once.py"
    result = CliRunner().invoke(verify, [str(script), "--target", "fabric", "--json", "--timeout", str(TIMEOUT),
                                         "--devices", "2", "--steps", "3", "--checks", "ab"])
    checks = _by_id(json.loads(result.output))
    assert checks["a"]["status"] == "pass" and checks["b"]["status"] == "pass", checks
