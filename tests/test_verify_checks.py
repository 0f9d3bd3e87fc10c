"""verify's checks on recorded runs (no processes started): sharding of hand-fed scripts, parity on rank 0."""
from migrator.verify.command import Run, check_parity, check_sharding


def run(*ranks):
    return Run("r", [], "", "", rc=0, results=list(ranks))


def test_identical_batches_fail_when_a_loader_could_have_sharded_them():
    multi = run({"rank": 0, "batch_hashes": ["x", "y"]}, {"rank": 1, "batch_hashes": ["x", "y"]})
    assert check_sharding(multi, 2, "from torch.utils.data import DataLoader\n").status == "fail"


def test_identical_batches_of_a_hand_fed_script_are_a_skip_with_the_reason():
    multi = run({"rank": 0, "batch_hashes": ["x", "y"]}, {"rank": 1, "batch_hashes": ["x", "y"]})
    c = check_sharding(multi, 2, "x = torch.linspace(0, 1, 9)\n")
    assert c.status == "skip" and "no DataLoader" in c.message


def test_parity_compares_rank_0_whatever_the_order_of_results():
    orig = run({"rank": 1, "losses": [9.0], "loss_steps": [1], "steps": 1},
               {"rank": 0, "losses": [1.0], "loss_steps": [1], "steps": 1})
    multi = run({"rank": 0, "losses": [1.0], "loss_steps": [1], "steps": 1})
    assert check_parity(orig, multi, "on rank 0 of 2 processes").status == "pass"


def _pair(orig_losses, mig_losses, **extra):
    orig = run({"rank": 0, "losses": orig_losses, "loss_steps": list(range(1, len(orig_losses) + 1)), "steps": 3,
                **extra})
    mig = run({"rank": 0, "losses": mig_losses, "loss_steps": list(range(1, len(mig_losses) + 1)), "steps": 3,
               **extra})
    return orig, mig


def test_parity_tolerance_is_fp32_without_autocast():
    c = check_parity(*_pair([2.0, 1.9, 1.8], [2.0, 1.9, 1.8 * (1 + 1e-3)]))
    assert c.status == "fail" and "rtol 0.0001" in c.message
    assert c.data["precision"] == "float32" and c.data["max_abs_diff"] > 1e-3


def test_parity_tolerance_follows_bf16_autocast_of_either_run():
    orig, mig = _pair([2.106449, 2.0, 1.9], [2.106684, 2.0, 1.9 * (1 + 5e-3)])
    orig.results[0]["autocast_dtype"] = "bfloat16"
    c = check_parity(orig, mig)
    assert c.status == "pass" and "bfloat16" in c.message, c.message
    assert c.data["rtol"] == 1e-2 and abs(c.data["max_abs_diff"] - 9.5e-3) < 1e-6
    # a real migration error (another order of data, a missing step) is far beyond it
    orig, mig = _pair([2.1, 2.0, 1.9], [2.1, 2.0, 1.7], autocast_dtype="bfloat16")
    assert check_parity(orig, mig).status == "fail"


def test_parity_tolerance_fp16_from_autocast_or_half_parameters():
    orig, mig = _pair([1.135986, 1.0, 0.9], [1.136166, 1.0, 0.9], autocast_dtype="float16")
    c = check_parity(orig, mig)
    assert c.status == "pass" and c.data["precision"] == "float16" and c.data["rtol"] == 2e-3
    orig, mig = _pair([1.0, 1.0, 1.0], [1.0, 1.0, 1.0 + 1e-3], param_dtypes=["float16"])
    assert check_parity(orig, mig).data["precision"] == "float16"
    orig, mig = _pair([1.0, 1.0, 1.0], [1.0, 1.0, 1.0 + 5e-3], autocast_dtype="float16")
    assert check_parity(orig, mig).status == "fail"


def test_deterministic_kernels_on_by_default_with_cuda_only():
    from migrator.verify.command import _deterministic_env
    from migrator.verify.runner import ENV_DETERMINISTIC

    assert _deterministic_env("cuda", None)[ENV_DETERMINISTIC] == "1"
    assert "CUBLAS_WORKSPACE_CONFIG" in _deterministic_env("cuda", None)
    assert _deterministic_env("cpu", None) == {}
    assert _deterministic_env("cuda", False) == {}
    assert _deterministic_env("cpu", True)[ENV_DETERMINISTIC] == "1"


def test_runner_sees_autocast_in_a_wrapped_forward_and_parameter_dtypes(tmp_path):
    """The autocast a framework enters inside its wrapper's forward (below the top-level pre-hook) is recorded."""
    import json

    import torch

    from migrator.verify.runner import Recorder

    class Wrapper(torch.nn.Module):  # like _FabricModule: autocast inside forward, around the inner module
        def __init__(self):
            super().__init__()
            self.inner = torch.nn.Linear(4, 2)

        def forward(self, x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self.inner(x)

    rec = Recorder(1, str(tmp_path), [], False)
    handles = [torch.nn.modules.module.register_module_forward_pre_hook(rec.forward_pre_hook),
               torch.nn.modules.module.register_module_forward_hook(rec.forward_hook)]
    try:
        Wrapper()(torch.randn(3, 4)).sum().backward()
    finally:
        for h in handles:
            h.remove()
    rec.write("stopped")
    record = json.loads(next(tmp_path.glob("rank*.json")).read_text())
    assert record["autocast_dtype"] == "bfloat16"
    assert record["param_dtypes"] == ["float32"] and record["deterministic"] is False


def test_parity_of_an_original_that_spawns_its_own_processes_is_a_skip_with_the_reason():
    from migrator.verify.command import _SPAWNS, _parity

    assert _SPAWNS.search("    mp.spawn(main_worker, args=(world_size,), nprocs=world_size, join=True)\n")
    assert not _SPAWNS.search("loader = DataLoader(data, sampler=DistributedSampler(data))\n")
    orig = run({"rank": 0, "losses": [], "loss_steps": [], "steps": 0})
    single = run({"rank": 0, "losses": [1.0], "loss_steps": [1], "steps": 1})
    c = _parity(orig, single, orig, single, 2, False, False, spawns=True)
    assert c.status == "skip" and "mp.spawn" in c.message and "recorded no loss" in c.message


def test_the_summary_names_skips_and_what_was_checked(capsys):
    # new-user trial (2026-12-01): "all checks passed" hid three skips, and nothing said that verify checks a
    # migration of its own unless --migrated names the user's file
    from migrator.verify.command import _print_table
    report = {"script": "train.py", "target": "fabric", "devices": 2, "accelerator": "cpu", "steps": 5,
              "migrated": None, "notes": [], "runs": {}, "tmp": None,
              "checks": [{"id": "a", "name": "parity", "status": "pass", "message": "ok"},
                         {"id": "i", "name": "noise", "status": "skip", "message": "nothing drawn"}]}
    _print_table(report)
    out = capsys.readouterr().out
    assert "--migrated FILE" in out.splitlines()[0]
    assert out.strip().splitlines()[-1] == "all checks passed (1 skipped: i; their reasons above)"
