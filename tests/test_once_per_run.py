"""Issue #18: downloads, data preparation and output files once per run.

PTM150 (download-first) and PTM151 (write-once) on small inputs, including what they leave with a TODO; verify's
check k on recorded runs; and, slow, on 2 CPU processes: the fixtures' migrations write no path from more than
one rank and download once (check k passes), while the migrations made without the rules (fixtures/
verify_broken_issue18/) fail check k and name the path and the line.
"""
from __future__ import annotations

import time

import pytest

from migrator import Options, migrate
from migrator.verify import command as vc
from migrator.verify.command import FULL_STEPS, Run, run_verify
from tests.fixture_support import FIXTURES, ROOT

BROKEN = ROOT / "fixtures" / "verify_broken_issue18"
slow = pytest.mark.slow

HEAD = "import torch\n\n\ndef main():\n    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
LOOP = "    for step in range(3):\n        loss = model(torch.randn(8, 4)).sum()\n        loss.backward()\n        optimizer.step()\n"


def _migrate(body: str, target: str = "fabric", head: str = HEAD, loop: str = LOOP, tail: str = ""):
    source = head + body + loop + tail
    result = migrate(source, target, Options(select=frozenset({"PTM150", "PTM151"})))
    assert result.error is None
    again = migrate(result.code, target, Options(select=frozenset({"PTM150", "PTM151"})))
    assert again.code == result.code, "a second run must change nothing"
    return result


def _code(result) -> str:
    """The output without comment lines (a TODO names the fix it asks for)."""
    return "\n".join(line for line in result.code.splitlines() if not line.lstrip().startswith("#"))


def _todos(result, code):
    return [d for d in result.diagnostics if d.code == code and not d.fixed]


# ---- PTM150 download-first --------------------------------------------------------------------------------------

@pytest.mark.parametrize("target,header", [("fabric", "with fabric.rank_zero_first(local=False):"),
                                           ("accelerate", "with accelerator.main_process_first():")])
def test_download_goes_first_and_says_why_local_is_false(target, header):
    r = _migrate('    ds = load_dataset("imdb")\n    tok = AutoTokenizer.from_pretrained("gpt2")\n', target,
                 head="from datasets import load_dataset\nfrom transformers import AutoTokenizer\n" + HEAD)
    assert f"    {header}\n        ds = load_dataset(\"imdb\")\n        tok = AutoTokenizer" in r.code
    msg = next(d.message for d in r.diagnostics if d.code == "PTM150")
    assert "once per run" in msg and ("local=True" in msg or "local_main_process_first" in msg)


def test_download_next_to_a_framework_call_gets_a_todo():
    r = _migrate("    loader = fabric.setup_dataloaders(DataLoader(MNIST('d', download=True)))\n")
    assert "rank_zero_first" not in _code(r) and _todos(r, "PTM150")


def test_download_under_a_rank_guard_or_already_first_is_left_alone():
    for body in ("    if rank == 0:\n        ds = MNIST('d', download=True)\n",
                 "    with fabric.rank_zero_first():\n        ds = MNIST('d', download=True)\n"):
        r = _migrate(body)
        assert r.code.count("rank_zero_first") == body.count("rank_zero_first")


def test_download_at_import_time_gets_a_todo():
    source = "import torch\nds = MNIST('d', download=True)\n\n\n" + HEAD[len("import torch\n\n\n"):] + LOOP
    r = migrate(source, "fabric", Options(select=frozenset({"PTM150"})))
    assert _todos(r, "PTM150") and "import time" in _todos(r, "PTM150")[0].message


def test_class_that_downloads_only_in_a_classmethod_is_not_a_download():
    head = ("import torch\nfrom transformers import GPT2LMHeadModel\n\n\nclass GPT(torch.nn.Module):\n"
            "    def __init__(self):\n        super().__init__()\n        self.head = self.build()\n\n"
            "    def build(self):\n        return torch.nn.Linear(4, 1)\n\n    @classmethod\n"
            "    def from_pretrained(cls, name):\n        return GPT2LMHeadModel.from_pretrained(name)\n\n\n"
            "def main():\n")
    r = _migrate("    model = GPT()\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n", head=head,
                 loop=LOOP.replace("model(", "model.head("))
    assert "rank_zero_first" not in r.code


def test_caching_block_with_torch_save_goes_in_the_block_and_keeps_torch_save():
    # PTM136 keeps `torch.save` inside rank_zero_first (issue #13): fabric.save's barrier would wait forever there
    r = _migrate("    if not os.path.exists('cache.pt'):\n        torch.save(build(), 'cache.pt')\n", head="import os\n" + HEAD)
    assert "with fabric.rank_zero_first(local=False):\n        if not os.path.exists('cache.pt'):\n" \
           "            torch.save(build(), 'cache.pt')\n" in r.code
    assert "fabric.save(" not in r.code and not _todos(r, "PTM150")


