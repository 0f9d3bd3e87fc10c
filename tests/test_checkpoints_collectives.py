"""PTM136 checkpoints, PTM137 rank-zero, PTM138 collectives: the forms, and one 2-process run per target."""
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from migrator import Options, migrate
from fixture_support import ran_to_exit

MINE = frozenset({"PTM136", "PTM137", "PTM138"})

HEAD = "import torch\nimport torch.distributed as dist\n\n\n"
TRAIN = ("    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
         "    model(torch.randn(8, 4)).sum().backward()\n    optimizer.step()\n")


def run(body: str, target: str, helper: str = "") -> str:
    src = HEAD + "def main(rank):\n" + TRAIN + textwrap.indent(textwrap.dedent(body), "    ") + helper
    result = migrate(src, target, Options(select=MINE))
    assert result.error is None
    return result.code


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_a_second_run_changes_nothing(target):
    body = ("t = torch.ones(1)\ndist.all_reduce(t)\ndist.all_reduce(t, op=dist.ReduceOp.MAX)\ndist.barrier()\n"
            "if rank == 0:\n    print('x')\n    for i in range(2):\n        dist.barrier()\n"
            "if rank == 0:\n    torch.save(model.module.state_dict(), 'w.pt')\nout = [t, t]\ndist.all_gather(out, t)\n")
    once = run(body, target)
    assert migrate(once, target, Options(select=MINE)).code == once


# -- PTM138 collectives
@pytest.mark.parametrize("op,fabric,accelerate", [
    ("", 'correct = fabric.all_reduce(correct, reduce_op="sum")', 'correct = accelerator.reduce(correct.to(accelerator.device), reduction="sum").to(correct.device)'),
    (", op=dist.ReduceOp.SUM", 'correct = fabric.all_reduce(correct, reduce_op="sum")',
     'correct = accelerator.reduce(correct.to(accelerator.device), reduction="sum").to(correct.device)'),
    (", dist.ReduceOp.AVG", 'correct = fabric.all_reduce(correct, reduce_op="mean")',
     'correct = accelerator.reduce(correct.to(accelerator.device), reduction="mean").to(correct.device)'),
])
def test_all_reduce_keeps_its_reduction(op, fabric, accelerate):
    body = f"correct = torch.tensor([1.0])\ndist.all_reduce(correct{op})\n"
    assert fabric in run(body, "fabric")
    assert accelerate in run(body, "accelerate")


@pytest.mark.parametrize("stmt", ["dist.all_reduce(t, op=dist.ReduceOp.MAX)", "dist.all_reduce(stats[0])",
                                  "x = dist.all_reduce(t)", "dist.all_reduce(t, async_op=True)"])
@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_all_reduce_not_rewritten_gets_a_todo(stmt, target):
    out = run(f"t = torch.ones(1)\n{stmt}\n", target)
    assert stmt in out and "# TODO(pt-migrate) PTM138:" in out


def test_barrier_broadcast_and_gather():
    body = "t = torch.ones(1)\ndist.barrier()\ndist.broadcast(t, 0)\nout = [t, t]\ndist.all_gather(out, t)\n"
    fab = run(body, "fabric")
    assert "fabric.barrier()" in fab and "t = fabric.broadcast(t, 0)" in fab
    assert "STACKS" in fab and ".flatten(0, 1)" in fab and "duplicate" in fab
    acc = run(body, "accelerate")
    assert "accelerator.wait_for_everyone()" in acc and "t = broadcast(t.to(accelerator.device), from_process=0).to(t.device)" in acc
    assert "from accelerate.utils import broadcast" in acc
    assert "CONCATENATED" in acc and "gather_for_metrics" in acc


# -- PTM137 rank-zero
@pytest.mark.parametrize("test,fabric,accelerate", [
    ("rank == 0", "fabric.is_global_zero", "accelerator.is_main_process"),
    ("dist.get_rank() == 0", "fabric.is_global_zero", "accelerator.is_main_process"),
    ("args.rank == 0", "fabric.is_global_zero", "accelerator.is_main_process"),
    ("global_rank == 0", "fabric.is_global_zero", "accelerator.is_main_process"),
    ("local_rank == 0", "fabric.local_rank == 0", "accelerator.is_local_main_process"),
    ("rank != 0", "not fabric.is_global_zero", "not accelerator.is_main_process"),
])
def test_rank_guards(test, fabric, accelerate):
    body = f"if {test}:\n    print('hi')\n"
    assert f"if {fabric}:" in run(body, "fabric")
    assert f"if {accelerate}:" in run(body, "accelerate")


