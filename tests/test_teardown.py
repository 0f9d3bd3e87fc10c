"""PTM153 teardown: where the framework's process group is torn down, and where nothing is added."""
import os
import subprocess
import sys

import pytest

from migrator import Options, migrate

TRAIN = ("    model = torch.nn.Linear(4, 1)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
         "    loss = model(torch.randn(2, 4)).sum()\n    loss.backward()\n    optimizer.step()\n")
FUNC = "import torch\n\n\ndef main():\n" + TRAIN
TEARDOWN = "if torch.distributed.is_initialized():\n{i}    torch.distributed.destroy_process_group()\n"


def run(code: str, target: str = "fabric", options: Options = None):
    result = migrate(code, target, options or Options())
    assert result.error is None, result.error
    again = migrate(result.code, target, options or Options())
    assert again.code == result.code, "a second run must change nothing"
    return result.code, [d for d in result.diagnostics if d.code == "PTM153"]


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_end_of_main_guard(target):
    code, diags = run(FUNC + '\n\nif __name__ == "__main__":\n    main()\n', target)
    assert code.endswith("    main()\n    # the framework's process group, torn down at the end as PyTorch asks "
                         "(pt-migrate explain PTM153)\n    " + TEARDOWN.format(i="    "))
    assert diags and diags[0].fixed


def test_guard_then_definitions_and_argument_parsing():
    src = ("import argparse\n" + FUNC + '\n\nif __name__ == "__main__":\n    p = argparse.ArgumentParser()\n'
           '    p.add_argument("--lr", type=float)\n    main()\n\n\ndef unused():\n    pass\n')
    code, _ = run(src)
    assert "    main()\n    # the framework's process group" in code and code.endswith("def unused():\n    pass\n")


def test_trailing_call_at_module_level():
    code, _ = run(FUNC + "\n\nmain()\n", "accelerate")
    assert code.endswith("main()\n\n# the framework's process group, torn down at the end as PyTorch asks (pt-migrate "
                         "explain PTM153)\n" + TEARDOWN.format(i=""))


@pytest.mark.parametrize("target", ["fabric", "accelerate"])
def test_not_where_the_models_outlive_the_teardown(target):
    """Destroyed while a set-up model lives, the group goes with the model later, from the DDP reducer that pybind11
    frees holding the GIL, and gloo's destructor waits for a worker that waits for the GIL (2 of 78 flat fixtures
    hung in CI): module-level or main-guard training, a returned model, a global."""
    guarded = 'if __name__ == "__main__":\n' + TRAIN
    returned = FUNC + "    return model\n\n\nif __name__ == '__main__':\n    net = main()\n    print(net)\n"
    annotated = FUNC + "    return model\n\n\nif __name__ == '__main__':\n    net: object = main()\n"
    global_model = FUNC.replace("def main():\n", "def main():\n    global model\n") + "\n\nmain()\n"
    for src in ("import torch\n\n" + TRAIN.replace("    ", ""), "import torch\n\n" + guarded, returned, annotated,
                global_model):
        code, diags = run(src, target)
        assert "destroy_process_group" not in code and not diags, code


def test_left_alone():
    for src in (FUNC + '\n\nif __name__ == "__main__":\n    import sys\n    sys.exit(main())\n',  # nothing after runs
                FUNC + '\n\nif __name__ == "__main__":\n    raise SystemExit(main())\n',
                FUNC,  # definitions only: the entry script is elsewhere
                FUNC.replace("import torch\n", "import torch\nimport torch.distributed as dist\n")
                + "    dist.destroy_process_group()\n\n\nif __name__ == '__main__':\n    main()\n"):  # its own stays
        code, diags = run(src)
        assert code.count("destroy_process_group") == src.count("destroy_process_group") and not diags, code
    src = FUNC.replace("import torch\n", "import torch\nfrom accelerate import Accelerator\n") + \
        "    accelerator = Accelerator()\n    accelerator.end_training()\n\n\nif __name__ == '__main__':\n    main()\n"
    code, diags = run(src, "accelerate")
    assert "destroy_process_group" not in code and not diags