@pytest.mark.parametrize("target,header", [("fabric", "with fabric.rank_zero_first(local=False):"),
                                           ("accelerate", "with accelerator.main_process_first():")])
@pytest.mark.parametrize("body", [
    # torch.load / torch.save, a missing file
    "    try:\n        stats = torch.load('stats.pt')\n    except FileNotFoundError:\n"
    "        stats = build()\n        torch.save(stats, 'stats.pt')\n",
    # json through open(), several exception types, an else
    "    try:\n        with open(vocab_path) as f:\n            vocab = json.load(f)\n"
    "    except (OSError, ValueError):\n        vocab = sorted(set('abc'))\n"
    "        with open(vocab_path, 'w') as f:\n            json.dump(vocab, f)\n    else:\n        print(len(vocab))\n",
    # pickle, a bare except
    "    try:\n        feats = pickle.load(open('f.pkl', 'rb'))\n    except:\n        feats = [1, 2]\n"
    "        pickle.dump(feats, open('f.pkl', 'wb'))\n",
])
def test_cache_read_through_try_goes_first(target, header, body):
    """`try: <read the file>` / `except: <build it and write it>`: on several processes a rank read the file while rank
    0 was still writing it (EOFError in CI, save_divergent_path_function): the main process goes first."""
    r = _migrate(body, target, head="import json\nimport pickle\n" + HEAD.replace("def main():\n", "def main(vocab_path='v.json'):\n"))
    indented = "".join("    " + line if line.strip() else line for line in body.splitlines(True))
    assert f"    {header}\n" + indented in r.code, r.code
    assert "fabric.save(" not in r.code and "accelerator.save(" not in r.code and not _todos(r, "PTM150")


def test_try_that_only_reads_or_calls_a_collective_is_not_wrapped():
    r = _migrate("    try:\n        stats = torch.load('stats.pt')\n    except FileNotFoundError:\n        stats = None\n")
    assert "rank_zero_first" not in r.code
    r = _migrate("    try:\n        stats = torch.load('stats.pt')\n    except FileNotFoundError:\n"
                 "        stats = build()\n        torch.distributed.barrier()\n        torch.save(stats, 'stats.pt')\n")
    assert "rank_zero_first" not in _code(r) and _todos(r, "PTM150")


# ---- PTM151 write-once -------------------------------------------------------------------------------------------

def test_output_call_guarded_and_consecutive_ones_share_the_guard():
    r = _migrate("", tail="    np.save('a.npy', x)\n    plt.savefig('b.png')\n",
                 head="import numpy as np\nimport matplotlib.pyplot as plt\n" + HEAD)
    assert "    if fabric.is_global_zero:\n        np.save('a.npy', x)\n        plt.savefig('b.png')\n" in r.code


def test_writer_handed_to_a_helper_is_guarded_there_too():
    head = ("import torch\nfrom torch.utils.tensorboard import SummaryWriter\n\n\ndef log(writer, value):\n"
            "    writer.add_scalar('loss', value)\n\n\n") + HEAD[len("import torch\n\n\n"):]
    r = _migrate("    writer = SummaryWriter('runs')\n", head=head, tail="    log(writer, 1.0)\n    writer.close()\n")
    assert "writer = SummaryWriter('runs') if fabric.is_global_zero else None" in r.code
    assert "    if writer is not None:\n        writer.add_scalar('loss', value)" in r.code
    assert "    if writer is not None:\n        writer.close()" in r.code


def test_writer_used_where_no_guard_can_follow_gets_a_todo():
    head = "import torch\nfrom torch.utils.tensorboard import SummaryWriter\n\n\n" + HEAD[len("import torch\n\n\n"):]
    r = _migrate("    writer = SummaryWriter('runs')\n", head=head, tail="    return writer\n")
    assert "else None" not in _code(r) and _todos(r, "PTM151")


def test_write_that_runs_the_model_or_is_read_back_gets_a_todo():
    r = _migrate("", tail="    save_image(model(torch.randn(2, 4)), 'x.png')\n",
                 head="from torchvision.utils import save_image\n" + HEAD)
    assert "is_global_zero" not in _code(r) and "set-up model" in _todos(r, "PTM151")[0].message
    r = _migrate("", tail="    np.save('emb.npy', x)\n    y = np.load('emb.npy')\n", head="import numpy as np\n" + HEAD)
    assert "is_global_zero" not in _code(r) and "reads back" in _todos(r, "PTM151")[0].message