def test_rank_and_world_size_reads():
    body = "r = dist.get_rank()\nw = dist.get_world_size()\n"
    assert "r = fabric.global_rank\n    w = fabric.world_size" in run(body, "fabric")
    assert "r = accelerator.process_index\n    w = accelerator.num_processes" in run(body, "accelerate")


def test_lone_collective_leaves_the_guard_others_get_a_todo():
    out = run("if rank == 0:\n    print('x')\n    dist.barrier()\nif rank == 0:\n    print('y')\n"
              "    for i in range(2):\n        dist.barrier()\n", "fabric")
    assert "if fabric.is_global_zero:\n        print('x')\n    fabric.barrier()\n" in out
    assert "# TODO(pt-migrate) PTM137:" in out and "hang" in out


# -- PTM136 checkpoints
def test_fabric_save_leaves_the_rank_guard():
    out = run("""\
        if rank == 0:
            print("saving")
            state = {"model": model.module.state_dict(), "opt": optimizer.state_dict()}
            torch.save(state, "ckpt.pt")
        if epoch % 5 == 0 and dist.get_rank() == 0:
            torch.save(model.state_dict(), "w.pt")
        """, "fabric")
    assert ('    if fabric.is_global_zero:\n        print("saving")\n'
            '    state = {"model": model.state_dict(), "opt": optimizer.state_dict()}\n'
            '    fabric.save("ckpt.pt", state)\n') in out
    assert '    if epoch % 5 == 0:\n        fabric.save("w.pt", model.state_dict())\n' in out


def test_fabric_save_that_cannot_move_gets_a_todo():
    out = run("if rank == 0:\n    for k in range(2):\n        torch.save(model.state_dict(), f'w{k}.pt')\n", "fabric")
    assert "# TODO(pt-migrate) PTM136:" in out and "every rank" in out


def test_accelerate_save_unwraps_and_keeps_the_guard():
    out = run("""\
        if rank == 0:
            torch.save({"model": model.module.state_dict()}, "ckpt.pt")
        torch.save(model.state_dict(), "w.pt")
        sd = torch.load("w.pt", map_location={"cuda:0": f"cuda:{rank}"})
        model.load_state_dict(sd)
        """, "accelerate")
    assert ('    if accelerator.is_main_process:\n'
            '        accelerator.save({"model": accelerator.unwrap_model(model).state_dict()}, "ckpt.pt")\n') in out
    assert 'accelerator.save(accelerator.unwrap_model(model).state_dict(), "w.pt")' in out
    assert 'torch.load("w.pt", map_location="cpu")' in out
    assert "accelerator.unwrap_model(model).load_state_dict(sd)" in out


def test_fabric_load_map_location():
    out = run('sd = torch.load("w.pt", map_location=f"cuda:{local_rank}")\nkeep = torch.load("w.pt", map_location="cpu")\n',
              "fabric")
    assert 'torch.load("w.pt", map_location=fabric.device)' in out and 'map_location="cpu")' in out


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_nothing_changes_outside_the_framework_scope(target):
    helper = ("\n\ndef helper(t, rank):\n    dist.all_reduce(t)\n    dist.barrier()\n    if rank == 0:\n"
              "        torch.save(t, 'x.pt')\n    return dist.get_rank()\n")
    out = run("pass\n", target, helper)
    assert out.endswith(helper)


