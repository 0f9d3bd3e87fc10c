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