def test_onnx_export_of_the_set_up_model_asks_for_the_plain_module():
    r = _migrate("", tail="    torch.onnx.export(model, torch.randn(1, 4), 'model.onnx')\n")
    assert "is_global_zero" not in _code(r) and "model.module" in _todos(r, "PTM151")[0].message
    r = _migrate("", "accelerate", tail="    torch.onnx.export(model, torch.randn(1, 4), 'model.onnx')\n")
    assert "accelerator.unwrap_model(model)" in _todos(r, "PTM151")[0].message


def test_log_file_handlers_log_to_devnull_elsewhere():
    r = _migrate("    logging.basicConfig(filename='train.log', level=logging.INFO)\n", head="import logging\n" + HEAD)
    assert "filename='train.log' if fabric.is_global_zero else os.devnull" in r.code


def test_per_rank_paths_and_reads_stay_on_every_rank():
    r = _migrate("    log = open(f'log_{rank}.txt', 'w')\n    cfg = open('cfg.json').read()\n")
    assert r.code.count("devnull") == 0


def test_open_file_kept_open_writes_to_devnull_elsewhere_and_wandb_is_disabled():
    r = _migrate("    log = open('log.csv', 'a')\n    wandb.init(project='p')\n", "accelerate", head="import wandb\n" + HEAD)
    assert "open('log.csv' if accelerator.is_main_process else os.devnull, 'a')" in r.code
    assert "wandb.init(project='p', mode=None if accelerator.is_main_process else \"disabled\")" in r.code


def test_writer_class_instance_is_none_on_other_ranks():
    head = ("import torch\n\n\nclass Logger:\n    def __init__(self, path):\n        self.f = open(path, 'w')\n\n"
            "    def log(self, x):\n        self.f.write(str(x))\n\n\n") + HEAD[len("import torch\n\n\n"):]
    r = _migrate("    logger = Logger('log.txt')\n", head=head, tail="    logger.log(1)\n")
    assert "logger = Logger('log.txt') if fabric.is_global_zero else None" in r.code
    assert "    if logger is not None:\n        logger.log(1)" in r.code
    assert "self.f = open(path, 'w')" in r.code  # inside the class: its instance is made on the main process only


# ---- PTM151: a logged loss is the mean over ranks where every rank reaches the log ---------------------------------

RHEAD = ("import torch\nimport wandb\nfrom torch.utils.tensorboard import SummaryWriter\n\n\ndef main():\n"
         "    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
         "    writer = SummaryWriter('runs')\n    log = open('log.csv', 'w')\n    wandb.init(project='p')\n    best = 1.0\n")


@pytest.mark.parametrize("target,reduce", [
    ("fabric", 'loss_mean = fabric.all_reduce(loss.detach().clone(), reduce_op="mean")'),
    ("accelerate", 'loss_mean = accelerator.reduce(loss.detach(), reduction="mean")')])
def test_logged_loss_is_reduced_on_every_rank_before_the_guard(target, reduce):
    body = ("        if step % 10 == 0:\n            writer.add_scalar('loss', loss.item(), step)\n"
            "            writer.add_scalar('raw', loss, step)\n        log.write(f'{step},{loss.item()}\\n')\n"
            "        wandb.log({'loss': loss.item()})\n")
    r = _migrate("", target, head=RHEAD, loop=LOOP + body)
    flag = "writer is not None"
    assert f"        if step % 10 == 0:\n            {reduce}\n            if {flag}:\n" in r.code
    assert "writer.add_scalar('loss', loss_mean.item(), step)" in r.code
    assert "writer.add_scalar('raw', loss_mean, step)" in r.code
    assert f"        {reduce}\n        log.write(f'{{step}},{{loss_mean.item()}}\\n')\n" in r.code
    assert "wandb.log({'loss': loss_mean.item()})" in r.code  # the run of two log lines shares one reduction
    assert r.code.count(reduce) == 2
    assert "print" not in r.code


@pytest.mark.parametrize("body,why", [
    ("        if loss.item() < best:\n            writer.add_scalar('loss', loss.item(), step)\n", "runs under"),
    ("        try:\n            pass\n        except Exception:\n            writer.add_scalar('loss', loss, step)\n",
     "runs under `try:`"),
    ("        if loss.item() > 10:\n            continue\n        wandb.log({'loss': loss.item()})\n", "`continue`"),
    ("        loss = loss * 2\n        wandb.log({'loss': loss.item()})\n", "bound again"),
    ("        for k in range(2):\n            log.write(str(loss.item()))\n", "runs under `for"),
])
def test_logged_loss_stays_rank_zeros_own_where_a_collective_could_hang(body, why):
    r = _migrate("", head=RHEAD, loop=LOOP + body)
    assert "all_reduce" not in r.code
    note = next(d.message for d in r.diagnostics if d.code == "PTM151" and "own shard's value" in d.message)
    assert why in note, note


