"""Issue #13: saves under conditions that can differ between ranks (PTM136), and a stats dict dumped by the main
process (PTM151).

`fabric.save` ends with a barrier: under `if not os.path.exists(p):`, a time check, an environment check, a rank's
own metric, the ranks that skip the branch never reach it (pytorch/examples' preprocessing cache
hung on 2 CPU processes). Such a save stays `torch.save` on rank 0 and the barrier follows the condition."""
import pytest

from migrator import Options, migrate

HEAD = ("import glob\nimport os\nimport time\nfrom pathlib import Path\n\nimport torch\n\n\n"
        "def main(args):\n    model = torch.nn.Linear(4, 1)\n"
        "    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    best = 1.0\n    t0 = time.time()\n"
        "    for epoch in range(3):\n        loss = model(torch.randn(8, 4)).pow(2).mean()\n"
        "        loss.backward()\n        optimizer.step()\n        val_loss = loss.item()\n")


def _run(body: str, target: str = "fabric", head: str = HEAD):
    result = migrate(head + body, target, Options())
    assert result.error is None, result.error
    again = migrate(result.code, target, Options())
    assert again.code == result.code, "a second run must change nothing"
    return result


DIVERGENT = {
    "glob": "        if not glob.glob('a*.pt'):\n",
    "clock": "        if time.time() - t0 > 3600:\n",
    "clock_name": "        elapsed = time.time() - t0\n        if elapsed > 3600:\n",
    "environ": "        if os.environ.get('SAVE_NOW'):\n",
    "own_metric": "        if val_loss < best:\n            best = val_loss\n",
}


@pytest.mark.parametrize("kind", sorted(DIVERGENT))
def test_fabric_save_under_a_divergent_condition_stays_torch_save_on_rank_zero_with_a_barrier_after(kind):
    r = _run(DIVERGENT[kind] + "            torch.save(model.state_dict(), 'a.pt')\n"
             "    state = torch.load('a.pt')\n")
    assert "fabric.save(" not in r.code
    assert "if fabric.is_global_zero:\n                torch.save(model.state_dict(), 'a.pt')\n" in r.code
    # the barrier follows the condition, in the loop every rank runs, and the read needs no second one
    assert "torch.save(model.state_dict(), 'a.pt')\n        fabric.barrier()\n" in r.code
    assert r.code.count("fabric.barrier()") == 1


@pytest.mark.parametrize("test", ["not os.path.exists('a.pt')", "not Path('a.pt').is_file()"])
def test_exists_test_that_saves_is_prepared_once_in_the_first_block_without_a_barrier_inside(test):
    # PTM150 puts the `if` in rank_zero_first (rank 0 first, the others find the file); its barrier orders the read
    r = _run(f"        if {test}:\n            torch.save(model.state_dict(), 'a.pt')\n    state = torch.load('a.pt')\n")
    assert "fabric.save(" not in r.code and "fabric.barrier()" not in r.code
    assert f"        with fabric.rank_zero_first(local=False):\n            if {test}:\n" \
           "                torch.save(model.state_dict(), 'a.pt')\n" in r.code


def test_a_cache_read_through_try_except_is_prepared_in_the_first_block():
    # the except branch builds and writes the file the try reads: PTM150 puts the try in rank_zero_first, so rank 0
    # writes it and the others read it whole (a save on rank 0 with a barrier after let rank 1 read it half-written)
    r = _run("        try:\n            stats = torch.load('stats.pt')\n        except FileNotFoundError:\n"
             "            stats = {'epoch': epoch}\n            torch.save(stats, 'stats.pt')\n")
    assert "fabric.save(" not in r.code and "fabric.barrier()" not in r.code
    assert "        with fabric.rank_zero_first(local=False):\n            try:\n" \
           "                stats = torch.load('stats.pt')\n" in r.code


@pytest.mark.parametrize("test", ["epoch % 2 == 0", "args.save_best and epoch > 1", "epoch == 2"])
def test_uniform_conditions_keep_fabric_save(test):
    r = _run(f"        if {test}:\n            torch.save(model.state_dict(), 'a.pt')\n")
    assert "fabric.save('a.pt', model.state_dict())" in r.code and "is_global_zero" not in r.code


def test_a_metric_reduced_across_ranks_is_uniform():
    r = _run("        correct = torch.tensor([3.0, 4.0])\n"
             "        correct = fabric.all_reduce(correct, reduce_op='sum')\n        acc = (correct[0] / correct[1]).item()\n"
             "        if acc > best:\n            best = acc\n            torch.save(model.state_dict(), 'a.pt')\n")
    assert "fabric.save('a.pt', model.state_dict())" in r.code


def test_accelerate_waits_after_the_condition():
    r = _run(DIVERGENT["glob"] + "            torch.save(model.state_dict(), 'a.pt')\n"
             "    state = torch.load('a.pt')\n", "accelerate")
    assert "accelerator.save(" in r.code
    assert "'a.pt')\n        accelerator.wait_for_everyone()\n" in r.code
    assert r.code.count("wait_for_everyone()") == 1


def test_a_branch_that_returns_gets_no_barrier_after_it_the_read_waits_instead():
    r = _run("        if val_loss < best:\n            torch.save(model.state_dict(), 'a.pt')\n            return\n"
             "    state = torch.load('a.pt')\n")
    assert "fabric.save(" not in r.code
    assert "    fabric.barrier()\n    state = torch.load('a.pt')\n" in r.code
    assert r.code.count("fabric.barrier()") == 1