# -- 2 processes on CPU: the migrated script finishes, sums, and writes a checkpoint the original class loads
SCRIPT = '''\
import os
import sys

import torch
import torch.distributed as dist
{import_fw}


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)


def main(out_dir):
    {create_fw}
    rank = dist.get_rank()
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = {setup}(model, optimizer)
    {fw}.backward(model(torch.randn(8, 4)).sum())
    optimizer.step()
    metric = torch.tensor([float(rank + 1), 10.0 * (rank + 1)])
    dist.all_reduce(metric, op=dist.ReduceOp.SUM)
    dist.barrier()
    if rank == 0:
        print("saving")
        state = {{"model": model.module.state_dict(), "metric": metric}}
        torch.save(state, os.path.join(out_dir, "ckpt.pt"))
    dist.barrier()
    loaded = torch.load(os.path.join(out_dir, "ckpt.pt"), map_location={{"cuda:0": f"cuda:{{rank}}"}})
    model.module.load_state_dict(loaded["model"])
    with open(os.path.join(out_dir, f"metric{{rank}}.txt"), "w") as f:
        f.write(f"{{dist.get_world_size()}} {{metric.tolist()}}")


if __name__ == "__main__":
    main(sys.argv[1])
'''
FORMS = {
    "fabric": dict(import_fw="from lightning.fabric import Fabric", fw="fabric", setup="fabric.setup",
                   create_fw='fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp")\n    fabric.launch()'),
    "accelerate": dict(import_fw="from accelerate import Accelerator", fw="accelerator", setup="accelerator.prepare",
                       create_fw="accelerator = Accelerator(cpu=True)"),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    """Both targets' migrated scripts, started at once (2 processes each), waited for with a 120 s limit."""
    runs = {}
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    for target in ("fabric", "accelerate"):
        out = tmp_path_factory.mktemp(target)
        src = SCRIPT.format(**FORMS[target])
        result = migrate(src, target, Options(select=MINE, accelerator="cpu", devices="2", strategy="ddp"))
        (out / "train.py").write_text(result.code)
        if target == "fabric":
            cmd = [sys.executable, str(out / "train.py"), str(out)]
        else:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                   "--master_port", str(_free_port()), str(out / "train.py"), str(out)]
        proc = subprocess.Popen(cmd, env=env, cwd=out, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        runs[target] = (src, result, out, proc)
    done = {}
    for target, (src, result, out, proc) in runs.items():
        try:
            log, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            log = proc.communicate()[0] + "\nTIMED OUT (a collective under a rank guard hangs)"
        done[target] = (src, result, out, proc.returncode, log)
    return done


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_two_processes_save_reduce_barrier(target, two_process_runs):
    import importlib.util

    import torch

    src, result, out, returncode, log = two_process_runs[target]
    assert result.error is None and "dist.all_reduce" not in result.code and "dist.barrier" not in result.code
    assert ran_to_exit(returncode, log), log[-5000:]
    for rank in (0, 1):  # both ranks ran, in a world of 2, and the reduced metric is the sum
        assert (out / f"metric{rank}.txt").read_text() == "2 [3.0, 30.0]"
    ckpt = torch.load(out / "ckpt.pt", map_location="cpu")
    assert ckpt["metric"].tolist() == [3.0, 30.0]
    (out / "original.py").write_text(src)
    spec = importlib.util.spec_from_file_location(f"original_{target}", out / "original.py")
    original = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(original)
    original.Net().load_state_dict(ckpt["model"])  # strict: the original class's keys, no `module.` prefix


def test_a_save_that_cannot_leave_its_rank_guard_stays_torch_save():
    """nanoGPT: `if master_process: ... if step % 5000 == 0: torch.save(...)`. The nested save cannot be taken
    out of the guard, and `fabric.save` there would wait at its barrier for ranks that never come: it stays
    `torch.save` (rank 0 writes) with a TODO, and a second run changes nothing."""
    src = textwrap.dedent("""\
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        def main(rank=0):
            model = torch.nn.Linear(4, 1)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            loader = DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4)
            for step, (x,) in enumerate(loader):
                model(x).sum().backward()
                opt.step()
                if rank == 0:
                    print(step)
                    if step % 2 == 0:
                        torch.save(model.state_dict(), "ckpt.pt")

        if __name__ == "__main__":
            main()
        """)
    out = migrate(src, "fabric").code
    assert "fabric.save(" not in out and 'torch.save(model.state_dict(), "ckpt.pt")' in out, out
    assert "TODO(pt-migrate) PTM136" in out
    assert migrate(out, "fabric").code == out