def test_logged_loss_under_a_loop_index_or_a_setting_test_is_reduced():
    loop = ("    for i, batch in enumerate(loader):\n        loss = model(batch).sum()\n        loss.backward()\n"
            "        optimizer.step()\n        if i % args.log_interval == 0 and not args.dry_run:\n"
            "            wandb.log({'loss': loss.item()})\n")
    r = _migrate("", head=RHEAD, loop=loop)
    assert "        if i % args.log_interval == 0 and not args.dry_run:\n            loss_mean = fabric" in r.code
    r = _migrate("", head=RHEAD, loop=loop.replace("i % args.log_interval == 0 and not args.dry_run",
                                                    "i % 10 == 0 and args.best_loss > 1"))
    assert "all_reduce" not in r.code  # `best_loss` names a value of the data


def test_logged_value_of_a_helper_or_a_rank_guard_is_not_reduced():
    helper = "def log_loss(writer, loss, step):\n    writer.add_scalar('loss', loss.item(), step)\n\n\n"
    head = RHEAD.replace("\n\n\ndef main():", "\n\n\n" + helper + "def main():")
    r = _migrate("", head=head, loop=LOOP + "        log_loss(writer, loss, step)\n"
                                           "        if rank == 0:\n            wandb.log({'loss': loss.item()})\n")
    assert "all_reduce" not in r.code


# ---- check k on recorded runs ------------------------------------------------------------------------------------

def _run(*writes_per_rank, cwd="/w"):
    run = Run("migrated-2procs", [], cwd, "", rc=0)
    run.results = [{"rank": r, "world_size": 2, "status": "finished", "writes": ws}
                   for r, ws in enumerate(writes_per_rank)]
    return run


def test_check_k_on_recorded_runs():
    w = lambda p, line="train.py:9", exempt=False: {"path": p, "line": line, "how": "open", "exempt": exempt}
    ok = vc.check_written_once(_run([w("/w/log.csv")], [w("/w/log_1.csv")]), 2)
    assert ok.status == "pass" and ok.data["files"] == {"log.csv": [0], "log_1.csv": [1]}
    bad = vc.check_written_once(_run([w("/w/samples/0.png", "train.py:40")], [w("/w/samples/0.png")]), 2)
    assert bad.status == "fail" and "samples/0.png by ranks 0, 1" in bad.message and "train.py:40" in bad.message
    exempt = vc.check_written_once(_run([w("/w/c.pt", exempt=True)], [w("/w/c.pt", exempt=True)]), 2)
    assert exempt.status == "pass"
    assert vc.check_written_once(_run([w("/w/a")]), 2).status == "skip"


# ---- 2 CPU processes ---------------------------------------------------------------------------------------------

CASES = ["once_download_module", "once_download_function", "once_writers_function", "once_writers_class",
         "once_writers_module", "once_writers_trainer", "once_outputs_module", "once_outputs_function",
         "once_outputs_class"]  # once_onnx_export is static_only.json: torch.onnx.export needs onnx or onnxscript


@slow
@pytest.mark.parametrize("target", ["fabric", "accelerate"])
@pytest.mark.parametrize("case", CASES)
def test_fixture_writes_each_path_once_on_two_processes(case, target):
    start = time.perf_counter()
    report = run_verify(FIXTURES / case / "before" / "train.py", [], target, 2, "cpu", FULL_STEPS, 240, checks="bk")
    checks = {c["id"]: c for c in report["checks"]}
    assert checks["b"]["status"] == "pass", checks
    assert checks["k"]["status"] == "pass", checks["k"]
    files = checks["k"]["data"]["files"]
    assert files and all(ranks == [0] for ranks in files.values()), files
    if "download" in case:  # downloaded once, by the main process
        assert any("FakeMNIST/raw.pt" in p or "corpus.txt" in p for p in files), files
    print(f"{case} {target}: check k run {time.perf_counter() - start:.1f} s, {len(files)} files")


BROKEN_CASES = [("writers.py", "fabric_writers_every_rank.py", "fabric"),
                ("writers.py", "accelerate_writers_every_rank.py", "accelerate"),
                ("download.py", "fabric_download_every_rank.py", "fabric"),
                ("download.py", "accelerate_download_every_rank.py", "accelerate"),
                ("outputs/outputs.py", "outputs/fabric_outputs_every_rank.py", "fabric"),
                ("outputs/outputs.py", "outputs/accelerate_outputs_every_rank.py", "accelerate")]


@slow
@pytest.mark.parametrize("original,broken,target", BROKEN_CASES, ids=[b[1] for b in BROKEN_CASES])
def test_unguarded_migration_fails_check_k(original, broken, target):
    report = run_verify(BROKEN / original, [], target, 2, "cpu", FULL_STEPS, 240, BROKEN / broken, checks="k")
    k = report["checks"][0]
    assert k["status"] == "fail" and report["exit_code"] == 1, k
    assert "by ranks 0, 1" in k["message"] and ".py:" in k["message"]