def test_rank_guard_joined_with_a_divergent_test_keeps_torch_save_under_it():
    head = HEAD.replace("def main(args):\n", "def main(args, rank):\n")
    r = _run("        if rank == 0 and not os.path.exists('a.pt'):\n"
             "            torch.save(model.state_dict(), 'a.pt')\n", head=head)
    assert "fabric.save(" not in r.code
    assert "torch.save(model.state_dict(), 'a.pt')\n        fabric.barrier()\n" in r.code


def test_rank_guard_under_a_divergent_test_is_not_hoisted():
    head = HEAD.replace("def main(args):\n", "def main(args, rank):\n")
    r = _run("        if val_loss < best:\n            if rank == 0:\n"
             "                torch.save(model.state_dict(), 'a.pt')\n", head=head)
    assert "fabric.save(" not in r.code and "torch.save(model.state_dict(), 'a.pt')" in r.code


@pytest.mark.parametrize("target,block", [("fabric", "with fabric.rank_zero_first(local=False):"),
                                          ("accelerate", "with accelerator.main_process_first():")])
def test_cache_written_once_goes_in_the_main_process_first_block_as_torch_save(target, block):
    body = ("    if not os.path.exists('cache.pt'):\n        data = torch.randn(8, 4)\n"
            "        torch.save(data, 'cache.pt')\n    data = torch.load('cache.pt')\n")
    head = HEAD.split("    for epoch")[0]
    r = _run(body + "    loss = model(data).sum()\n    loss.backward()\n    optimizer.step()\n", target, head)
    assert f"    {block}\n        if not os.path.exists('cache.pt'):\n" in r.code
    assert "            torch.save(data, 'cache.pt')\n    data = torch.load('cache.pt')\n" in r.code
    assert not [d for d in r.diagnostics if not d.fixed and d.code in ("PTM136", "PTM150")]


# ---- PTM151: a stats dict filled with the training loss and dumped by the main process ---------------------------

STATS = ("import json\n\nimport torch\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n"
         "    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    stats = {'loss': [], 'low': []}\n"
         "    for step in range(3):\n        loss = model(torch.randn(8, 4)).pow(2).mean()\n"
         "        loss.backward()\n        optimizer.step()\n{fill}"
         "    with open('stats.json', 'w') as f:\n        json.dump(stats, f)\n")


@pytest.mark.parametrize("target,reduce", [("fabric", "fabric.all_reduce(loss.detach().clone(), reduce_op=\"mean\")"),
                                           ("accelerate", "accelerator.reduce(loss.detach(), reduction=\"mean\")")])
def test_stats_dict_filled_where_the_loss_is_backpropagated_holds_the_mean(target, reduce):
    r = _run("", target, STATS.replace("{fill}", "        stats['loss'].append(loss.item())\n"))
    assert f"        loss_mean = {reduce}\n        stats['loss'].append(loss_mean.item())\n" in r.code


def test_stats_dict_filled_under_a_data_test_keeps_the_value_and_says_whose_it_is():
    r = _run("", "fabric", STATS.replace("{fill}", "        if loss.item() < 0.5:\n"
                                                   "            stats['low'].append(loss.item())\n"))
    assert "loss_mean" not in r.code
    assert [d for d in r.diagnostics if d.code == "PTM151" and "own shard's value" in d.message]


def test_a_count_filled_per_rank_is_not_uniform():
    r = _run("        correct = torch.tensor([0.0, 0.0])\n        correct[0] += (loss > 0).sum()\n"
             "        acc = (correct[0] / 1).item()\n"
             "        if acc > best:\n            best = acc\n            torch.save(model.state_dict(), 'a.pt')\n")
    assert "fabric.save(" not in r.code and "fabric.is_global_zero" in r.code


def test_a_training_loop_inside_try_keeps_fabric_save_only_the_handler_is_divergent():
    head = HEAD.replace("    for epoch in range(3):\n", "    try:\n     for epoch in range(3):\n")
    head = head.replace("\n        ", "\n         ")
    r = _run("         torch.save(model.state_dict(), 'a.pt')\n    except KeyboardInterrupt:\n"
             "        torch.save(model.state_dict(), 'interrupted.pt')\n", head=head)
    assert "fabric.save('a.pt', model.state_dict())" in r.code
    assert "if fabric.is_global_zero:\n            torch.save(model.state_dict(), 'interrupted.pt')\n" in r.code


def test_a_multiline_save_kept_under_the_guard_is_idempotent():
    # rosinality/stylegan2-pytorch train.py: a multi-line torch.save under `if get_rank() == 0:` (ecosystem static
    # check, 2026-12-01): the second run rebuilt it through fabric.save and back, compacting the arguments
    from migrator import Options, migrate
    src = (
        "import torch\nimport torch.distributed as dist\nfrom torch.utils.data import DataLoader, TensorDataset\n"
        "from distributed import get_rank\n\n\n"
        "def train(model, opt, loader):\n"
        "    for i, (x,) in enumerate(loader):\n"
        "        model(x).sum().backward()\n"
        "        opt.step()\n"
        "        if get_rank() == 0:\n"
        "            if i % 2 == 0:\n"
        "                torch.save(\n"
        "                    {\n"
        "                        \"g\": model.state_dict(),\n"
        "                        \"i\": i,\n"
        "                    },\n"
        "                    f\"checkpoint/{i}.pt\",\n"
        "                )\n\n\n"
        "if __name__ == \"__main__\":\n"
        "    dist.init_process_group(\"gloo\")\n"
        "    model = torch.nn.Linear(4, 1)\n"
        "    opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "    train(model, opt, DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4))\n"
    )
    once = migrate(src, "fabric", Options()).code
    assert migrate(once, "fabric", Options()).code == once