def test_a_teardown_under_the_script_s_own_flag_gets_one_after_it():
    """`if distributed: dist.destroy_process_group()`: on one process under torchrun Accelerate makes a group while the
    script's flag (world size > 1) says not distributed; seen on a GPU as NCCL's "destroy_process_group() was not
    called" warning."""
    src = (FUNC.replace("import torch\n", "import os\nimport torch\nimport torch.distributed as dist\n")
           .replace("def main():\n", "def main():\n    distributed = int(os.environ.get('WORLD_SIZE', 1)) > 1\n"
                    "    if distributed:\n        dist.init_process_group('gloo')\n")
           + "    if distributed:\n        dist.destroy_process_group()\n\n\nif __name__ == '__main__':\n    main()\n")
    for target in ("fabric", "accelerate"):
        code, diags = run(src, target)
        assert code.count("destroy_process_group()") == 2 and diags, code
        assert code.endswith("    main()\n    # the framework's process group, torn down at the end as PyTorch asks "
                             "(pt-migrate explain PTM153)\n    " + TEARDOWN.format(i="    "))


def test_script_on_the_framework_is_left_alone():
    src = ("import torch\nfrom lightning.fabric import Fabric\n\n\ndef main():\n    fabric = Fabric()\n"
           "    fabric.launch()\n" + TRAIN + '\n\nif __name__ == "__main__":\n    main()\n')
    code, diags = run(src)
    assert "destroy_process_group" not in code and not diags


def test_torch_import_is_added():
    src = ("from torch import nn, optim\n\n\ndef main():\n    model = nn.Linear(4, 1)\n"
           "    optimizer = optim.SGD(model.parameters(), lr=0.1)\n    optimizer.step()\n\n\n"
           "if __name__ == '__main__':\n    main()\n")
    code, _ = run(src)
    assert "import torch\n" in code and "torch.distributed.destroy_process_group()" in code
    compile(code, "<migrated>", "exec")


@pytest.mark.slow
def test_migrated_script_exits_cleanly_on_two_processes(tmp_path):
    """As a user runs it: `python train.py` (Fabric starts the second process); status 0, no gloo abort."""
    src = ("import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n\n\ndef main():\n"
           "    torch.manual_seed(0)\n    data = TensorDataset(torch.randn(64, 4), torch.randn(64, 1))\n"
           "    loader = DataLoader(data, batch_size=8)\n    model = torch.nn.Linear(4, 1)\n"
           "    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    for x, y in loader:\n"
           "        optimizer.zero_grad()\n        loss = torch.nn.functional.mse_loss(model(x), y)\n"
           "        loss.backward()\n        optimizer.step()\n    print('done', loss.item())\n\n\n"
           "if __name__ == '__main__':\n    main()\n")
    result = migrate(src, "fabric", Options(accelerator="cpu", devices=2, strategy="ddp"))
    assert "destroy_process_group" in result.code
    script = tmp_path / "train.py"
    script.write_text(result.code)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "terminate called" not in proc.stderr and "done" in proc.stdout


@pytest.mark.slow
def test_verify_reads_the_world_size_before_the_teardown(tmp_path):
    """A script without an optimizer step (manual SGD) is asked its rank and world size at its end, after PTM153's
    teardown destroyed the group: verify's runner records them when the group is destroyed (check b read 1)."""
    src = ("import torch\n\n\ndef main():\n    torch.manual_seed(0)\n    model = torch.nn.Linear(4, 1)\n"
           "    for _ in range(3):\n        model.zero_grad()\n        loss = model(torch.randn(8, 4)).pow(2).mean()\n"
           "        loss.backward()\n        for p in model.parameters():\n            p.data.add_(p.grad, alpha=-0.1)\n"
           "    print('loss', loss.item())\n\n\nif __name__ == '__main__':\n    main()\n")
    script = tmp_path / "train.py"
    script.write_text(src)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "migrator", "verify", str(script), "--target", "fabric", "--devices",
                           "2", "--checks", "b", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    import json
    checks = {c["id"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["b"]["status"] == "pass", checks["b"]


def test_an_own_teardown_in_the_main_guard_is_enough():
    src = (FUNC.replace("import torch\n", "import torch\nimport torch.distributed as dist\n")
           + "\n\nif __name__ == '__main__':\n    main()\n    dist.destroy_process_group()\n")
    code, diags = run(src)
    assert code.count("destroy_process_group()") == 1 and not diags, code
